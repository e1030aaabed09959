import json

from clihelp import one_line_error, run_cli


def test_bench_smoke_preset_writes_report_json_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    code, stdout, err = run_cli(capsys, "bench", "--preset", "smoke", "--out", out)
    assert code == 0, err
    assert "recommended ratio" in stdout
    res = json.loads((out / "results.json").read_text())
    arms = res["summary"]["6"]
    assert {
        "A real",
        "B real+aug",
        "D real+syn 0.25",
        "D real+syn 0.5",
        "E real+aug+syn (chosen)",
        "F synthetic only (CAS)",
    } <= set(arms)
    assert len(arms["A real"]["accuracy"]["values"]) == 2  # one per seed
    assert {"R plain GAN: real+aug+syn 0.5", "R plain GAN: synthetic only (CAS)"} <= set(arms)  # the reference recipe
    plain = json.loads((out / "runs" / "plain-shot6-seed0" / "config.json").read_text())
    assert plain["model"]["mode"] == "per-class" and not plain["model"]["spectral_norm"]
    assert plain["train"]["diffaug"] == "" and plain["train"]["ema_decay"] == 0.0 and plain["train"]["coverage"] == 0.0
    assert res["recommended_ratio"] in (0.0, 0.25, 0.5) and res["primary_metric"] == "accuracy"
    assert {"fid", "kid", "precision", "recall", "memorization"} <= set(res["quality"]["6"])
    for name in ("report.md", "gain.png", "nearest_neighbours.png", "samples_6.png"):
        assert (out / name).exists()
    report = (out / "report.md").read_text()
    assert "## Verdict" in report and ("did not help" in report or "helped" in report)
    # each setting trained its own GAN on its own training images
    assert all((out / "runs" / f"shot6-seed{s}" / "generator.onnx").exists() for s in (0, 1))
    code, _, err = run_cli(capsys, "bench", "--preset", "smoke", "--out", out)  # never overwrite a bench
    assert code == 2 and "holds a bench" in one_line_error(err)


def test_bench_on_imbalanced_npz_adds_balanced_arms_and_auroc(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (80, 28, 28), dtype=np.uint8)
    labels = np.array([[0]] * 20 + [[1]] * 60, np.uint8)
    np.savez(tmp_path / "x.npz", train_images=imgs, train_labels=labels, test_images=imgs[:40], test_labels=labels[:40])
    code, _, err = run_cli(
        capsys, "bench", "--data", tmp_path / "x.npz", "--preset", "smoke", "--out", tmp_path / "b", "--coverage", 2
    )
    assert code == 0, err
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["primary_metric"] == "balanced_accuracy"
    arms = res["summary"]["all"]  # imbalanced: all images as given, not an n-shot subset
    assert "C real+balanced" in arms and "C' real+aug+balanced" in arms
    assert "auroc" in arms["A real"] and res["test_images"] == 40
    gan = json.loads((tmp_path / "b" / "runs" / "shotall-seed0" / "config.json").read_text())
    assert gan["train"]["coverage"] == 2.0  # --coverage reaches every GAN of the bench

    code, _, err = run_cli(
        capsys,
        "bench",
        "--data",
        tmp_path / "x.npz",
        "--preset",
        "smoke",
        "--out",
        tmp_path / "c",
        "--shots",
        "50%",
        "--seeds",
        "0",
    )
    assert code == 0, err
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    (setting,) = res["settings"]
    assert setting["shot"] == "50%" and setting["train_images"] + setting["val_images"] == 40  # half of each class
    assert setting["imbalanced"] and "50% of the training images" in (tmp_path / "c" / "report.md").read_text()


def test_shots_parse_counts_shares_and_all():
    import pytest

    from augmentor.bench import parse_shots
    from augmentor.errors import ConfigError

    assert parse_shots("10, 50") == (10, 50) and parse_shots("10%,all") == ("10%", "all")
    for bad in ("0", "ten", "150%", "0%"):
        with pytest.raises(ConfigError, match="--shots"):
            parse_shots(bad)


def test_classical_augmentation_is_seeded():
    import torch

    from augmentor.bench import augment_batch, classical_augmentation

    x = torch.rand(8, 3, 32, 32) * 2 - 1
    same = [augment_batch(classical_augmentation(3, seed=3), x) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    assert not torch.equal(same[0], augment_batch(classical_augmentation(3, seed=4), x))
