import csv
import json
import shutil

import numpy as np
import pytest
import torch
from clihelp import one_line_error, run_cli
from conftest import write_image
from PIL import Image
from sklearn.metrics import roc_auc_score

from augmentor import data
from augmentor.anomaly import scorer
from augmentor.anomaly.score import training_images
from augmentor.anomaly.scorer import DEFAULT_METHOD, METHODS, AnomalyScorer
from augmentor.errors import ConfigError
from augmentor.onnx.metadata import read_metadata
from augmentor.store.rundir import ANOMALY, MODEL_FILES


@pytest.fixture(autouse=True)
def short_encoder(monkeypatch):
    monkeypatch.setattr(scorer, "ENCODER_STEPS", 150)  # the library's 500, shortened for a 16-wide model on digits


@pytest.fixture(scope="module")
def zero_run(tmp_path_factory):
    """An unconditional GAN on half of the digit 0 (the other half held out, recorded in holdout.json)."""
    from augmentor import run
    from augmentor.config import DataConfig, TrainConfig

    out = tmp_path_factory.mktemp("anom") / "zeros"
    cfg = DataConfig(source="sklearn:digits", classes="0", holdout=0.5, seed=0)
    run.fit(out, cfg, TrainConfig.short_run(150, batch_size=32), {"width": 16, "nz": 32}, progress=False)
    return out


@pytest.fixture
def fresh_run(zero_run, tmp_path):
    """A copy of the run without anything scoring has kept in it."""
    copy = tmp_path / "run"
    shutil.copytree(zero_run, copy, ignore=shutil.ignore_patterns(ANOMALY, MODEL_FILES["encoder"]))
    return copy


@pytest.fixture(scope="module")
def held_out(zero_run):
    """(zeros the GAN never saw, sevens): the only images the tests score."""
    ds = data.load(None)
    zeros = ds.images[ds.labels == 0]
    held = json.loads((zero_run / "holdout.json").read_text())["holdout_index"]
    return data.uint8_to_tanh(zeros[held]), data.uint8_to_tanh(ds.images[ds.labels == 7][:60])


@pytest.fixture(scope="module")
def fitted(zero_run):
    """A scorer fitted (encoder included) on the run's training zeros, in memory."""
    train = data.uint8_to_tanh(training_images(zero_run).images)
    return AnomalyScorer(zero_run, method="residual").fit(train, encoder_steps=150)


def auroc(normal_scores, anomaly_scores) -> float:
    return roc_auc_score([0] * len(normal_scores) + [1] * len(anomaly_scores), np.concatenate([normal_scores, anomaly_scores]))


def test_default_is_the_best_measured_method():
    """benchmarks/results/anomaly.json (3 GAN seeds): the default has the best mean over MNIST's mean and the X-rays."""
    from pathlib import Path

    results = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "anomaly.json").read_text())
    rows, seeds = results["rows"], [str(s) for s in results["seeds"]]
    mean = lambda task, m: np.mean([rows[task][s][m] for s in seeds])  # noqa: E731
    measured = {m: (np.mean([mean(f"mnist {d}", m) for d in range(10)]), mean("pneumonia", m)) for m in METHODS}
    assert max(measured, key=lambda m: sum(measured[m])) == DEFAULT_METHOD


@pytest.mark.slow
def test_every_method_ranks_held_out_zeros_below_sevens(fitted, held_out):
    zeros, sevens = held_out
    scores = fitted.scores(torch.cat([zeros, sevens]), METHODS)
    results = {name: auroc(s[: len(zeros)], s[len(zeros) :]) for name, s in scores.items()}
    # the D logit alone is not asserted: on so short a run it separates them less well
    assert all(results[m] > 0.9 for m in ("fused", "features", "mahalanobis", "residual")), results


