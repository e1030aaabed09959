import json

import pytest
from clihelp import TINY, one_line_error, run_cli
from conftest import dataset, write_image
from PIL import Image

from augmentor.store import checkpoint, outputs


@pytest.mark.slow
def test_fit_on_builtin_digits_writes_the_whole_run(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "fit", "--out", out, "--steps", 6, "--sample-every", 3, "--checkpoint-every", 3, *TINY)
    assert code == 0, err
    assert "sklearn:digits" in stdout  # says it used the default
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["mode"] == "conditional" and cfg["num_images"] == 1797
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == ["ckpt_000003.pt", "ckpt_000006.pt"]
    state = checkpoint.load(out / "checkpoints" / "ckpt_000006.pt")
    assert {"G", "D", "G_ema", "opt_g", "opt_d", "rng", "model_config", "augmentor_version"} <= set(state)
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step_000003.png", "step_000006.png"]
    assert (out / "samples" / outputs.MANIFEST).read_text().splitlines()[1:] == ["step_000003.png", "step_000006.png"]
    grid = Image.open(out / "samples" / "step_000006.png")
    assert grid.height > grid.width / 2  # 10 rows (one per class) of 8
    assert Image.open(out / "progress.gif").n_frames == 2
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and all("loss_d" in r for r in rows)
    for name in ("losses.png", "generator.onnx", "discriminator.onnx", "holdout.json"):
        assert (out / name).exists(), name


@pytest.mark.slow
def test_fit_on_the_strawberry_jpeg_folder(tmp_path, capsys):
    out = tmp_path / "s"
    code, _, err = run_cli(
        capsys,
        "fit",
        "--data",
        dataset("plantvillage-strawberry"),
        "--size",
        32,
        "--steps",
        4,
        "--holdout",
        0.2,
        "--out",
        out,
        *TINY,
    )
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["class_names"] == ["healthy", "leaf_scorch"] and cfg["model"]["channels"] == 3
    held = json.loads((out / "holdout.json").read_text())
    assert abs(len(held["holdout_index"]) - 0.2 * 1565) < 3 and " " in held["holdout_paths"][0]


def test_empty_folder_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "fit", "--data", tmp_path / "empty", "--out", tmp_path / "r")
    assert code == 2 and "no images found" in one_line_error(err)
    assert not (tmp_path / "r" / "config.json").exists()
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "notes.png").write_text("not an image")  # a flat folder: its own name is the class
    code, _, err = run_cli(capsys, "fit", "--data", tmp_path / "flat", "--out", tmp_path / "r")
    assert code == 2 and one_line_error(err) == f"error: {tmp_path / 'flat'}: has no usable images (1 file(s) skipped)"


@pytest.mark.slow
def test_existing_run_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "fit", "--out", out, "--steps", 2, *TINY)[0] == 0
    before = (out / "config.json").read_text()
    code, _, err = run_cli(capsys, "fit", "--out", out, "--steps", 2, *TINY)
    assert code == 2 and "--resume" in one_line_error(err) and (out / "config.json").read_text() == before
    (out / "my-notes.txt").write_text("mine")
    (out / ".config.json.k3x9q2wz.tmp").write_text("{")  # what a fit killed while writing its config leaves
    assert run_cli(capsys, "fit", "--out", out, "--steps", 3, "--force", *TINY)[0] == 0
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 3
    assert (out / "my-notes.txt").read_text() == "mine"  # --force removes only what a run writes
    assert not (out / ".config.json.k3x9q2wz.tmp").exists()


@pytest.mark.slow
def test_resume_extends_a_finished_run_and_refuses_contradicting_flags(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "fit", "--out", out, "--steps", 4, "--checkpoint-every", 2, *TINY)[0] == 0
    code, _, err = run_cli(capsys, "fit", "--out", out, "--resume", "--size", 64)
    assert code == 2 and "--size 64" in one_line_error(err)
    code, _, err = run_cli(capsys, "fit", "--out", out, "--resume", "--steps", 6, "--checkpoint-every", 2)
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    # what a fit killed in the middle of writing a checkpoint leaves; the next resume clears it, nothing else
    (out / "checkpoints" / ".ckpt_000006.pt.k3x9q2wz.tmp").write_bytes(b"torn")
    (out / "checkpoints" / "notes.tmp1").write_text("mine")
    code, _, err = run_cli(capsys, "fit", "--out", out, "--resume", "--steps", 8, "--checkpoint-every", 2)
    assert code == 0, err
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if "tmp" in p.name) == ["notes.tmp1"]


def test_info_prints_metadata(tmp_path, capsys):
    out = tmp_path / "run"
    run_cli(capsys, "fit", "--out", out, "--steps", 2, *TINY)
    code, stdout, _ = run_cli(capsys, "info", out / "generator.onnx")
    assert code == 0 and "conditional" in stdout and "data_fingerprint" in stdout


def test_bad_flag_values_exit_2(tmp_path, capsys):
    write_image(tmp_path / "d" / "a.png")
    for args, text in [
        (["--steps", -1], "--steps -1"),
        (["--size", 48], "48"),
        (["--device", "tpu"], "tpu"),
        (["--holdout", 1.5], "--holdout"),
        (["--data", tmp_path / "d", "--split", "test"], "has no splits"),
    ]:
        code, _, err = run_cli(capsys, "fit", "--out", tmp_path / "r", *args)
        assert code == 2 and text in one_line_error(err), err
