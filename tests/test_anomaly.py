import csv

import numpy as np
import pytest
import torch
from clihelp import one_line_error, run_cli
from conftest import write_image

from augmentor import data
from augmentor.anomaly import AnomalyScorer
from augmentor.errors import ConfigError


@pytest.fixture(scope="module")
def zero_run(tmp_path_factory):
    """An unconditional GAN on the digit 0 only (80 % of them; the rest held out)."""
    from augmentor import run
    from augmentor.config import DataConfig, TrainConfig

    out = tmp_path_factory.mktemp("anom") / "zeros"
    cfg = DataConfig(source="sklearn:digits", classes="0", holdout=0.2, seed=0)
    run.fit(out, cfg, TrainConfig(steps=150, batch_size=32, lr=5e-4), {"width": 16, "nz": 32}, progress=False)
    return out


def test_score_cli_writes_csv_and_auroc(zero_run, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code, stdout, err = run_cli(
        capsys,
        "score",
        "--model",
        zero_run,
        "--data",
        "sklearn:digits",
        "--out",
        out,
        "--method",
        "features",
        "--normal-classes",
        "0",
    )
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1797 and set(rows[0]) == {"image", "label", "score"}
    auroc = float(stdout.split("AUROC ")[1].split()[0])
    print("features AUROC", auroc)
    assert auroc > 0.8  # zeros vs other digits (zeros seen in training are included; see the benchmark for held-out)
    assert out.with_suffix(".roc.png").exists()
    code, _, err = run_cli(capsys, "score", "--model", zero_run, "--data", "sklearn:digits", "--out", out)
    assert code == 2 and "exists" in one_line_error(err)


def test_discriminator_scores_through_onnx_and_torch_agree(zero_run):
    x = data.to_unit_range(data.load(None).images[:40])
    onnx_scores = AnomalyScorer(zero_run / "discriminator.onnx").score(x)
    (zero_run / "discriminator.onnx").rename(zero_run / "d.bak")
    try:
        torch_scores = AnomalyScorer(zero_run).score(x)  # no ONNX: falls back to the checkpoint
    finally:
        (zero_run / "d.bak").rename(zero_run / "discriminator.onnx")
    assert np.allclose(onnx_scores, torch_scores, atol=1e-4)


def test_calibrated_threshold_flags_about_the_chosen_rate_of_normals(zero_run):
    ds = data.load(None)
    zeros = data.to_unit_range(ds.images[ds.labels == 0])
    scorer = AnomalyScorer(zero_run, method="features").fit(zeros[:100])
    scorer.calibrate(zeros[100:140], false_positive_rate=0.1)
    assert scorer.predict(zeros[100:140]).mean() <= 0.15
    others = data.to_unit_range(ds.images[ds.labels == 7][:40])
    assert scorer.predict(others).mean() > scorer.predict(zeros[140:]).mean()


def test_score_bad_input(zero_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--model", tmp_path / "empty", "--data", "sklearn:digits"], "no discriminator here"),
        (["--model", zero_run, "--data", tmp_path / "empty"], "no images found"),
        (
            ["--model", zero_run / "discriminator.onnx", "--data", "sklearn:digits", "--method", "features"],
            "needs the run directory",
        ),
        (["--model", zero_run, "--data", "sklearn:digits", "--normal-classes", "cat"], "unknown class 'cat'"),
    ]
    for i in range(3):
        write_image(tmp_path / "rgb" / f"{i}.png", seed=i)
    cases.append((["--model", zero_run, "--data", tmp_path / "rgb"], "color images"))
    for args, expected in cases:
        code, _, err = run_cli(capsys, "score", *args, "--out", tmp_path / "s.csv", "--force")
        assert code == 2 and expected in one_line_error(err), err
    with pytest.raises(ConfigError, match=r"shape \(N, 1, 32, 32\)"):
        AnomalyScorer(zero_run).score(torch.zeros(2, 3, 32, 32))
    assert AnomalyScorer(zero_run / "generator.onnx").source.name == "discriminator.onnx"  # a generator path finds its D
