import json

import pytest
import torch
from clihelp import one_line_error, run_cli

from augmentor.gain.arms import ARM_BY_ID, ARM_BY_NAME, ARMS, CHOSEN, Arm
from augmentor.gan.callbacks import logged_seconds


@pytest.mark.slow
def test_bench_smoke_preset_writes_report_json_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    code, stdout, err = run_cli(capsys, "bench", "--preset", "smoke", "--out", out)
    assert code == 0, err
    assert "recommended ratio" in stdout
    res = json.loads((out / "results.json").read_text())
    arms = res["summary"]["6"]
    ids = {ARM_BY_NAME[a].id for a in arms}
    assert {"A", "B", "D-0.25", "D-0.5", "E-chosen", "F", "DUP-0.25", "DUP-0.5"} <= ids
    assert set(res["augmentation_per_seed"]) <= {"preset", "none"}
    assert len(arms[ARM_BY_ID["A"].name]["accuracy"]["values"]) == 2  # one per seed
    assert {a for a in arms if ARM_BY_NAME[a].role == "reference"} == {ARM_BY_ID["R"].name, ARM_BY_ID["R-CAS"].name}
    plain = json.loads((out / "runs" / "plain-shot6-seed0" / "config.json").read_text())
    assert plain["model"]["mode"] == "per-class" and not plain["model"]["spectral_norm"]
    assert plain["train"]["diffaug"] == "" and plain["train"]["ema_decay"] == 0.0 and plain["train"]["coverage"] == 0.0
    assert res["recommended_ratio"] in (0.0, 0.25, 0.5) and res["primary_metric"] == "accuracy"
    assert {"fid", "kid", "precision", "recall", "memorization"} <= set(res["quality"]["6"])
    for name in ("report.md", "gain.png", "nearest_neighbours.png", "samples_6.png"):
        assert (out / name).exists()
    report = (out / "report.md").read_text()
    assert "## Verdict" in report and ("did not help" in report or "helped" in report)
    assert "the GANs train 3 steps, fewer than fit's 3000" in report  # the smoke preset's: said beside the figures
    copies = res["quality"]["6"]["memorization"]  # with the held-out real images' share beside it, as the yardstick
    assert f"{100 * copies['near_copy_fraction']:.1f} % ({100 * copies['test_near_copy_fraction']:.1f} %)" in report
    assert res["env"]["cpu_precision"] in ("bf16", "fp32") and f"CPU {res['env']['cpu']} (" in report  # what timed it
    # each setting trained its own GAN on its own training images
    assert all((out / "runs" / f"shot6-seed{s}" / "generator.onnx").exists() for s in (0, 1))
    code, _, err = run_cli(capsys, "bench", "--preset", "smoke", "--out", out)  # never overwrite a bench
    assert code == 2 and "holds a bench" in one_line_error(err)


