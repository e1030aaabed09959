"""Nothing of the user's is lost: every writing command checks all its inputs and every path it writes before it
writes or removes anything, and --force removes only what augmentor itself wrote."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clihelp import TINY, one_line_error, run_cli
from conftest import write_image

from augmentor.errors import ConfigError
from augmentor.mix.loader import SyntheticMix
from augmentor.store import outputs
from augmentor.store.rundir import RUN_FILES

FIT = [*TINY, "--classes", "0,1", "--sample-every", 1, "--checkpoint-every", 1]


def snapshot(root: Path) -> dict:
    return {p: hashlib.md5(p.read_bytes()).hexdigest() for p in Path(root).rglob("*") if p.is_file()}


def refused(capsys, *argv, expect: str, keep: Path) -> None:
    """The command exits 2 with one line holding ``expect``, and every file under ``keep`` is as it was."""
    before = snapshot(keep)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert expect in one_line_error(err)
    assert snapshot(keep) == before, "a file was changed, added or removed"


def gray_folder(root: Path, classes=("a", "b"), n=6) -> Path:
    for c in classes:
        for i in range(n):
            write_image(root / c / f"{i}.png", mode="L", seed=hash((c, i)) % 1000)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-step run (exported), trained on two digit classes."""
    out = tmp_path_factory.mktemp("runs") / "a"
    from augmentor.cli import main

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in ["fit", "--out", out, *FIT, "--steps", 2]])
    assert done.value.code == 0
    return out


# ------------------------------------------------------------------ --force and the run directory


@pytest.mark.parametrize(
    "bad, expect",
    [
        (["--data", "no/such/dir"], "no such file or directory"),
        (["--classes", "zebra"], "--classes: unknown class 'zebra'"),
        (["--init", "INIT", "--size", 64], "--init"),
    ],
    ids=["missing data", "unknown class", "incompatible init"],
)
def test_force_with_bad_input_leaves_the_old_run(tmp_path, capsys, run, bad, expect):
    k = tmp_path / "k"
    shutil.copytree(run, k)
    argv = [str(run) if a == "INIT" else a for a in bad]
    refused(capsys, "fit", "--out", k, *TINY, "--steps", 1, *argv, "--force", expect=expect, keep=tmp_path)
    assert (k / "config.json").exists()


@pytest.mark.slow
def test_force_removes_only_what_the_run_wrote(tmp_path, capsys, run):
    p = tmp_path / "p"
    shutil.copytree(run, p)
    mine = {p / "checkpoints" / "my_model.pt": b"weights", p / "samples" / "photo.png": b"photo", p / "notes.txt": b"n"}
    for path, content in mine.items():
        path.write_bytes(content)
    assert run_cli(capsys, "fit", "--out", p, *FIT, "--steps", 1, "--force")[0] == 0
    assert all(path.read_bytes() == content for path, content in mine.items())
    assert not (p / "checkpoints" / "ckpt_000002.pt").exists()  # the old run's own files went
    assert (p / "checkpoints" / "ckpt_000001.pt").exists() and (p / "generator.onnx").exists()
    # and a third --force still finds only its own files: the manifests follow the new run
    assert run_cli(capsys, "fit", "--out", p, *FIT, "--steps", 1, "--force")[0] == 0
    assert all(path.read_bytes() == content for path, content in mine.items())


def run_names() -> list:
    """Every path a fit writes, and the lock and manifest it keeps beside them."""
    return [*RUN_FILES, "checkpoints/ckpt_000001.pt", "samples/step_000001.png", ".lock", outputs.MANIFEST]


@pytest.mark.parametrize("name", run_names())
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_fit_never_writes_over_a_users_file(tmp_path, capsys, name, force):
    folder = tmp_path / "p"
    (folder / name).parent.mkdir(parents=True)
    (folder / name).write_bytes(b"the user's own bytes")
    refused(
        capsys, "fit", "--out", folder, *FIT, "--steps", 1, *(["--force"] if force else []), expect=str(folder), keep=tmp_path
    )