@pytest.mark.slow
def test_calibration_holds_on_normal_images_fit_never_saw(fitted, held_out):
    """fit calibrates each score on 10 % of the training zeros kept out of its references; on zeros no part of
    fit saw, the z-scores are of the same order, and sevens lie far above them."""
    zeros, sevens = held_out
    normal, odd = (fitted.scores(x, {"fused": METHODS["fused"]})["fused"] for x in (zeros, sevens))
    assert abs(np.median(normal)) < 2.0, np.median(normal)  # a z-score: 0 on the calibration images by construction
    assert np.median(odd) > np.quantile(normal, 0.95), (np.median(odd), np.quantile(normal, 0.95))


@pytest.mark.slow
def test_threshold_calibrated_on_one_set_holds_on_another(fitted, held_out):
    zeros, sevens = held_out
    calibration, check = zeros[::2], zeros[1::2]  # disjoint held-out halves
    fitted.calibrate(calibration, false_positive_rate=0.2)
    rate = fitted.predict(check).mean()
    assert 0 < rate <= 0.45, rate  # near the chosen 0.2 on normals the threshold never saw
    assert fitted.predict(sevens).mean() > 0.8


@pytest.mark.slow
def test_encoder_onnx_matches_torch_and_scores_agree(fitted, held_out, tmp_path):
    import onnxruntime as ort

    zeros, sevens = held_out
    x = torch.cat([zeros[:20], sevens[:20]])
    torch_scores = fitted.score(x)
    torch_z = fitted._encoder(x, torch.zeros(len(x), dtype=torch.long)).detach()
    shutil.copytree(fitted.run_dir, tmp_path / "run")
    fitted.save(tmp_path / "run")  # exports encoder.onnx, then scores through it
    path = tmp_path / "run" / MODEL_FILES["encoder"]
    assert read_metadata(path)["kind"] == "encoder" and read_metadata(path)["pair"] == MODEL_FILES["discriminator"]
    onnx_z = ort.InferenceSession(str(path)).run(None, {"image": x.numpy(), "label": np.zeros(len(x), dtype=np.int64)})[0]
    assert np.abs(onnx_z - torch_z.numpy()).max() < 1e-4
    assert np.allclose(fitted.score(x), torch_scores, rtol=1e-3, atol=1e-4)
    reopened = AnomalyScorer(tmp_path / "run", method="residual")  # from anomaly.npz + encoder.onnx, no fit
    assert reopened.ready and np.allclose(reopened.score(x), torch_scores, rtol=1e-3, atol=1e-4)


