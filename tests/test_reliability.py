"""Bad input never gives a traceback or touches the user's files; runs survive kills, Ctrl-C and NaNs."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from clihelp import TINY, one_line_error, run_cli
from conftest import tiny_model, tiny_train, write_image
from PIL import Image
from test_export_sample import make_run
from test_mix import real_loader

from augmentor import data
from augmentor.anomaly.scorer import AnomalyScorer
from augmentor.errors import ConfigError, ModelFileError, TrainingDiverged
from augmentor.gan.callbacks import Checkpointer, NonFiniteGuard, ProgressLog
from augmentor.gan.train import Callback, Trainer
from augmentor.mix.dataset import SyntheticDataset
from augmentor.mix.loader import SyntheticMix
from augmentor.onnx.export import export_run
from augmentor.onnx.sampler import Sampler
from augmentor.store import checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    gray = make_run(root, names=("0", "1"))
    rgb = make_run(root, names=("0", "1"), channels=3)
    export_run(gray)
    export_run(rgb)
    return {"gray": gray, "rgb": rgb, "tmp": root}


def lone_discriminator(run, tmp):
    """A discriminator.onnx copied away from its generator: nothing to pair it with."""
    lone = tmp / "lone" / "d.onnx"
    lone.parent.mkdir(exist_ok=True)
    shutil.copy(run / "discriminator.onnx", lone)
    return lone


# ------------------------------------------------------------------ setups: each makes the user's files, returns argv


def folder(tmp, files: dict):
    for rel, content in files.items():
        p = tmp / "data" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if content == "png":
            write_image(p, seed=hash(rel) % 1000)
        elif content == "jpg":
            write_image(p, seed=1, fmt="JPEG")
        elif content == "torn":
            write_image(p.with_suffix(".full.jpg"), seed=1, size=(64, 64), fmt="JPEG")
            p.write_bytes(p.with_suffix(".full.jpg").read_bytes()[:300])
            p.with_suffix(".full.jpg").unlink()
        else:
            p.write_bytes(content)
    return tmp / "data"


def npz(tmp, **arrays):
    np.savez(tmp / "d.npz", **arrays)
    return tmp / "d.npz"


def idx(tmp, magic=2051, truncate=False):
    import gzip
    import struct

    d = tmp / "mnist"
    d.mkdir()
    payload = struct.pack(">IIII", magic, 2, 4, 4) + bytes(32 if not truncate else 10)
    with gzip.open(d / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(payload)
    with gzip.open(d / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, 2) + bytes(2))
    return d


def big_image(tmp):
    d = tmp / "data" / "c"
    d.mkdir(parents=True)
    Image.new("L", (10_000, 10_000)).save(d / "huge.png")
    write_image(d / "ok.png")
    return tmp / "data"


def fit(data_path, *extra):
    return ["fit", "--data", data_path, "--out", "OUT", *TINY, "--steps", 1, *extra]


TWO_OK = {"a/1.png": "png", "a/2.png": "png"}
U8 = np.zeros((4, 8, 8), np.uint8)
L2 = np.zeros((4, 1), np.uint8)

FIT_CASES = [
    ("missing path", lambda t: fit(t / "nope"), "nope: no such file or directory"),
    ("empty folder", lambda t: fit(folder(t, {}) if (t / "data").mkdir() is None else None), "no images found"),
    ("empty class folder", lambda t: fit(folder(t, {**TWO_OK, "b/.keep": b""})), "b: class folder has no images"),
    ("single image", lambda t: fit(folder(t, {"a/1.png": "png"})), "only 1 usable image"),
    ("all zero-byte", lambda t: fit(folder(t, {"a/1.png": b"", "a/2.png": b""})), "no usable images"),
    ("only a text file", lambda t: fit(folder(t, {"a/readme.txt": b"hi"})), "no usable images"),
    ("strict: zero-byte", lambda t: fit(folder(t, {**TWO_OK, "a/0.png": b""}), "--strict"), "0.png: zero-byte file"),
    ("strict: torn jpeg", lambda t: fit(folder(t, {**TWO_OK, "a/t.jpg": "torn"}), "--strict"), "t.jpg"),
    ("strict: text file", lambda t: fit(folder(t, {**TWO_OK, "a/x.txt": b"x"}), "--strict"), "x.txt: not an image file"),
    (
        "strict: png that is text",
        lambda t: fit(folder(t, {**TWO_OK, "a/x.png": b"hello"}), "--strict"),
        "x.png: not a readable image",
    ),
    ("strict: 10000x10000 image", lambda t: fit(big_image(t), "--strict"), "huge.png: 10000×10000 is too large"),
    ("npz wrong keys", lambda t: fit(npz(t, images=U8)), "no 'train_images'"),
    ("npz float pixels", lambda t: fit(npz(t, train_images=U8.astype(np.float32), train_labels=L2)), "dtype float32"),
    ("npz wrong shape", lambda t: fit(npz(t, train_images=np.zeros((4, 8), np.uint8), train_labels=L2)), "shape (4, 8)"),
    ("npz label count", lambda t: fit(npz(t, train_images=U8, train_labels=L2[:3])), "one integer label per image"),
    ("npz missing split", lambda t: fit(npz(t, train_images=U8, train_labels=L2), "--split", "val"), "no 'val_images'"),
    ("npz not a zip", lambda t: fit(folder(t, {"x.npz": b"garbage"}) / "x.npz"), "not a readable .npz"),
    ("idx wrong magic", lambda t: fit(idx(t, magic=1234)), "wrong IDX magic number 1234"),
    ("idx truncated", lambda t: fit(idx(t, truncate=True)), "truncated"),
    ("a single file", lambda t: fit(folder(t, TWO_OK) / "a" / "1.png"), "a single file is not a dataset"),
    ("negative steps", lambda t: fit(folder(t, TWO_OK), "--steps", -5), "--steps -5"),
    ("size 48", lambda t: fit(folder(t, TWO_OK), "--size", 48), "'--size': '48'"),
    ("unknown device", lambda t: fit(folder(t, TWO_OK), "--device", "tpu"), "--device tpu"),
    ("cuda without a GPU", lambda t: fit(folder(t, TWO_OK), "--device", "cuda"), "no CUDA GPU"),
    ("unknown precision", lambda t: fit(folder(t, TWO_OK), "--precision", "fp8"), "'--precision': 'fp8'"),
    ("holdout 1.5", lambda t: fit(folder(t, TWO_OK), "--holdout", 1.5), "--holdout 1.5"),
    ("per-class 0", lambda t: fit(folder(t, TWO_OK), "--per-class", 0), "--per-class 0"),
    ("unknown class", lambda t: fit(folder(t, TWO_OK), "--classes", "zebra"), "unknown class 'zebra'"),
    ("batch size 1", lambda t: fit(folder(t, TWO_OK), "--batch-size", 1), "--batch-size 1"),
    ("lr 0", lambda t: fit(folder(t, TWO_OK), "--lr", 0), "--lr 0"),
    ("channels 2", lambda t: fit(folder(t, TWO_OK), "--channels", 2), "'--channels': '2'"),
    ("bad diffaug op", lambda t: fit(folder(t, TWO_OK), "--diffaug", "blur"), "unknown op(s) blur"),
    ("negative coverage", lambda t: fit(folder(t, TWO_OK), "--coverage", -1), "--coverage"),
    ("conditional with one class", lambda t: fit(folder(t, TWO_OK), "--mode", "conditional"), "needs at least 2 classes"),
    ("out is a file", lambda t: ["fit", "--out", folder(t, {"f.txt": b"mine"}) / "f.txt", "--steps", 1], "is a file"),
    ("out not writable", lambda t: ["fit", "--out", "/proc/augmentor-test/run", "--steps", 1], "cannot write here"),
    (
        "out is someone's folder",
        lambda t: ["fit", "--out", folder(t, {"notes.txt": b"mine"}), "--steps", 1],
        "holds no augmentor run",
    ),
    ("resume without a run", lambda t: ["fit", "--out", folder(t, {"x.txt": b"x"}), "--resume"], "no config.json"),
    ("mode not a choice", lambda t: fit(folder(t, TWO_OK), "--mode", "gan"), "Invalid value for '--mode'"),
    ("steps not a number", lambda t: fit(folder(t, TWO_OK), "--steps", "many"), "'many' is not a valid integer"),
    ("unknown subcommand", lambda t: ["train"], "No such command 'train'"),
    (
        "bench: missing data",
        lambda t: ["bench", "--data", t / "nope", "--out", t / "b", "--preset", "smoke"],
        "nope: no such file",
    ),
    ("bench: unknown preset", lambda t: ["bench", "--out", t / "b", "--preset", "huge"], "Invalid value for '--preset'"),
    ("bench: bad shots", lambda t: ["bench", "--out", t / "b", "--shots", "10,lots"], "--shots: 'lots'"),
    ("bench: gan steps 0", lambda t: ["bench", "--out", t / "b", "--preset", "smoke", "--gan-steps", 0], "--gan-steps 0"),
    (
        "bench: out is a file",
        lambda t: ["bench", "--out", folder(t, {"r.md": b"mine"}) / "r.md", "--preset", "smoke"],
        "is a file",
    ),
    (
        "bench: empty folder",
        lambda t: ["bench", "--data", folder(t, {}) if (t / "data").mkdir() is None else None, "--out", t / "b"],
        "no images found",
    ),
    (
        "score: missing model",
        lambda t: ["score", "--model", t / "none", "--data", "sklearn:digits", "--out", t / "s.csv"],
        "no discriminator here",
    ),
]


def run_case(models, tmp):
    return {
        "export: no checkpoint": (["export", folder(tmp, {"x.txt": b"x"})], "no usable checkpoint"),
        "export: torn checkpoint": (["export", torn_run(models, tmp)], "no usable checkpoint"),
        "export: newer format": (["export", newer_run(models, tmp)], "format 99 is newer"),
        "export: foreign .pt": (["export", foreign_pt(tmp)], "not an augmentor checkpoint"),
        "sample: foreign onnx": (["sample", foreign_onnx(models, tmp), "--n", 2, "--out", tmp / "s"], "not made by augmentor"),
        "sample: junk onnx": (
            ["sample", folder(tmp, {"m.onnx": b"junk"}) / "m.onnx", "--n", 2, "--out", tmp / "s"],
            "not an ONNX file",
        ),
        "score: missing data": (
            ["score", "--model", models["gray"], "--data", tmp / "no-such-folder", "--out", tmp / "s.csv"],
            "no such file or directory",
        ),
        "sample: discriminator": (
            ["sample", lone_discriminator(models["gray"], tmp), "--n", 2, "--out", tmp / "s"],
            "not a generator",
        ),
        "sample: n 0": (["sample", models["gray"], "--n", 0, "--out", tmp / "s"], "--n 0"),
        "sample: out not empty": (
            ["sample", models["gray"], "--n", 2, "--out", folder(tmp, {"keep.txt": b"k"})],
            "not an empty folder",
        ),
        "sample: missing model": (["sample", tmp / "none.onnx", "--n", 2, "--out", tmp / "s"], "none.onnx: no such model"),
        "sample: unknown device": (["sample", models["gray"], "--n", 2, "--out", tmp / "s", "--device", "tpu"], "'tpu'"),
        "info: not onnx": (["info", folder(tmp, {"a.onnx": b"x"}) / "a.onnx"], "not an ONNX file"),
        "score: color images, gray model": (
            [
                "score",
                "--model",
                models["gray"],
                "--data",
                folder(tmp, {"a/x.png": "png", "a/y.png": "png"}),
                "--out",
                tmp / "s.csv",
            ],
            "color images",
        ),
        "score: heat maps into a full folder": (
            [
                "score",
                "--model",
                models["gray"],
                "--data",
                "sklearn:digits",
                "--out",
                tmp / "s.csv",
                "--heatmaps",
                folder(tmp, {"keep.txt": b"k"}),
            ],
            "not empty",
        ),  # fmt: skip
    }


def torn_run(models, tmp):
    run = tmp / "torn"
    (run / "checkpoints").mkdir(parents=True)
    src = checkpoint.list_checkpoints(models["gray"] / "checkpoints")[-1]
    (run / "checkpoints" / src.name).write_bytes(src.read_bytes()[:1000])
    return run


def newer_run(models, tmp):
    run = tmp / "newer"
    (run / "checkpoints").mkdir(parents=True)
    state = checkpoint.load(checkpoint.list_checkpoints(models["gray"] / "checkpoints")[-1])
    state["format_version"] = 99
    torch.save(state, run / "checkpoints" / "ckpt_000001.pt")
    return run / "checkpoints" / "ckpt_000001.pt"


def foreign_pt(tmp):
    torch.save({"weights": torch.zeros(3)}, tmp / "other.pt")
    return tmp / "other.pt"


def foreign_onnx(models, tmp):
    m = onnx.load(str(models["gray"] / "generator.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(tmp / "foreign.onnx"))
    return tmp / "foreign.onnx"


def snapshot(root: Path) -> dict:
    return {p: hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def check_cli_case(capsys, tmp, argv, expected):
    argv = [tmp / "out" if a == "OUT" else a for a in argv]
    before = snapshot(tmp)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    line = one_line_error(err)
    assert expected in line, line
    after = snapshot(tmp)
    assert all(after.get(p) == h for p, h in before.items()), "a user's file was changed or deleted"


@pytest.mark.parametrize("case", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_bad_input(tmp_path, capsys, case):
    _, setup, expected = case
    check_cli_case(capsys, tmp_path, setup(tmp_path), expected)


CASE_NAMES = [
    "export: no checkpoint",
    "export: torn checkpoint",
    "export: newer format",
    "export: foreign .pt",
    "sample: foreign onnx",
    "sample: junk onnx",
    "sample: discriminator",
    "sample: n 0",
    "sample: out not empty",
    "sample: missing model",
    "sample: unknown device",
    "info: not onnx",
    "score: missing data",
    "score: color images, gray model",
    "score: heat maps into a full folder",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_export_sample_info_bad_input(tmp_path, capsys, models, name):
    cases = run_case(models, tmp_path)
    assert set(cases) == set(CASE_NAMES)  # every case is run
    argv, expected = cases[name]
    check_cli_case(capsys, tmp_path, argv, expected)


API_CASES = [
    ("Sampler: unknown device", lambda m: Sampler(m["gray"], device="tpu"), ConfigError, "'tpu'"),
    ("Sampler: unknown label", lambda m: Sampler(m["gray"], "cpu").sample(3, labels=[0, 1, 7]), ConfigError, "label 7"),
    ("Sampler: bad value range", lambda m: Sampler(m["gray"], "cpu").sample(3, value_range="hdr"), ConfigError, "value_range"),
    ("Sampler: label count", lambda m: Sampler(m["gray"], "cpu").sample(3, labels=[0, 1]), ConfigError, "2 labels for 3"),
    ("Sampler: discriminator", lambda m: Sampler(lone_discriminator(m["gray"], m["tmp"])), ModelFileError, "not a generator"),
    ("Dataset: bad output", lambda m: SyntheticDataset(m["gray"], 4, output="jpeg"), ConfigError, "output='jpeg'"),
    ("Dataset: negative n", lambda m: SyntheticDataset(m["gray"], -1), ConfigError, "n must be"),
    ("Dataset: unknown class", lambda m: SyntheticDataset(m["gray"], class_counts={"cat": 2}), ConfigError, "'cat'"),
    ("Mix: ratio", lambda m: SyntheticMix(real_loader(), m["gray"], ratio=-0.1), ConfigError, "ratio -0.1"),
    ("Mix: labels", lambda m: SyntheticMix(real_loader(), m["gray"], labels="weird"), ConfigError, "labels='weird'"),
    ("Mix: other image shape", lambda m: next(iter(SyntheticMix(real_loader(), m["rgb"]))), ConfigError, "(3, 32, 32)"),
    (
        "Mix: label unknown to model",
        lambda m: next(iter(SyntheticMix(real_loader(classes=3), m["gray"]))),
        ConfigError,
        "label 2",
    ),
    ("Mix: weights", lambda m: SyntheticMix(real_loader(), m["gray"], labels={0: 0.0}), ConfigError, "positive sum"),
    ("Scorer: unknown method", lambda m: AnomalyScorer(m["gray"], method="magic"), ConfigError, "'magic'"),
    ("Scorer: wrong channels", lambda m: scorer(m).score(torch.zeros(2, 3, 32, 32)), ConfigError, "(N, 1, 32, 32)"),
    ("Scorer: other image size", lambda m: scorer(m).score(torch.zeros(2, 1, 64, 64)), ConfigError, "(N, 1, 32, 32)"),
    ("Scorer: few normal images", lambda m: AnomalyScorer(m["gray"]).fit(torch.zeros(5, 1, 32, 32)), ConfigError, "at least 20"),
]


def scorer(models):
    return AnomalyScorer(models["gray"], method="discriminator")


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(models, case):
    _, call, exc, expected = case
    with pytest.raises(exc) as info:
        call(models)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_mixed_sizes_and_modes_fit_fine(tmp_path, capsys):
    for i, mode in enumerate(["RGB", "L", "LA", "P", "RGBA", "CMYK", "I;16"]):
        write_image(
            tmp_path / "d" / "c" / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}", mode=mode, size=(10 + 13 * i, 40 - 3 * i), seed=i
        )
    code, _, err = run_cli(capsys, "fit", "--data", tmp_path / "d", "--out", tmp_path / "r", *TINY, "--steps", 1)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["num_images"] == 7


def test_warnings_are_one_line_per_problem(tmp_path, capsys):
    folder(tmp_path, {**TWO_OK, "a/z.png": b"", "a/t.jpg": "torn", "a/notes.txt": b"x"})
    code, _, err = run_cli(capsys, "fit", "--data", tmp_path / "data", "--out", tmp_path / "r", *TINY, "--steps", 1)
    assert code == 0 and "Traceback" not in err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 4  # three files, one summary
    assert any("z.png: zero-byte" in w for w in warnings) and any("t.jpg" in w for w in warnings)


# ------------------------------------------------------------------ runs survive crashes


@pytest.mark.slow
def test_newest_torn_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "fit", "--out", out, *TINY, "--steps", 4, "--checkpoint-every", 2)[0] == 0
    newest = checkpoint.list_checkpoints(out / "checkpoints")[-1]
    newest.write_bytes(newest.read_bytes()[:5000])
    code, _, err = run_cli(capsys, "fit", "--out", out, "--resume", "--steps", 6, "--checkpoint-every", 2)
    assert code == 0, err
    assert "ckpt_000004.pt: not a readable augmentor checkpoint" in err and "trying the one before" in err
    assert "step 2 of 6" in err
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]  # logged every 2 steps; the rows past step 2 were dropped and written again


def test_locked_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / ".lock").write_text(str(holder.pid))
        code, _, err = run_cli(capsys, "fit", "--out", out, *TINY, "--steps", 1)
        assert code == 2 and "another fit" in one_line_error(err)
    finally:
        holder.kill()
        holder.wait()
    assert run_cli(capsys, "fit", "--out", out, *TINY, "--steps", 1)[0] == 0  # a dead holder's lock is taken over


class _Poison(Callback):
    """Sets D's weights to NaN at the given steps: the next step's losses are NaN."""

    def __init__(self, at, once=True):
        self.at, self.once = set(at), once

    def on_step_end(self, trainer, logs):
        if trainer.step in self.at:
            if self.once:
                self.at.discard(trainer.step)
            with torch.no_grad():
                for p in trainer.D.parameters():
                    p.fill_(float("nan"))


def _nan_run(tmp_path, poison_at, once=True):
    ds = data.select_classes(data.load(None), "0,1")
    trainer = Trainer(tiny_model(("0", "1")), tiny_train(steps=12), ds)
    callbacks = [
        _Poison(poison_at, once),
        ProgressLog(tmp_path / "log.jsonl", every=1, progress=False),
        Checkpointer(tmp_path / "ck", every=4),
        NonFiniteGuard(tmp_path / "ck", tmp_path / "log.jsonl"),
    ]
    return trainer, callbacks


def test_nan_restores_the_last_good_checkpoint(tmp_path, caplog):
    trainer, callbacks = _nan_run(tmp_path, poison_at=[6])
    trainer.fit(callbacks=callbacks)
    assert trainer.step == 12 and all(torch.isfinite(p).all() for p in trainer.G.parameters())
    assert "restoring ckpt_000004.pt" in caplog.text
    steps = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_nan_twice_in_one_interval_stops_with_an_error(tmp_path):
    trainer, callbacks = _nan_run(tmp_path, poison_at=[5], once=False)  # poisoned again after the restore
    with pytest.raises(TrainingDiverged, match="NaN/inf at step 6 again"):
        trainer.fit(callbacks=callbacks)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "ck")] == ["ckpt_000004.pt"]  # good ones stay


def _fit_cmd(out, steps, *extra):
    return [
        sys.executable,
        "-m",
        "augmentor.cli",
        "fit",
        "--out",
        str(out),
        *map(str, TINY),
        "--steps",
        str(steps),
        "--checkpoint-every",
        "5",
        "--sample-every",
        "0",
        "--no-export",
        *extra,
    ]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_fit_cmd(out, 100000), env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "log.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with: augmentor fit --out" in err and "Traceback" not in err
    step = checkpoint.load(checkpoint.list_checkpoints(out / "checkpoints")[-1])["step"]
    assert 0 < step < 100000


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_reaches_the_same_weights(tmp_path):
    """Kill -9 a fit three times at random moments (checkpoints every 5 steps, so some kills land in a
    write), resume each time; the run finishes, its log has no gap and no repeat, and its final weights
    equal an uninterrupted run's."""
    steps = 150
    ref = tmp_path / "ref"  # the uninterrupted run, on the other core meanwhile (each process has one thread)
    reference = subprocess.Popen(_fit_cmd(ref, steps), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    proc = subprocess.Popen(_fit_cmd(out, steps), env=_env(), stderr=subprocess.DEVNULL)
    while kills < 3:
        deadline = time.time() + 60
        while not (out / "checkpoints").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.2, 1.5)))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = subprocess.Popen(_fit_cmd(out, steps, "--resume"), env=_env(), stderr=subprocess.DEVNULL)
    assert kills == 3, "the run finished before it could be killed three times"
    assert proc.wait(timeout=120) == 0 and reference.wait(timeout=120) == 0
    final = checkpoint.load(checkpoint.list_checkpoints(out / "checkpoints")[-1])
    expected = checkpoint.load(checkpoint.list_checkpoints(ref / "checkpoints")[-1])
    assert final["step"] == steps
    for k, v in expected["G_ema"].items():
        assert torch.equal(v, final["G_ema"][k]), k
    logged = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(5, steps + 1, 5))  # logged every 5 steps
    assert not list((out / "checkpoints").glob(".*tmp*"))  # no temporary file left under a checkpoint name