def test_fit_force_writes_beside_a_users_files(tmp_path, capsys):
    folder = tmp_path / "p"
    (folder / "checkpoints").mkdir(parents=True)
    mine = {folder / "readme.txt": b"r", folder / "checkpoints" / "old.pt": b"o"}
    for path, content in mine.items():
        path.write_bytes(content)
    assert run_cli(capsys, "fit", "--out", folder, *FIT, "--steps", 1)[0] == 2  # not empty: --force asked for
    assert run_cli(capsys, "fit", "--out", folder, *FIT, "--steps", 1, "--force")[0] == 0
    assert all(path.read_bytes() == content for path, content in mine.items())


def test_a_foreign_config_json_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "it"
    folder.mkdir()
    (folder / "config.json").write_text('{"learning_rate": 0.1}')
    refused(capsys, "fit", "--out", folder, "--resume", expect="not an augmentor run", keep=tmp_path)
    refused(capsys, "fit", "--out", folder, *FIT, "--force", expect="not an augmentor run", keep=tmp_path)


def test_a_run_config_without_its_data_fingerprint_is_refused_in_one_line(tmp_path, capsys, run):
    import json
    import shutil

    damaged = tmp_path / "run"
    shutil.copytree(run, damaged)
    config = json.loads((damaged / "config.json").read_text())
    del config["data_fingerprint"]  # the four sections are there, the check of the images is not
    (damaged / "config.json").write_text(json.dumps(config))
    refused(capsys, "fit", "--out", damaged, "--resume", "--steps", 4, expect="lacks", keep=tmp_path)


def test_a_legacy_run_without_manifests_is_adopted_by_its_names(tmp_path, capsys, run):
    """Runs from before the manifests: --force removes the files named as a run names them, and no others."""
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for manifest in old.rglob(outputs.MANIFEST):
        manifest.unlink()
    (old / "samples" / "photo.png").write_bytes(b"photo")
    assert run_cli(capsys, "fit", "--out", old, *FIT, "--steps", 1, "--force")[0] == 0
    assert (old / "samples" / "photo.png").read_bytes() == b"photo"
    assert not (old / "checkpoints" / "ckpt_000002.pt").exists()


def test_a_non_pid_lock_is_not_taken_over(tmp_path, capsys, run):
    k = tmp_path / "k"
    shutil.copytree(run, k)
    (k / ".lock").write_text("my notes")
    refused(capsys, "fit", "--out", k, "--resume", "--steps", 3, expect="not a lock augmentor wrote", keep=tmp_path)


# ------------------------------------------------------------------ the other writing commands


def test_export_checks_every_file_it_writes(tmp_path, capsys, run):
    dest = tmp_path / "e"
    dest.mkdir()
    (dest / "discriminator.onnx").write_bytes(b"mine")  # only the second of the two files it writes
    refused(capsys, "export", run, "--out", dest, expect="discriminator.onnx: exists", keep=tmp_path)
    assert run_cli(capsys, "export", run, "--out", dest, "--force")[0] == 0  # asked for: replaced
    # a file of the user's among a run's own is never replaced, --force or not
    k = tmp_path / "k"
    shutil.copytree(run, k)
    (k / "generator.onnx").unlink()
    (k / outputs.MANIFEST).write_text((k / outputs.MANIFEST).read_text().replace("generator.onnx\n", ""))
    (k / "generator.onnx").write_bytes(b"mine")
    refused(capsys, "export", k, "--force", expect="a file augmentor did not write", keep=tmp_path)


def test_bench_refuses_a_folder_with_files(tmp_path, capsys):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "report.md").write_text("my report")
    refused(capsys, "bench", "--out", folder, "--preset", "smoke", expect="is not empty", keep=tmp_path)


@pytest.fixture
def scored_run(tmp_path, run):
    k = tmp_path / "run"
    shutil.copytree(run, k)
    return k


def test_score_checks_the_roc_plot_before_writing(tmp_path, capsys, scored_run):
    csv, roc = tmp_path / "s.csv", tmp_path / "s.roc.png"
    roc.write_bytes(b"my plot")
    argv = ["score", "--model", scored_run, "--data", "sklearn:digits", "--normal-classes", "0", "--out", csv]
    refused(capsys, *argv, expect="s.roc.png: exists", keep=tmp_path)
    assert not csv.exists()
    assert run_cli(capsys, *argv, "--force")[0] == 0  # --force replaces the CSV and its plot, as its help says
    assert roc.read_bytes()[:4] == b"\x89PNG" and csv.exists()