def _image_folder(root, held_out):
    for name, images in zip(("0", "7"), held_out):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(data.tanh_to_uint8(images)):
            Image.fromarray(img[0].numpy()).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_score_cli_builds_references_once_then_reuses_them(fresh_run, held_out, tmp_path, capsys):
    folder = _image_folder(tmp_path / "heldout", held_out)
    out = tmp_path / "scores.csv"
    args = ["score", "--model", fresh_run, "--data", folder, "--out", out, "--normal-classes", "0", "--method", "residual"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == sum(len(x) for x in held_out) and set(rows[0]) == {"image", "label", "score"}
    auroc_printed = float(stdout.split("AUROC ")[1].split()[0])
    assert auroc_printed > 0.9, auroc_printed  # held-out zeros vs sevens, without --data of the training set
    assert out.with_suffix(".roc.png").exists()
    per_class = {line.split()[0]: line.split() for line in stdout.splitlines() if line[:1] in "07" and len(line.split()) == 4}
    assert per_class["0"][3] == "(normal)" and per_class["7"][3] == f"{auroc_printed:.4f}"  # one other class: the same AUROC
    built = {name: (fresh_run / name).stat().st_mtime_ns for name in (ANOMALY, MODEL_FILES["encoder"])}
    (fresh_run / "config.json").write_text(
        (fresh_run / "config.json").read_text().replace("sklearn:digits", "/no/such/training/data")
    )  # the training images are gone: the references kept in the run must do
    first = out.read_text()
    code, stdout2, err = run_cli(capsys, *args, "--force")
    assert code == 0, err
    assert {name: (fresh_run / name).stat().st_mtime_ns for name in built} == built  # reused, not rebuilt
    assert out.read_text() == first and stdout2 == stdout
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "exists" in one_line_error(err)


@pytest.mark.slow
def test_an_export_after_scoring_carries_the_references(fresh_run, held_out, tmp_path, capsys):
    """`export --out FOLDER` copies anomaly.npz and encoder.onnx: the folder alone scores as the run did."""
    folder = _image_folder(tmp_path / "heldout", held_out)
    early = tmp_path / "early"  # exported before any score: nothing to carry, and the folder says what to do
    assert run_cli(capsys, "export", fresh_run, "--out", early)[0] == 0
    assert not (early / ANOMALY).exists()
    args = ["--data", folder, "--normal-classes", "0", "--method", "residual"]
    code, _, err = run_cli(capsys, "score", "--model", early, *args, "--out", tmp_path / "e.csv")
    assert code == 2 and "an export made after one such score carries them" in one_line_error(err)
    assert run_cli(capsys, "score", "--model", fresh_run, *args, "--out", tmp_path / "run.csv")[0] == 0
    code, stdout, err = run_cli(capsys, "export", fresh_run, "--out", tmp_path / "deploy")
    assert code == 0 and "anomaly scoring:" in stdout, err
    deployed = tmp_path / "deploy"
    assert sorted(p.name for p in deployed.iterdir()) == sorted([ANOMALY, *MODEL_FILES.values()])
    code, _, err = run_cli(capsys, "score", "--model", deployed, *args, "--out", tmp_path / "deploy.csv")
    assert code == 0, err
    assert (tmp_path / "deploy.csv").read_text() == (tmp_path / "run.csv").read_text()
    assert AnomalyScorer(deployed / MODEL_FILES["discriminator"], method="residual").ready


@pytest.mark.slow
def test_references_of_another_checkpoint_are_not_used(fitted, zero_run, tmp_path):
    shutil.copytree(zero_run, tmp_path / "run")
    fitted.save(tmp_path / "run")
    saved = dict(np.load(tmp_path / "run" / ANOMALY))
    np.savez(tmp_path / "run" / ANOMALY, **{**saved, "step": np.array(saved["step"] - 1)})
    assert not AnomalyScorer(tmp_path / "run", method="residual").ready


@pytest.mark.slow
def test_heatmaps_most_anomalous_first(zero_run, held_out, tmp_path, capsys):
    folder = _image_folder(tmp_path / "heldout", held_out)
    heat = tmp_path / "heat"
    args = ["score", "--model", zero_run, "--data", folder, "--out", tmp_path / "s.csv", "--heatmaps", heat]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    files = sorted(heat.glob("*.png"))
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(files) == len(rows)
    top = max(rows, key=lambda r: float(r["score"]))
    rank = "1".zfill(len(str(len(rows))))
    assert files[0].name == f"{rank}_{top['label']}_{top['image'].rsplit('/', 1)[-1].split('.')[0]}.png"
    picture = Image.open(files[0])
    assert picture.size == (3 * 128, 128) and picture.mode == "RGB"  # image | reconstruction | residual, zoomed to 128 px
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "t.csv")
    assert code == 2 and "not empty" in one_line_error(err)


def test_score_writes_nothing_among_the_runs_images(fresh_run, tmp_path, capsys):
    """A heat map written into the run's training folder would be read as a training image by the next fit."""
    leaves = tmp_path / "leaves"
    write_image(leaves / "healthy" / "a.png")
    config = json.loads((fresh_run / "config.json").read_text())
    config["data"]["source"] = str(leaves)  # as if the run had learnt from this folder
    (fresh_run / "config.json").write_text(json.dumps(config))
    for flag, path in (("--heatmaps", leaves / "maps"), ("--out", leaves / "healthy" / "s.csv")):
        args = ["--out", tmp_path / "s.csv", flag, path] if flag == "--heatmaps" else ["--out", path]
        code, _, err = run_cli(capsys, "score", "--model", fresh_run, "--data", "sklearn:digits", *args)
        assert code == 2 and f"inside the training images {leaves}" in one_line_error(err), err
    assert sorted(p.name for p in leaves.rglob("*")) == ["a.png", "healthy"]