def test_bench_refuses_what_would_measure_nothing_before_writing_anything(tmp_path, capsys):
    from conftest import write_image

    for i in range(6):
        write_image(tmp_path / "leaves" / f"{i}.png", seed=i)  # a flat folder: one class
    for args, expected in [
        (["--data", tmp_path / "leaves"], "one class only"),
        (["--shots", 500], "--shots 500: class '8' has 122 images"),  # digits: 122-128 a class outside the test set
        (["--seeds", "0,0"], "a seed given twice"),
        (["--unlabeled-shares", "0=1"], "give --unlabeled SOURCE or --unlabeled-rest too"),
        (["--unlabeled-rest", "--unlabeled-shares", "a=1"], "unknown class a"),
    ]:
        code, _, err = run_cli(capsys, "bench", *args, "--preset", "smoke", "--out", tmp_path / "b")
        assert code == 2 and expected in one_line_error(err), err
        assert not (tmp_path / "b").exists()
    # the library call checks its options as the command does
    from augmentor import ConfigError, bench

    for fields, expected in [({"seeds": (1, 1)}, "a seed given twice"), ({"shots": (10, 0)}, "--shots: '0'")]:
        with pytest.raises(ConfigError, match=expected):
            bench(tmp_path / "b", preset="smoke", **fields)
        assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_bench_on_imbalanced_npz_adds_balanced_arms_and_auroc(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (80, 28, 28), dtype=np.uint8)
    labels = np.array([[0]] * 20 + [[1]] * 60, np.uint8)
    np.savez(tmp_path / "x.npz", train_images=imgs, train_labels=labels, test_images=imgs[:40], test_labels=labels[:40])
    code, _, err = run_cli(
        capsys, "bench", "--data", tmp_path / "x.npz", "--preset", "smoke", "--seeds", 0, "--out", tmp_path / "b", "--coverage", 2
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

    from augmentor.errors import ConfigError
    from augmentor.gain.options import parse_shots

    assert parse_shots("10, 50") == (10, 50) and parse_shots("10%,all") == ("10%", "all")
    for bad in ("0", "ten", "150%", "0%"):
        with pytest.raises(ConfigError, match="--shots"):
            parse_shots(bad)


def test_no_augmentation_is_chosen_only_when_it_wins_beyond_the_validation_noise():
    import numpy as np

    from augmentor.gain.protocol import clearly_better

    def probs(pred, k=2):
        return np.eye(k)[pred]

    # 4 validation images: all right against 3 of 4 is one image, within the noise of so few
    y = np.array([0, 0, 1, 1])
    assert not clearly_better(probs([0, 0, 1, 1]), probs([0, 1, 1, 1]), y)
    # 777 images, 78 of the rare class (as on the X-ray seed that chose none): 96.6 against 96.3 balanced accuracy
    y = np.repeat([0, 1], [78, 699])
    a, b = y.copy(), y.copy()
    a[:4], a[78:90] = 1, 0  # 74/78 and 687/699 right
    b[:5], b[78:85] = 1, 0  # 73/78 and 692/699 right
    assert abs((74 / 78 + 687 / 699) / 2 - 0.9658) < 1e-3 and not clearly_better(probs(a), probs(b), y)
    # a wide win on the same images is not noise, and the rule is not symmetric
    c = y.copy()
    c[:20] = 1  # 58/78 of the rare class
    assert clearly_better(probs(a), probs(c), y) and not clearly_better(probs(c), probs(a), y)


def test_the_mix_ratio_is_chosen_only_where_synthetic_images_win_beyond_the_validation_noise():
    import numpy as np

    from augmentor.gain.protocol import chosen_on_validation

    def probs(pred, k=2):
        return np.eye(k)[pred]

    y = np.repeat([0, 1], [20, 20])

    def wrong(n):  # predictions with n of class 0's 20 validation images wrong, class 1's all right
        return np.concatenate([np.ones(n, dtype=int), np.zeros(20 - n, dtype=int), np.ones(20, dtype=int)])

    # one image better at 0.25 and two at 0.5: noise on 40 images, so no synthetic images
    assert chosen_on_validation({0.0: probs(wrong(6)), 0.25: probs(wrong(5)), 0.5: probs(wrong(4))}, y, default=0.0) == 0.0
    # both win widely: the better one; tied: the smaller share
    assert chosen_on_validation({0.0: probs(wrong(14)), 0.25: probs(wrong(2)), 0.5: probs(wrong(0))}, y, default=0.0) == 0.5
    assert chosen_on_validation({0.0: probs(wrong(14)), 0.25: probs(wrong(1)), 0.5: probs(wrong(1))}, y, default=0.0) == 0.25
    # a wide win at 0.5 with 0.25 within the noise: 0.5 even though 0.25 scores higher than 0
    assert chosen_on_validation({0.0: probs(wrong(10)), 0.25: probs(wrong(8)), 0.5: probs(wrong(0))}, y, default=0.0) == 0.5


def test_report_says_which_classical_augmentation_the_arms_used_and_why(tmp_path):
    from pathlib import Path

    from augmentor.gain.report import rerender

    bench = json.loads(
        (Path(__file__).parents[1] / "benchmarks" / "results" / "bench-mnist-unlabeled-10" / "results.json").read_text()
    )

    def said(per_seed):
        (tmp_path / "results.json").write_text(json.dumps({**bench, "augmentation_per_seed": per_seed}))
        (line,) = [x for x in rerender(tmp_path).splitlines() if x.startswith("Classical augmentation in the arms:")]
        return line.removeprefix("Classical augmentation in the arms: ")

    assert said(["preset", "preset"]) == "`preset` (the default: none did not beat it beyond the validation images' noise)."
    assert said(["none"]).startswith("none (the built-in preset scored lower")
    assert said(["preset", "none"]) == "`preset` in 1 of 2 settings, `none` in 1 of 2 settings (chosen on validation)."
    assert said(["mine.json"] * 3) == "`mine.json`."  # the user's file, named as given


def test_classical_augmentation_is_seeded():
    import torch

    from augmentor.data.augmentation import augment_batch
    from augmentor.data.augmentation import preset as classical_augmentation

    x = torch.rand(8, 3, 32, 32) * 2 - 1
    same = [augment_batch(classical_augmentation(3, seed=3), x) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    assert not torch.equal(same[0], augment_batch(classical_augmentation(3, seed=4), x))


def test_verdict_reads_the_arm_records_not_their_names():
    from augmentor.gain.report import verdict

    def cell(*values):
        import statistics

        return {"accuracy": {"mean": statistics.mean(values), "std": statistics.stdev(values), "values": list(values)}}

    arms = {**ARM_BY_NAME, "X syn-named control": Arm("X", "control", "X syn-named control", uses_gan=False)}
    b = ARM_BY_ID["B"].name
    summary = {"10": {b: cell(0.90, 0.91), CHOSEN.name: cell(0.95, 0.95), "X syn-named control": cell(0.96, 0.96)}}
    helped, lines = verdict(summary, "accuracy", arms, CHOSEN.name)
    assert not helped and "X syn-named control" in lines[0]  # a real-data arm is a real-data arm, whatever its name
    del summary["10"]["X syn-named control"]
    helped, lines = verdict(summary, "accuracy", arms, CHOSEN.name)
    assert helped and b in lines[0]


def test_recommended_ratio_is_one_that_was_trained():
    from types import SimpleNamespace

    from augmentor.gain.runner import recommend_ratio

    seeds = [
        SimpleNamespace(val_balanced_accuracy={"0.0": 0.80, "0.25": 0.90, "0.5": 0.85}),  # chose 0.25
        SimpleNamespace(val_balanced_accuracy={"0.0": 0.80, "0.25": 0.84, "0.5": 0.86}),  # chose 0.5
    ]
    assert recommend_ratio(seeds) == 0.25  # best mean (0.87 vs 0.855), never the median 0.375


def test_duplicate_real_control_fills_the_same_slots_with_training_images():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from augmentor import data
    from augmentor.data.augmentation import RealResampler
    from augmentor.mix.loader import SyntheticMix

    train = data.select_classes(data.load(None, size=32), "0,1")
    x = data.uint8_to_tanh(train.images)
    loader = DataLoader(TensorDataset(torch.zeros(32, 1, 32, 32), torch.arange(32) % 2), batch_size=8)
    mixed = SyntheticMix(loader, RealResampler(train), ratio=0.5, transform=data.unit_to_tanh, return_mask=True)
    for xb, yb, mask in mixed:
        assert mask.sum() == 4 and torch.equal(yb, torch.arange(8) % 2)  # count- and label-matched
        for img, label in zip(xb[mask], yb[mask]):
            d = (x[train.labels == label] - img).abs().flatten(1).max(1).values
            assert d.min() < 1e-2  # a real training image of that class (no augmentation given)


def test_protocol_batches_balance_the_classes_and_replace_the_share_asked_for():
    import dataclasses

    from augmentor import data
    from augmentor.data.augmentation import RealResampler
    from augmentor.gain.options import PRESETS
    from augmentor.gain.protocol import classifier_batches

    preset = dataclasses.replace(PRESETS["smoke"], clf_steps=40, batch_size=16)
    y = torch.tensor([0] * 30 + [1] * 5 + [2] * 5)  # imbalanced 6 : 1 : 1
    x = -torch.ones(len(y), 1, 32, 32)  # every real image black (uint8 0 in tanh range)
    drawn = lambda **kw: list(classifier_batches(x, y, 3, preset, seed=0, **kw))  # noqa: E731
    as_drawn = torch.cat([yb for _, yb in drawn()])
    assert len(drawn()) == 40 and len(as_drawn) == 40 * 16
    assert 0.65 < (as_drawn == 0).float().mean() < 0.85  # as the data are: 75 % class 0
    balanced = torch.bincount(torch.cat([yb for _, yb in drawn(balanced=True)]), minlength=3) / (40 * 16)
    assert balanced.min() > 0.27 and balanced.max() < 0.40  # each class about a third
    white = data.ImageSet(
        torch.full((6, 1, 32, 32), 255, dtype=torch.uint8), torch.tensor([0, 1, 2] * 2), ["a", "b", "c"], "white"
    )
    for ratio in (0.25, 0.5):
        for xb, _ in drawn(extra=RealResampler(white), ratio=ratio):
            assert (xb.flatten(1).mean(1) > 0.99).sum() == int(ratio * 16)  # the extra share, exactly
            assert (xb.flatten(1).mean(1) < -0.99).sum() == 16 - int(ratio * 16)


@pytest.mark.slow
def test_bench_uses_the_users_albumentations_file(tmp_path, capsys):
    import albumentations as A

    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(tmp_path / "mine.json"))
    out = tmp_path / "b"
    code, _, err = run_cli(
        capsys, "bench", "--preset", "smoke", "--seeds", "0", "--out", out, "--augment", tmp_path / "mine.json"
    )
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["augmentation_per_seed"] == [str(tmp_path / "mine.json")]
    assert "mine.json" in (out / "report.md").read_text()
    (tmp_path / "junk.json").write_text("{}")
    for bad, expected in [(tmp_path / "junk.json", "not an albumentations pipeline"), (tmp_path / "none.json", "no such file")]:
        code, _, err = run_cli(capsys, "bench", "--preset", "smoke", "--out", tmp_path / "c", "--augment", bad)
        assert code == 2 and expected in one_line_error(err)
        assert not (tmp_path / "c").exists()  # refused before anything was written


@pytest.mark.slow
def test_bench_with_unlabeled_rest_adds_self_training_and_the_unlabeled_gan(tmp_path, capsys):
    import albumentations as A

    A.save(A.Compose([A.Affine(translate_percent=0.05, p=1.0)]), str(tmp_path / "mine.json"))
    out = tmp_path / "b"
    shares = "0=3," + ",".join(f"{k}=1" for k in range(1, 10))  # the labellers expect 1 in 4 unlabelled digits a 0
    args = ["--seeds", "0", "--out", out, "--unlabeled-rest", "--augment", tmp_path / "mine.json", "--unlabeled-shares", shares]
    code, stdout, err = run_cli(capsys, "bench", "--preset", "smoke", *args)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    arms = res["summary"]["6"]
    self_arm, by_gan, both, both_aug, u, u_aug = (
        ARM_BY_ID[i].name for i in ("SELF", "SELF-G", "SELF+U", "SELF+U-aug", "U", "U-aug")
    )
    assert {self_arm, by_gan, both, both_aug, u, u_aug, ARM_BY_ID["U-CAS"].name} <= set(arms)
    assert ARM_BY_NAME[u_aug].synthetic_augmented and not ARM_BY_NAME[u].synthetic_augmented
    # SELF (the classifier's labels) is the baseline; the semi-supervised GAN's labels are on the GAN side
    assert not res["arms"][self_arm]["uses_gan"] and res["arms"][by_gan]["uses_gan"] and res["arms"][both]["uses_gan"]
    setting = res["settings"][0]
    # the unlabelled images are the pool outside this setting's draw (train + validation = 60 of 1,258)
    labels = setting["pseudo_labels"]
    for pseudo in (labels["classifier"], labels["gan"]):
        assert pseudo["considered"] == 1258 - 60 and 0 < pseudo["kept"] <= pseudo["considered"] and 0 <= pseudo["right"] <= 1
        caps = {name: round(share / 12 * pseudo["considered"]) for name, share in zip("0123456789", [3] + [1] * 9)}
        assert all(kept <= caps[name] for name, kept in pseudo["kept_per_class"].items()), pseudo  # at most its share
    # every labeller, FIX's classifier too, is checked on the setting's validation images (the labellers learnt
    # from the other 50)
    assert set(labels) == {"classifier", "gan", "fixmatch"} and labels["fixmatch"]["considered"] == 1258 - 60
    assert all(p["check"]["validation_images"] == setting["val_images"] == 10 for p in labels.values())
    report_md = (out / "report.md").read_text()
    assert "## Pseudo-labels: how many are right" in report_md and "only 10 labelled validation images, too few" in report_md
    assert "## The recipe that won on your data" in report_md and "with unlabelled images, 6 images per class:" in stdout
    pool = ARM_BY_ID["POOL"].name  # the ceiling: the unlabelled images with their true labels
    assert pool in arms and res["arms"][pool]["role"] == "ceiling" and "The ceiling, the unlabelled images" in report_md
    gan = json.loads((out / "runs" / "unlabeled-shot6-seed0" / "config.json").read_text())
    assert gan["pseudo_labels"]["labeller"] == "gan" and gan["pseudo_labels"]["kept"] == setting["pseudo_labels"]["gan"]["kept"]
    assert gan["num_images"] == setting["train_images"]
    assert gan["unlabeled"]["pseudo_augment"] == str(tmp_path / "mine.json")  # the labellers augment as the arms do
    assert (
        gan["unlabeled"]["unlabeled_shares"] == shares and "class shares among the unlabelled" in (out / "report.md").read_text()
    )
    assert "unlabelled images: the GAN that learnt from them" in (out / "report.md").read_text()
    assert "near_copy_fraction" in res["quality"]["6"]["unlabeled_gan"]["memorization"]  # near-copies of U's samples
    # FixMatch, and FixMatch seeded with the GAN's labels: μ chosen on validation, every arm's wall time recorded
    fix, fix_g = ARM_BY_ID["FIX"].name, ARM_BY_ID["FIX+G"].name
    assert {fix, fix_g} <= set(arms) and not res["arms"][fix]["uses_gan"] and res["arms"][fix_g]["uses_gan"]
    assert setting["fixmatch"]["mu"] in (1, 3) and set(setting["fixmatch"]["val_balanced_accuracy"]) == {"1", "3"}
    assert set(setting["arm_seconds"]) == set(arms) - {CHOSEN.name} and all(t >= 0 for t in setting["arm_seconds"].values())
    # and what the arms wait for: the GANs' training time as their logs record it, the labellers' own
    logged = {name: round(logged_seconds(out / "runs" / f"{name}shot6-seed0" / "log.jsonl"), 1) for name in ("", "unlabeled-")}
    assert setting["gan_seconds"] == logged[""] > 0 and setting["unlabeled_gan_seconds"] == logged["unlabeled-"] > 0
    assert labels["classifier"]["seconds"] > 0 and labels["gan"]["seconds"] > 0 and gan["pseudo_labels"]["seconds"] > 0
    wall_times = next(line for line in report_md.splitlines() if line.startswith("Wall time per arm"))
    assert "the classifier and the semi-supervised GAN (SELF-G, FIX+G, U)" in wall_times
    code, _, err = run_cli(capsys, "bench", "--preset", "smoke", "--out", tmp_path / "c", "--unlabeled-rest", "--unlabeled", "x")
    assert code == 2 and "not both" in one_line_error(err)


def test_shared_source_gives_equal_shares_of_the_requested_labels():
    import torch

    from augmentor import data
    from augmentor.data.augmentation import RealResampler, SharedSource

    digits = data.select_classes(data.load(None, size=32), "0,1")
    zeros, ones = (
        digits.subset(torch.nonzero(digits.labels == 0).flatten()),
        digits.subset(torch.nonzero(digits.labels == 1).flatten()),
    )
    ones.labels[:] = 0  # a second source whose class-0 images are all ones: tells the shares apart
    shared = SharedSource([RealResampler(zeros), RealResampler(ones)])
    x = shared.sample(40, torch.zeros(40, dtype=torch.long), seed=3)
    x_zeros = data.uint8_to_tanh(zeros.images)
    from_first = [bool(((x_zeros - img).abs().flatten(1).max(1).values < 1e-4).any()) for img in x]
    assert sum(from_first) == 20  # half from each source


def test_augmented_samples_put_a_sources_images_through_the_pipeline():
    import albumentations as A
    import torch

    from augmentor import data
    from augmentor.data.augmentation import AugmentedSamples, RealResampler

    digits = data.select_classes(data.load(None, size=32), "0,1")
    plain = RealResampler(digits)
    flipped = AugmentedSamples(plain, A.Compose([A.HorizontalFlip(p=1.0)]))
    labels = torch.arange(6) % 2
    x, x_flipped = plain.sample(6, labels, seed=1), flipped.sample(6, labels, seed=1)
    assert not torch.equal(x, x_flipped)
    assert torch.allclose(x_flipped, x.flip(-1), atol=1e-2)  # the same draws, each mirrored by the pipeline
    as_bytes = flipped.sample(6, labels, seed=1, value_range="uint8")
    assert as_bytes.dtype == torch.uint8 and torch.equal(as_bytes, data.tanh_to_uint8(x_flipped))
    assert (flipped.image_shape, flipped.class_names) == (plain.image_shape, plain.class_names)


def test_the_verdict_names_the_recipe_that_won():
    import statistics

    from augmentor.gain.report import verdict

    def cell(*values):
        return {"accuracy": {"mean": statistics.mean(values), "std": statistics.stdev(values), "values": list(values)}}

    def recipe(arms):  # the verdict's lines on the unlabelled images; E chosen = B (ratio 0), last as in a bench
        _, lines = verdict({"10": {**arms, CHOSEN.name: arms[b]}}, "accuracy", ARM_BY_NAME, CHOSEN.name)
        start = next(i for i, x in enumerate(lines) if "unlabelled images" in x)
        return "\n".join(lines[start:])

    self_arm, both, b = (ARM_BY_ID[i].name for i in ("SELF", "SELF+U", "B"))
    arms = {b: cell(0.90, 0.91), self_arm: cell(0.96, 0.96), both: cell(0.95, 0.955)}
    lines = recipe(arms)
    assert "against self-training, costs accuracy: " in lines and "**self-training alone" in lines
    assert f"({self_arm}, 96.0)" in lines
    arms[b] = cell(0.97, 0.97)
    assert "**neither: the labelled images alone" in recipe(arms)
    arms[both] = cell(0.99, 0.99)
    lines = recipe(arms)
    assert f"against self-training, adds to it: {both} vs {self_arm}" in lines and f"({both}, 99.0)" in lines
    by_gan = ARM_BY_ID["SELF-G"].name  # the GAN's labels without its images
    arms[by_gan] = cell(0.995, 0.995)
    assert f"({by_gan}, 99.5)" in recipe(arms)
    # two SELF+U variants (synthetic images raw or augmented): the better one is weighed against SELF
    augmented = ARM_BY_ID["SELF+U-aug"].name
    arms[both], arms[augmented] = cell(0.955, 0.96), cell(0.975, 0.985)
    assert f"adds to it: {augmented} vs {self_arm} +2.0 points" in recipe(arms)
    # FixMatch: the best recipe with the GAN is weighed against it, and may lose
    fix = ARM_BY_ID["FIX"].name
    arms[fix] = cell(0.999, 0.999)
    lines = recipe(arms)
    assert (
        f"The best recipe with the GAN, against FixMatch, loses to it: {by_gan} vs {fix} -0.4 points" in lines
        and "**FixMatch (consistency training" in lines
    )
    arms[fix] = cell(0.994, 0.996)
    assert f"against FixMatch, does not beat it measurably: {by_gan} vs {fix} +0.0 points" in recipe(arms)
    arms[fix] = cell(0.97, 0.971)
    assert f"against FixMatch, beats it: {by_gan} vs {fix} +2.5 points" in recipe(arms)
    one = {a: {"accuracy": {**v["accuracy"], "std": 0.0, "values": v["accuracy"]["values"][:1]}} for a, v in arms.items()}
    lines = recipe(one)  # one seed: figures, no judgement
    assert "beats it" not in lines and "one seed, no spread to judge by" in lines and "Best recipe here (one seed" in lines


def test_the_winning_recipes_code_names_the_calls_that_follow_it():
    """What report.md shows for each winning recipe (tests/test_unlabeled.py runs the pseudo-label one)."""
    from augmentor.gain.recipes import recipe_code

    assert "semilearn" in " ".join(recipe_code("FIX", mu=1)) and "μ = 1" in " ".join(recipe_code("FIX", mu=1))
    assert "augmentor pseudo-labels run" in "\n".join(recipe_code("FIX+G"))
    assert "--pseudo-labeller classifier" in "\n".join(recipe_code("SELF"))
    assert "nothing from augmentor helped" in recipe_code("B")[0]
    for arm in ARMS:  # any arm the verdict can name as the winner has lines to show
        if arm.cas is None and arm.role != "ceiling":
            assert recipe_code(arm.id), arm.id
    assert 'SyntheticMix(loader, "run", ratio=0.25)' in "\n".join(recipe_code("E-0.25"))
    for arm_id, expected in (
        ("SELF-G", ["PseudoLabelMix"]),
        ("SELF+U", ["PseudoLabelMix", "SyntheticMix"]),
        ("U", ["SyntheticMix"]),
    ):
        lines = recipe_code(arm_id)
        python = lines[lines.index("```python") + 1 : -1]
        assert all(any(name in line for line in python) for name in expected), (arm_id, python)
        assert any(line.startswith("augmentor fit --data LABELLED/ --unlabeled UNLABELLED/ --out run") for line in lines)
    for arm in ARMS:  # as a formatter leaves it (users copy it; ruff checks the reports kept in benchmarks/results)
        lines = recipe_code(arm.id) if arm.cas is None and arm.role != "ceiling" else []
        if "```python" in lines:
            python = lines[lines.index("```python") + 1 : -1]
            assert python[0].startswith("from augmentor import") and python[1] == "" and python[2], (arm.id, python)


def test_the_classifier_leaves_the_users_global_random_state_alone():
    from augmentor.semi.classifier import train_classifier

    images = torch.rand(8, 1, 32, 32) * 2 - 1
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    train_classifier(images, torch.tensor([0, 1] * 4), 2, steps=2, batch_size=4, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_an_old_results_json_renders_its_verdict_again(tmp_path):
    """results.json from before arms had ids: rerender finds SELF and SELF+U by their labels' records."""
    import shutil
    from pathlib import Path

    from augmentor.gain.report import rerender

    old = Path(__file__).parents[1] / "benchmarks" / "results" / "bench-mnist-unlabeled-10"
    shutil.copy(old / "results.json", tmp_path)
    text = rerender(tmp_path)
    by_gan, both, self_arm = (ARM_BY_ID[i].name for i in ("SELF-G", "SELF+U", "SELF"))
    assert f"adds to it: {both} vs {self_arm} +0.7 points" in text  # the figures the old report.md gave
    assert f"Best recipe here: **the GAN labeller's pseudo-labelled images** ({by_gan}, 97.4)" in text
    assert f"Best recipe here: **{by_gan}** ({by_gan}, 97.4)" in (old / "report.md").read_text()


def test_each_classes_recall_is_scored_where_a_table_can_show_it():
    import numpy as np

    from augmentor.gain.protocol import scores
    from augmentor.gain.report import _metric_label

    y = np.array([0, 0, 0, 0, 1])  # the rare class is 1: three of four 0s right, the 1 missed
    probs = np.eye(2)[[0, 0, 0, 1, 0]]
    got = scores(probs, y)
    assert got["recall_0"] == 0.75 and got["recall_1"] == 0.0 and got["balanced_accuracy"] == 0.375
    assert not any(k.startswith("recall_") for k in scores(np.eye(10)[np.arange(10)], np.arange(10)))
    assert (
        _metric_label("recall_1", ["normal", "pneumonia"]) == "recall pneumonia" and _metric_label("recall_1", None) == "recall_1"
    )


@pytest.mark.slow
def test_benches_of_different_seeds_merge_into_the_report_of_one_bench(tmp_path, capsys):
    """A seed each, run apart, merged: the same statistics as the bench that ran both seeds, and one-line refusals
    (nothing written) for benches that are not one protocol."""
    for name, seeds in (("s0", "0"), ("s1", "1"), ("both", "0,1")):
        code, _, err = run_cli(capsys, "bench", "--preset", "smoke", "--seeds", seeds, "--out", tmp_path / name)
        assert code == 0, err
    code, stdout, err = run_cli(capsys, "bench-merge", tmp_path / "s1", tmp_path / "s0", "--out", tmp_path / "m")
    assert code == 0, err
    assert "recommended ratio" in stdout
    merged = json.loads((tmp_path / "m" / "results.json").read_text())
    both = json.loads((tmp_path / "both" / "results.json").read_text())
    assert merged["summary"] == both["summary"]  # seed 0 first, as in the bench that ran both
    assert [s["seed"] for s in merged["settings"]] == [0, 1] and merged["env"]["preset"]["seeds"] == [0, 1]
    assert merged["recommended_ratio"] == both["recommended_ratio"]
    s0, s1 = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("s0", "s1"))
    assert merged["wall_seconds"] == pytest.approx(s0["wall_seconds"] + s1["wall_seconds"])
    report = (tmp_path / "m" / "report.md").read_text()
    assert "Seeds [0, 1]" in report and f"`{tmp_path / 's1'}/runs/`" in report
    for name in ("gain.png", "nearest_neighbours.png", "samples_6.png"):
        assert (tmp_path / "m" / name).exists()

    (tmp_path / "empty").mkdir()
    refused = {
        "seed 0, seed 0": ((tmp_path / "s0", tmp_path / "both"), "in more than one of the benches"),
        "one bench": ((tmp_path / "s0",), "two or more"),
        "not a bench": ((tmp_path / "s0", tmp_path / "empty"), "no results.json"),
    }
    quick = json.loads((tmp_path / "s1" / "results.json").read_text())
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text(json.dumps({**quick, "size": 64}))
    refused["another size"] = ((tmp_path / "s0", tmp_path / "other"), "size 64, not 32")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps({**quick, "settings": [{"shot": 6, "seed": 2}]}))
    refused["another version's"] = ((tmp_path / "s0", tmp_path / "old"), "not a results.json this augmentor can read")
    for what, (benches, words) in refused.items():
        code, _, err = run_cli(capsys, "bench-merge", *benches, "--out", tmp_path / "n")
        assert code == 2 and words in one_line_error(err), what
        assert not (tmp_path / "n").exists(), what
    code, _, err = run_cli(capsys, "bench-merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m")
    assert code == 2 and "holds a bench already" in one_line_error(err)  # never over a bench