@pytest.mark.parametrize(
    "normal, data, expect",
    [("0,1", ("0", "1"), "need both normal and other images"), ("0", ("0",), "need both normal and other images")],
    ids=["every class normal", "one class of data"],
)
def test_score_refuses_before_it_writes_its_csv(tmp_path, capsys, scored_run, normal, data, expect):
    source = gray_folder(tmp_path / "imgs", classes=data)
    argv = ["score", "--model", scored_run, "--data", source, "--normal-classes", normal, "--out", tmp_path / "s.csv"]
    argv += ["--method", "discriminator"]  # needs no references: the refusal is all that is measured
    refused(capsys, *argv, expect=expect, keep=tmp_path)
    assert not (tmp_path / "s.csv").exists()


def test_score_never_writes_over_a_users_file_in_the_run(tmp_path, capsys, scored_run):
    (scored_run / "anomaly.npz").write_bytes(b"mine")  # not listed: the user's
    argv = ["score", "--model", scored_run, "--data", "sklearn:digits", "--out", tmp_path / "s.csv"]
    refused(capsys, *argv, expect="anomaly.npz: a file augmentor did not write", keep=tmp_path)


@pytest.mark.slow
def test_score_heatmaps_with_force_keep_the_users_files(tmp_path, capsys, scored_run):
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "keep.txt").write_bytes(b"k")
    data = gray_folder(tmp_path / "imgs", classes=("0", "1"), n=2)
    argv = ["score", "--model", scored_run, "--data", data, "--method", "residual", "--heatmaps", maps]
    assert run_cli(capsys, *argv, "--out", tmp_path / "a.csv", "--force")[0] == 0
    first = {p.name for p in maps.glob("*.png")}
    assert len(first) == 4 and (maps / "keep.txt").read_bytes() == b"k"
    assert run_cli(capsys, *argv, "--out", tmp_path / "b.csv", "--force")[0] == 0  # the earlier maps replaced
    assert {p.name for p in maps.glob("*.png")} == first and (maps / "keep.txt").read_bytes() == b"k"


def test_pseudo_labels_refuses_an_existing_file(tmp_path, capsys, run):
    (tmp_path / "p.csv").write_text("mine")
    refused(capsys, "pseudo-labels", run, "--out", tmp_path / "p.csv", expect="exists", keep=tmp_path)


# ------------------------------------------------------------------ paths stored absolute, data that moved


@pytest.mark.slow
def test_a_run_finds_its_data_from_any_working_directory(tmp_path, capsys, monkeypatch):
    gray_folder(tmp_path / "proj" / "data" / "gray", n=12)  # scoring needs 20 normal images
    monkeypatch.chdir(tmp_path / "proj")
    argv = ["fit", "--data", "data/gray", "--out", "runs/r", *TINY, "--steps", 1]
    assert run_cli(capsys, *argv)[0] == 0
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "fit", "--out", "proj/runs/r", "--resume", "--steps", 2)[0] == 0
    assert run_cli(capsys, "score", "--model", "proj/runs/r", "--data", "proj/data/gray", "--out", "s.csv")[0] == 0
    # the data moves: say so and how to point the run at it; then follow it
    (tmp_path / "proj" / "data").rename(tmp_path / "moved")
    code, _, err = run_cli(capsys, "fit", "--out", "proj/runs/r", "--resume", "--steps", 3)
    assert code == 2 and "is no longer at" in one_line_error(err) and "--data NEW_PLACE" in err
    assert run_cli(capsys, "fit", "--out", "proj/runs/r", "--resume", "--steps", 3, "--data", "moved/gray")[0] == 0
    assert run_cli(capsys, "fit", "--out", "proj/runs/r", "--resume", "--steps", 4)[0] == 0  # the new place is kept