@pytest.mark.slow
def test_conditional_run_scores_its_normal_classes(tmp_path):
    """Normal = two classes: the encoder learns with their labels, scores use the class D finds most real."""
    from augmentor import run
    from augmentor.config import DataConfig, TrainConfig

    out = tmp_path / "run"
    cfg = DataConfig(source="sklearn:digits", classes="0,1", holdout=0.3, seed=0)
    run.fit(out, cfg, TrainConfig.short_run(120, batch_size=32), {"width": 16, "nz": 32}, progress=False)
    train = training_images(out)
    scorer = AnomalyScorer(out, method="residual").fit(data.uint8_to_tanh(train.images), train.labels)
    ds = data.load(None)
    held = json.loads((out / "holdout.json").read_text())["holdout_index"]
    normal = data.select_classes(ds, "0,1").images[held]
    scores = scorer.scores(torch.cat([normal, ds.images[ds.labels == 7][:60]]), METHODS)
    for name in ("fused", "residual"):
        assert auroc(scores[name][: len(held)], scores[name][len(held) :]) > 0.9, name


def test_score_bad_input(zero_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(zero_run / "discriminator.onnx", lone / "d.onnx")
    cases = [
        (["--model", tmp_path / "empty", "--data", "sklearn:digits"], "no discriminator here"),
        (["--model", zero_run, "--data", tmp_path / "empty"], "no images found"),
        (["--model", tmp_path / "nowhere", "--data", "sklearn:digits"], "no discriminator here"),
        (["--model", lone / "d.onnx", "--data", "sklearn:digits"], "needs the run directory"),
        (["--model", zero_run, "--data", "sklearn:digits", "--normal-classes", "cat"], "unknown class 'cat'"),
        (["--model", zero_run, "--data", "sklearn:digits", "--split", "train"], "sklearn:digits has no splits"),
    ]
    for i in range(3):
        write_image(tmp_path / "rgb" / f"{i}.png", seed=i)
    cases.append((["--model", zero_run, "--data", tmp_path / "rgb"], "color images"))
    (tmp_path / "a-file").write_text("mine")  # not a folder: neither the CSV nor heatmaps can go under it
    cases.append(
        (["--model", zero_run, "--data", "sklearn:digits", "--heatmaps", tmp_path / "a-file" / "maps"], "cannot write here")
    )
    for args, expected in cases:
        code, _, err = run_cli(capsys, "score", *args, "--out", tmp_path / "s.csv", "--force")
        assert code == 2 and expected in one_line_error(err), err
    assert run_cli(capsys, "score", "--model", lone / "d.onnx", "--data", "sklearn:digits", "--method", "discriminator",
                   "--out", tmp_path / "s.csv", "--force")[0] == 0  # fmt: skip
    with pytest.raises(ConfigError, match=r"shape \(N, 1, 32, 32\)"):
        AnomalyScorer(zero_run).score(torch.zeros(2, 3, 32, 32))  # wrong channels
    with pytest.raises(ConfigError, match=r"shape \(N, 1, 32, 32\)"):
        AnomalyScorer(zero_run).score(torch.zeros(2, 1, 64, 64))  # a model of another size
    with pytest.raises(ConfigError, match="scorer.fit"):
        AnomalyScorer(lone / "d.onnx").score(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="at least 20"):
        AnomalyScorer(zero_run).fit(torch.zeros(5, 1, 32, 32))
    assert AnomalyScorer(zero_run / "generator.onnx").source.name == "discriminator.onnx"  # a generator finds its D (metadata)