@pytest.mark.slow
def test_an_interrupted_bench_resumes_after_the_last_thing_it_finished(tmp_path, capsys, monkeypatch):
    """Killed two steps into the GAN that learns from the unlabelled images, then two steps into FixMatch's second
    candidate: each --resume trains none of the GANs and classifiers it had finished, continues the one cut off
    from its checkpoint (the GAN with the pseudo-labels it had), and the bench reports what the bench run without
    interruption reports."""
    from augmentor.errors import Interrupted
    from augmentor.gain import runner, setting
    from augmentor.gan import callbacks
    from augmentor.semi.classifier import Checkpoints

    class CutAfterTwoSteps(Checkpoints):
        def save(self, state):
            super().save(state)
            if state["step"] == 2:
                raise KeyboardInterrupt

    options = ("--preset", "smoke", "--seeds", "0", "--unlabeled-rest")
    code, _, err = run_cli(capsys, "bench", *options, "--out", tmp_path / "whole")
    assert code == 0, err

    save_gan = callbacks.Checkpointer.save

    def cut_unlabelled_gan(self, trainer):
        path = save_gan(self, trainer)
        if trainer.step == 2 and self.folder.parent.name.startswith("unlabeled-"):
            raise KeyboardInterrupt
        return path

    with monkeypatch.context() as patch:
        patch.setattr(callbacks.Checkpointer, "save", cut_unlabelled_gan)
        with pytest.raises(Interrupted, match=f"Resume with: augmentor bench --resume --out {tmp_path / 'cut'}"):
            runner.bench(tmp_path / "cut", preset="smoke", seeds="0", unlabeled_rest=True, progress=False)
    (gan_cut,) = (tmp_path / "cut" / "runs").glob("unlabeled-*/checkpoints/ckpt_000002.pt")
    labelled_by_gan = (gan_cut.parent.parent / "pseudo_labels.json").read_text()

    calls = {"fit": 0, "resume": 0, "classifier": 0, "fixmatch": 0}
    real = {name: getattr(setting.ArmTraining, name) for name in ("classifier", "fixmatch")}
    real.update(fit=setting.run.fit, resume=setting.run.resume)

    def counting(name, stop_at=None):
        def call(*args, **kwargs):
            calls[name] += 1
            if calls[name] == stop_at:
                kwargs["checkpoints"] = CutAfterTwoSteps(kwargs["checkpoints"].path, every=1)
            return real[name](*args, **kwargs)

        return call

    monkeypatch.setattr(setting.run, "fit", counting("fit"))
    monkeypatch.setattr(setting.run, "resume", counting("resume"))
    monkeypatch.setattr(setting.ArmTraining, "fixmatch", counting("fixmatch", stop_at=2))
    with pytest.raises(Interrupted):
        runner.bench(tmp_path / "cut", resume=True, progress=False)
    trained = dict(calls)
    assert trained["resume"] == 1  # the cut GAN went on; the first had finished
    assert trained["fit"] == 1  # the tutorials' GAN, which had not started
    assert (gan_cut.parent.parent / "pseudo_labels.json").read_text() == labelled_by_gan  # not labelled again
    assert trained["fixmatch"] == 2 and not (tmp_path / "cut" / "results.json").exists()
    (partial,) = (tmp_path / "cut" / "settings").glob("*/*.partial.pt")
    assert torch.load(partial, weights_only=True)["step"] == 2

    calls.update(fit=0, resume=0, classifier=0, fixmatch=0)
    monkeypatch.setattr(setting.ArmTraining, "classifier", counting("classifier"))
    monkeypatch.setattr(setting.ArmTraining, "fixmatch", counting("fixmatch"))
    code, stdout, err = run_cli(capsys, "bench", "--resume", "--out", tmp_path / "cut")
    assert code == 0, err
    assert calls["fit"] == calls["resume"] == 0  # every GAN had finished
    assert calls["fixmatch"] == 2  # FixMatch's second μ (from its checkpoint) and FIX+G; its first μ was saved
    assert not partial.exists()  # gone once that classifier finished
    whole, cut = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("whole", "cut"))
    ran = {ARM_BY_NAME[name].id for name in whole["settings"][0]["arms"]}
    after_fix = ARMS[[a.id for a in ARMS].index("FIX+G") + 1 :]
    assert calls["classifier"] == len([a for a in after_fix if a.id in ran and not a.cas]) > 0  # the rest: loaded
    assert cut["summary"] == whole["summary"] and cut["settings"][0]["fixmatch"] == whole["settings"][0]["fixmatch"]
    untimed = [
        {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in b["settings"][0]["pseudo_labels"].items()}
        for b in (cut, whole)
    ]
    assert untimed[0] == untimed[1]  # the same labels; how long the labelling took differs
    assert "resumed after an interruption" in (tmp_path / "cut" / "report.md").read_text()
    assert not (tmp_path / "cut" / "settings").exists()  # the saved classifiers go once the report holds the figures

    refused = {
        "finished": (("--resume", "--out", tmp_path / "cut"), "has finished"),
        "other options": (("--resume", "--seeds", "1", "--out", tmp_path / "cut"), "leave out --seeds"),
        "nothing to resume": (("--resume", "--out", tmp_path / "new"), "no bench to resume"),
    }
    for what, (args, words) in refused.items():
        code, _, err = run_cli(capsys, "bench", *args)
        assert code == 2 and words in one_line_error(err), what
    assert not (tmp_path / "new").exists()