@pytest.mark.slow
def test_pseudo_labels_from_another_working_directory(tmp_path, capsys, monkeypatch):
    gray_folder(tmp_path / "proj" / "data" / "gray", n=8)
    gray_folder(tmp_path / "proj" / "data" / "pool", classes=("x",), n=6)
    monkeypatch.chdir(tmp_path / "proj")
    unlabeled = ["--unlabeled", "data/pool", "--pseudo-labeller", "classifier", "--pseudo-steps", 5, "--pseudo-threshold", 0.01]
    assert run_cli(capsys, "fit", "--data", "data/gray", "--out", "r", *TINY, "--steps", 1, *unlabeled)[0] == 0
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "pseudo-labels", "proj/r", "--out", "p.csv")
    assert code == 0, err
    assert "proj/data/pool" in (tmp_path / "p.csv").read_text()


# ------------------------------------------------------------------ wording


def test_flags_are_named_as_typed(tmp_path, capsys, run, scored_run):
    refused(
        capsys,
        *["score", "--model", scored_run, "--data", gray_folder(tmp_path / "imgs", classes=("0", "1")), "--normal-classes", 7],
        *["--out", tmp_path / "s.csv"],
        expect="--normal-classes: unknown class '7'",
        keep=tmp_path,
    )
    refused(
        capsys,
        "fit",
        "--out",
        scored_run,
        "--resume",
        "--no-spectral-norm",
        expect="--no-spectral-norm contradicts",
        keep=tmp_path,
    )


def test_a_symlink_loop_is_named(tmp_path, capsys):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    refused(capsys, "fit", "--data", tmp_path / "a", "--out", tmp_path / "r", expect="loops back on itself", keep=tmp_path)


def test_a_truncated_generator_says_how_to_fix_it(tmp_path, capsys, run):
    k = tmp_path / "k"
    shutil.copytree(run, k)
    (k / "generator.onnx").write_bytes((k / "generator.onnx").read_bytes()[:500])
    refused(capsys, "sample", k, "--n", 2, "--out", tmp_path / "s", expect=f"augmentor export {k}", keep=tmp_path)


# ------------------------------------------------------------------ SyntheticMix's labels


def loader_of(labels):
    images = torch.rand(len(labels), 1, 32, 32)
    return [(images, labels)]


@pytest.fixture(scope="module")
def generator(run):
    return run / "generator.onnx"


def test_mix_keeps_float_labels_float(generator):
    y = torch.tensor([0.0, 1.0, 1.0, 0.0] * 4)
    (x, got), *_ = list(SyntheticMix(loader_of(y), generator, ratio=0.5, labels="balanced"))
    assert got.dtype == torch.float32 and set(got.tolist()) <= {0.0, 1.0}
    counts = torch.bincount(got.long(), minlength=2)
    assert counts.tolist() == [8, 8]  # balanced: the synthetic half fills the rarer class first


def test_mix_keeps_one_hot_labels_one_hot(generator):
    idx = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    y = torch.nn.functional.one_hot(idx, 2).float()
    (x, got, mask), *_ = list(SyntheticMix(loader_of(y), generator, ratio=0.5, labels={"1": 1.0}, return_mask=True))
    assert got.shape == (8, 2) and (got.sum(1) == 1).all()
    assert (got[mask].argmax(1) == 1).all() and torch.equal(got[~mask], y[~mask])


@pytest.mark.parametrize(
    "labels, weights, expect",
    [
        (torch.tensor([0.5, 1.0]), "match", "fractional or NaN"),
        (torch.tensor([[0.3, 0.7], [1.0, 0.0]]), "match", "not one-hot"),
        (torch.tensor([0, 1]), {"0": float("nan"), "1": 1.0}, "finite numbers"),
    ],
    ids=["fractional", "soft rows", "NaN weight"],
)
def test_mix_refuses_labels_it_cannot_give(generator, labels, weights, expect):
    with pytest.raises(ConfigError, match=expect):
        list(SyntheticMix(loader_of(labels), generator, ratio=0.5, labels=weights))


# ------------------------------------------------------------------ torchrun


@pytest.mark.slow
def test_torchrun_refusal_is_one_line_without_our_tracebacks(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3", "-m", "augmentor"]
    cmd += ["fit", "--batch-size", 64, "--steps", 1, "--out", tmp_path / "r"]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert [ln for ln in text.splitlines() if ln.startswith("error:")] == [
        "error: --batch-size 64 does not divide over 3 processes; give a multiple of 3"
    ]
    assert "exitcode  : 2" in text  # the ranks that refused exited 2
    assert f"{os.sep}augmentor{os.sep}" not in "".join(ln for ln in text.splitlines() if ln.strip().startswith("File "))
    assert not (tmp_path / "r").exists()


def test_outputs_manifest_of_the_users_is_not_trusted(tmp_path):
    (tmp_path / outputs.MANIFEST).write_text("config.json\n")
    with pytest.raises(Exception, match="not augmentor's list"):
        outputs.listed(tmp_path)


def test_a_refused_fit_takes_back_every_folder_it_made(tmp_path, capsys):
    refused(capsys, "fit", "--data", tmp_path / "nope", "--out", tmp_path / "x" / "a" / "b", expect="nope", keep=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_out_inside_the_data_is_refused(tmp_path, capsys):
    data = gray_folder(tmp_path / "imgs")
    refused(capsys, "fit", "--data", data, "--out", data / "run", *TINY, expect="is inside --data", keep=tmp_path)
    assert not (data / "run").exists()


def test_score_never_writes_inside_its_data(tmp_path, capsys, scored_run):
    data = gray_folder(tmp_path / "imgs", classes=("0", "1"))
    first = data / "0" / "0.png"
    refused(
        capsys,
        "score",
        "--model",
        scored_run,
        "--data",
        data,
        "--out",
        first,
        "--force",
        expect="is inside --data",
        keep=tmp_path,
    )
    argv = ["score", "--model", scored_run, "--data", data, "--out", tmp_path / "s.csv", "--heatmaps", data / "maps"]
    refused(capsys, *argv, expect="--heatmaps", keep=tmp_path)


def test_a_refusal_after_labelling_leaves_the_old_run(tmp_path, capsys, run):
    """No unlabelled image reaches the threshold: found only after minutes of labelling, before the old run goes."""
    k = tmp_path / "k"
    shutil.copytree(run, k)
    pool = gray_folder(tmp_path / "pool", classes=("x",))
    unlabeled = ["--unlabeled", pool / "x", "--pseudo-labeller", "classifier", "--pseudo-steps", 2, "--pseudo-threshold", 0.99999]
    refused(capsys, "fit", "--out", k, *FIT, "--steps", 1, *unlabeled, "--force", expect="not confident", keep=tmp_path)


def test_a_damaged_pseudo_labels_file_is_one_line(tmp_path, capsys):
    gray_folder(tmp_path / "data" / "gray", n=8)
    gray_folder(tmp_path / "data" / "pool", classes=("x",), n=6)
    unlabeled = ["--unlabeled", tmp_path / "data" / "pool", "--pseudo-labeller", "classifier", "--pseudo-steps", 5]
    out = tmp_path / "r"
    argv = ["fit", "--data", tmp_path / "data" / "gray", "--out", out, *TINY, "--steps", 1, "--pseudo-threshold", 0.01]
    assert run_cli(capsys, *argv, *unlabeled)[0] == 0
    (out / "pseudo_labels.json").write_text("{")
    refused(capsys, "pseudo-labels", out, "--out", tmp_path / "p.csv", expect="pseudo_labels.json: damaged", keep=tmp_path)


def test_sample_never_writes_into_the_runs_training_images(tmp_path, capsys):
    """Samples written inside the images a run learnt from would become a new class folder of the user's data."""
    data = gray_folder(tmp_path / "imgs")
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "fit", "--data", data, "--out", run_dir, "--steps", 2, *TINY)
    assert code == 0, err
    for model in (run_dir, run_dir / "generator.onnx"):
        refused(capsys, "sample", model, "--n", 4, "--out", data / "synthetic", expect="inside the run's --data", keep=tmp_path)
    code, _, err = run_cli(capsys, "sample", run_dir, "--n", 4, "--out", tmp_path / "synthetic")
    assert code == 0 and len(list((tmp_path / "synthetic").rglob("*.png"))) == 4, err
