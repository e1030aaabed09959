"""fit --unlabeled: pseudo-labels from a semi-supervised GAN (or the classifier alone) join the GAN's training set."""

import json

import numpy as np
import pytest
import torch
from clihelp import TINY, one_line_error, run_cli
from conftest import write_image

from augmentor import ConfigError, DataError, data
from augmentor.config import UnlabeledConfig
from augmentor.semi.unlabeled import read_pseudo_labels

PSEUDO = ["--pseudo-steps", 100, "--labeller-steps", 100]


@pytest.fixture(scope="module")
def unlabeled_run(tmp_path_factory):
    """5 labelled digits per class (seed 0); every other digit unlabelled."""
    from augmentor.cli import main

    out = tmp_path_factory.mktemp("unl") / "run"
    argv = ["fit", "--per-class", 5, "--unlabeled", "sklearn:digits", "--out", out, "--steps", 4, *PSEUDO, *TINY]
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        assert e.code == 0
    return out


@pytest.mark.slow
def test_pseudo_labels_are_recorded_and_mostly_right(unlabeled_run, capsys):
    cfg = json.loads((unlabeled_run / "config.json").read_text())
    record = cfg["pseudo_labels"]
    assert cfg["unlabeled"]["unlabeled"] == "sklearn:digits" and cfg["num_images"] == 50
    assert record["considered"] == 1797 - 50  # the labelled digits are dropped from the unlabelled ones
    assert record["kept"] == sum(record["kept_per_class"].values()) >= 0.7 * record["considered"]
    first = json.loads((unlabeled_run / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["pseudo_labels"]["kept"] == record["kept"]

    digits = data.load(None, size=32)
    labelled = set(json.loads((unlabeled_run / "holdout.json").read_text())["train_index"])
    unlabeled = digits.subset(torch.tensor([i for i in range(len(digits)) if i not in labelled]))
    pseudo = read_pseudo_labels(unlabeled_run)
    accuracy = float((unlabeled.labels[pseudo.index] == pseudo.labels).float().mean())
    assert accuracy >= 0.95, accuracy
    assert bool((pseudo.confidence >= 0.9).all())
    assert record["labeller"] == "gan"
    # a fifth of 50 labelled images is too few to check the labels on: the labellers learnt from all of them
    assert "check" not in record and pseudo.check is None
    # The semi-supervised GAN labels more of the unlabelled images right than the classifier it starts from
    from augmentor.config import UnlabeledConfig
    from augmentor.semi.unlabeled import pseudo_label

    labelled_set = digits.subset(torch.tensor(sorted(labelled)))
    alone = pseudo_label(labelled_set, unlabeled, UnlabeledConfig(pseudo_labeller="classifier", pseudo_steps=100), seed=0)
    right_alone = int((unlabeled.labels[alone.index] == alone.labels).sum())
    assert int((unlabeled.labels[pseudo.index] == pseudo.labels).sum()) > right_alone

    code, stdout, _ = run_cli(capsys, "info", unlabeled_run)
    assert code == 0 and f"unlabeled_images  {record['kept']}" in stdout

    from augmentor import pseudo_labelled_images

    kept = pseudo_labelled_images(unlabeled_run)  # the self-training data, for the user's own classifier
    assert len(kept) == record["kept"] and kept.class_names == digits.class_names
    assert torch.equal(kept.images, unlabeled.images[pseudo.index]) and torch.equal(kept.labels, pseudo.labels)


@pytest.mark.slow
def test_resume_keeps_the_pseudo_labels(unlabeled_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(unlabeled_run, run)
    before = (run / "pseudo_labels.json").read_text()
    code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", "--steps", 6, "--no-export")
    assert code == 0, err
    assert (run / "pseudo_labels.json").read_text() == before  # not labelled again
    code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", "--unlabeled", "elsewhere/")
    assert code == 2 and "--unlabeled elsewhere/: no such file" in one_line_error(err)  # a new place must hold them


def test_bad_unlabeled_input_is_one_line(tmp_path, capsys):
    for i in range(3):
        write_image(tmp_path / "rgb" / f"{i}.png", seed=i)
    digits = data.load(None, size=32)
    labelled_dir = tmp_path / "labelled"
    for c in ("0", "1"):
        for i, img in enumerate(digits.images[digits.labels == int(c)][:3]):
            (labelled_dir / c).mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(img[0].numpy()).save(labelled_dir / c / f"{i}.png")
    cases = [
        (["--unlabeled", tmp_path / "nowhere"], "no such file"),
        (["--unlabeled", tmp_path / "rgb"], "colour images, but the labelled ones are gray"),
        (["--unlabeled", labelled_dir], "no unlabelled images left"),
        (["--unlabeled", tmp_path / "rgb", "--pseudo-threshold", 1.5], "--pseudo-threshold 1.5"),
    ]
    for args, expected in cases:
        out = tmp_path / "out"
        code, _, err = run_cli(capsys, "fit", "--data", labelled_dir, "--out", out, "--steps", 2, *args, *PSEUDO, *TINY)
        assert code == 2 and expected in one_line_error(err), err
        assert not (out / "config.json").exists()


@pytest.mark.slow
def test_pseudo_labels_command_lists_the_kept_images(unlabeled_run, tmp_path, capsys):
    import csv

    out = tmp_path / "labels.csv"
    code, stdout, err = run_cli(capsys, "pseudo-labels", unlabeled_run, "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    kept = json.loads((unlabeled_run / "config.json").read_text())["pseudo_labels"]["kept"]
    assert len(rows) == kept and f"wrote {kept}" in stdout
    assert "warning: their labels were not checked" in err  # one line, and the CSV is written all the same
    assert {r["label"] for r in rows} <= {str(c) for c in range(10)} and min(float(r["confidence"]) for r in rows) >= 0.9
    code, _, err = run_cli(capsys, "pseudo-labels", unlabeled_run, "--out", out)
    assert code == 2 and "exists" in one_line_error(err)


@pytest.mark.slow
def test_pseudo_labels_of_a_folder_name_its_files(tmp_path, capsys):
    from PIL import Image

    digits = data.load(None, size=32)
    for c in (0, 1):
        for i, img in enumerate(digits.images[digits.labels == c][:4]):
            (tmp_path / "labelled" / str(c)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(tmp_path / "labelled" / str(c) / f"{i}.png")
        for i, img in enumerate(digits.images[digits.labels == c][10:20]):
            (tmp_path / "phone").mkdir(exist_ok=True)
            Image.fromarray(img[0].numpy()).save(tmp_path / "phone" / f"photo {c}-{i}.png")
    run = tmp_path / "run"
    args = [
        "--data",
        tmp_path / "labelled",
        "--unlabeled",
        tmp_path / "phone",
        "--pseudo-threshold",
        0.5,
        "--pseudo-labeller",
        "classifier",
    ]
    assert run_cli(capsys, "fit", *args, "--out", run, "--steps", 2, "--no-export", *PSEUDO, *TINY)[0] == 0
    code, _, err = run_cli(capsys, "pseudo-labels", run, "--out", tmp_path / "l.csv")
    assert code == 0, err
    rows = (tmp_path / "l.csv").read_text().splitlines()[1:]
    assert rows and all("photo " in r for r in rows)
    right = sum(r.split(",")[0].split("photo ")[1][0] == r.split(",")[1] for r in rows)
    assert right / len(rows) >= 0.9  # 0s and 1s from 4 labelled images each

    plain = tmp_path / "plain"
    assert run_cli(capsys, "fit", "--data", tmp_path / "labelled", "--out", plain, "--steps", 2, "--no-export", *TINY)[0] == 0
    code, _, err = run_cli(capsys, "pseudo-labels", plain, "--out", tmp_path / "p.csv")
    assert code == 2 and "did not learn from unlabelled images" in one_line_error(err)
    from augmentor import ConfigError, pseudo_labelled_images

    with pytest.raises(ConfigError, match="did not learn from unlabelled images"):
        pseudo_labelled_images(plain)
    from augmentor import PseudoLabelMix

    with pytest.raises(ConfigError, match="did not learn from unlabelled images"):
        PseudoLabelMix([], plain)


def test_labelled_class_shares_reweight_the_labellers_probabilities():
    from augmentor.semi.shares import expected_shares, reweighted

    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.05, 0.95]])
    equal = data.ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), ["a", "b"], "equal")
    assert expected_shares(equal) is None  # an equal draw is a choice, not an estimate
    assert reweighted(probs, None) is probs  # balanced batches already assumed equal shares
    rare_a = data.ImageSet(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.tensor([0] + [1] * 9), ["a", "b"], "rare a")
    adjusted = reweighted(probs, expected_shares(rare_a))
    assert torch.allclose(adjusted, torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.05 / 8.6, 8.55 / 8.6]]))


def test_a_rare_class_keeps_at_most_its_expected_share_most_confident_first():
    from augmentor.semi.shares import expected_shares
    from augmentor.semi.unlabeled import keep_confident

    # 10 unlabelled images; labelled 1 "a" to 4 "b" → at most 2 "a"; "b" (share 0.8, 8 allowed) is below its quota
    probs = torch.tensor([[0.95, 0.05], [0.99, 0.01], [0.92, 0.08], [0.97, 0.03], [0.5, 0.5]] + [[0.02, 0.98]] * 5)
    rare_a = data.ImageSet(torch.zeros(5, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 1, 1, 1]), ["a", "b"], "rare a")
    kept = keep_confident(probs, expected_shares(rare_a), 0.9, "classifier")
    assert kept.index.tolist() == [1, 3, 5, 6, 7, 8, 9] and kept.labels.tolist() == [0, 0, 1, 1, 1, 1, 1]
    equal = data.ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), ["a", "b"], "equal")
    assert keep_confident(probs, expected_shares(equal), 0.9, "classifier").index.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # an equal draw with the user's shares (--unlabeled-shares, counts work too): the same quota as rare_a's
    stated = expected_shares(equal, "b=4, a=1")
    assert torch.allclose(stated, torch.tensor([0.2, 0.8]))
    assert keep_confident(probs, stated, 0.9, "classifier").index.tolist() == kept.index.tolist()


@pytest.mark.parametrize(
    "shares, message",
    [("a=1,c=2", "unknown class c"), ("a=1", "no share for b"), ("a=1,b=0", "'b=0' is not CLASS=SHARE"),
     ("a,b=1", "'a' is not CLASS=SHARE"), ("a=1,b=inf", "'b=inf' is not"), ("a=1,a=2", "'a=2' is not CLASS=SHARE")],
)  # fmt: skip
def test_unlabeled_shares_that_cannot_be_meant_are_refused_in_one_line(shares, message):
    from augmentor.semi.shares import expected_shares

    labelled = data.ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), ["a", "b"], "two")
    with pytest.raises((ConfigError, DataError), match=message):
        expected_shares(labelled, shares)
    if "CLASS=SHARE" in message:  # a malformed value is refused as the option is read, before any data
        with pytest.raises(ConfigError, match=message):
            UnlabeledConfig(unlabeled_shares=shares)


def test_fit_refuses_unlabeled_shares_that_miss_a_class_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "fit", "--per-class", 5, "--unlabeled", "sklearn:digits", "--unlabeled-shares", "0=1,1=2", "--out", out, *TINY
    )
    assert code == 2 and "no share for 2, 3, 4, 5, 6, 7, 8, 9" in one_line_error(err)
    assert not out.exists()  # nothing was written


def test_consistency_asks_augmented_views_to_keep_the_class_the_labeller_is_sure_of():
    import torch.nn.functional as F

    from augmentor.semi.semisupervised import consistency_loss

    plain = torch.tensor([[0.0, 0.0, 10.0], [0.1, 0.0, 0.0]], requires_grad=True)  # sure of class 2 · unsure
    augmented = torch.tensor([[3.0, 0.0, 0.0], [0.0, 5.0, 0.0]], requires_grad=True)
    loss = consistency_loss(plain, augmented)
    assert torch.isclose(loss, F.cross_entropy(augmented[:1], torch.tensor([2])) / 2)  # the unsure one counts as 0
    loss.backward()
    assert plain.grad is None  # the plain view is the target, not trained towards the augmented one
    assert augmented.grad[1].abs().sum() == 0 and augmented.grad[0, 2] < 0  # pulled towards class 2, only image 0
    agreeing = torch.tensor([[0.0, 0.0, 10.0], [0.0, 5.0, 0.0]])
    assert consistency_loss(plain.detach(), agreeing) < 1e-3
    # D learns from balanced batches: where the labelled classes are unequal its guess is reweighted by their
    # shares first, so a rare class it is "sure" of at 96 % (1 in 10 labelled) is no longer sure (73 %)
    rare = torch.tensor([[3.2, 0.0]])  # softmax 0.96 / 0.04
    assert consistency_loss(rare, torch.tensor([[0.0, 4.0]])) > 1.0
    assert consistency_loss(rare, torch.tensor([[0.0, 4.0]]), shares=torch.tensor([0.1, 0.9])) == 0


@pytest.mark.slow
def test_pseudo_augment_is_the_pipeline_the_labellers_train_with(tmp_path, capsys):
    """--pseudo-augment replaces the preset in the pseudo-labellers: a pipeline that inverts every training image
    leaves a classifier that labels the (plain) unlabelled digits far worse; a missing file is refused first."""
    import albumentations as A

    from augmentor.config import UnlabeledConfig
    from augmentor.semi.unlabeled import pseudo_label

    digits = data.load(None, size=32)
    labelled_index = data.per_class_subset(digits, 5, 0)
    rest = torch.ones(len(digits), dtype=torch.bool)
    rest[labelled_index] = False
    labelled, unlabeled = digits.subset(labelled_index), digits.subset(torch.nonzero(rest).flatten())
    A.save(A.Compose([A.InvertImg(p=1.0)]), str(tmp_path / "invert.json"))
    right = {}
    for name, file in (("preset", None), ("invert", str(tmp_path / "invert.json"))):
        cfg = UnlabeledConfig(pseudo_labeller="classifier", pseudo_steps=100, pseudo_augment=file)
        pseudo = pseudo_label(labelled, unlabeled, cfg, seed=0)
        right[name] = int((unlabeled.labels[pseudo.index] == pseudo.labels).sum())
    assert right["invert"] < 0.5 * right["preset"], right

    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "fit", "--unlabeled", "sklearn:digits", "--pseudo-augment", tmp_path / "no.json", "--out", out, *TINY
    )
    assert code == 2 and "--pseudo-augment" in one_line_error(err) and "no such file" in one_line_error(err)
    assert not out.exists()


def test_the_kept_summary_says_when_the_split_was_taken_as_even():
    from augmentor.semi.unlabeled import PseudoLabels, kept_summary

    pseudo = PseudoLabels(torch.arange(4), torch.tensor([0, 0, 0, 1]), torch.ones(4), considered=5)
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    even = data.ImageSet(images, torch.tensor([0, 0, 1, 1]), ["healthy", "scorch"], "test")
    uneven = data.ImageSet(images, torch.tensor([0, 1, 1, 1]), ["healthy", "scorch"], "test")
    line = kept_summary(pseudo, even, None)
    assert line.startswith("pseudo-labels: kept 4 of 5: healthy 3 (75 %), scorch 1 (25 %);") and "--unlabeled-shares" in line
    assert "--unlabeled-shares" not in kept_summary(pseudo, even, "healthy=0.3,scorch=0.7")  # the user said it
    assert "--unlabeled-shares" not in kept_summary(pseudo, uneven, None)  # the labelled shares were used


def test_the_strong_view_changes_images_and_the_targets_follow_the_weak_view_or_the_given_labels():
    from augmentor.data.augmentation import augment_batch
    from augmentor.semi.fixmatch import THRESHOLD, ConsistencyLoss, strong_augmentation

    for channels in (1, 3):
        x = data.uint8_to_tanh(torch.randint(0, 256, (32, channels, 32, 32), dtype=torch.uint8))
        strong = augment_batch(strong_augmentation(channels, seed=0), x)
        assert strong.shape == x.shape and (strong - x).abs().flatten(1).mean(1).min() > 0.01  # every image changed

    class Sure(torch.nn.Module):  # predicts class 2 for every image, at a confidence set by `logit`
        def __init__(self, logit):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.logit = logit

        def forward(self, x):
            out = torch.zeros(len(x), 3) + self.w
            out[:, 2] += self.logit
            return out

    images = torch.randint(0, 256, (10, 1, 32, 32), dtype=torch.uint8)
    sure, unsure = Sure(10.0), Sure(0.0)  # softmax 0.9999 (over THRESHOLD), 1/3 (under)
    assert float(torch.softmax(sure(images[:1].float()), 1).max().detach()) >= THRESHOLD
    own = ConsistencyLoss(images, 8, None, strong_augmentation(1), seed=0)
    labelled = torch.zeros(4, 1, 32, 32)
    logits, loss = own(unsure, labelled)
    assert logits.shape == (4, 3) and float(loss.detach()) == 0 and own.share_with_targets() == 0  # no target: no loss
    assert float(own(sure, labelled)[1].detach()) > 0 and own.kept[-1] == 1
    known = torch.tensor([0] * 5 + [-1] * 5)  # the GAN labeller's labels for half the images
    seeded = ConsistencyLoss(images, 8, None, strong_augmentation(1), seed=0, known=known)
    loss = seeded(unsure, labelled)[1].detach()
    drawn = torch.randint(10, (8,), generator=torch.Generator().manual_seed(0))
    assert float(seeded.kept[-1]) == float((known[drawn] >= 0).float().mean()) and (float(loss) > 0) == bool(
        (known[drawn] >= 0).any()
    )


def test_an_interrupted_fixmatch_training_continues_from_its_checkpoint_to_the_same_model(tmp_path):
    """Its batches, views, dropout and optimizer stand where they stood: the same weights as without a break."""
    from augmentor.data.augmentation import augment_batch, preset
    from augmentor.semi.classifier import Checkpoints, train_classifier
    from augmentor.semi.fixmatch import ConsistencyLoss, strong_augmentation

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 16, 16, generator=g) * 2 - 1, torch.arange(40) % 3
    unlabelled = torch.randint(0, 256, (30, 1, 16, 16), dtype=torch.uint8, generator=g)

    def train(stop_after=None, checkpoints=None):
        def batches():  # the labelled batches; a break after `stop_after` of them
            draws = torch.Generator().manual_seed(1)
            for i in range(12):
                if i == stop_after:
                    raise KeyboardInterrupt
                idx = torch.randint(40, (8,), generator=draws)
                yield x[idx], y[idx]

        pipeline = preset(1, seed=2)
        term = ConsistencyLoss(unlabelled, 16, preset(1, seed=3), strong_augmentation(1, seed=4), seed=5)
        model = train_classifier(
            x, y, 3, steps=12, batch_size=8, batches=batches(), augment=lambda xb, yb: (augment_batch(pipeline, xb), yb),
            extra_loss=term, checkpoints=checkpoints,
        )  # fmt: skip
        return model, term

    whole, whole_term = train()
    checkpoints = Checkpoints(tmp_path / "clf.partial.pt", every=5)
    with pytest.raises(KeyboardInterrupt):
        train(stop_after=8, checkpoints=checkpoints)
    assert torch.load(checkpoints.path, weights_only=True)["step"] == 5
    resumed, resumed_term = train(checkpoints=checkpoints)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert torch.equal(torch.stack(whole_term.kept), torch.stack(resumed_term.kept)) and len(resumed_term.kept) == 12
    assert checkpoints.seconds_before() > 0


def test_the_strong_views_autocontrast_stretches_linearly_as_randaugments():
    import albumentations as A

    from augmentor.semi.fixmatch import strong_augmentation

    (auto,) = [op for op in strong_augmentation(1).transforms[0].transforms if isinstance(op, A.AutoContrast)]
    image = np.full((32, 32, 1), 100, np.uint8)
    image[:4], image[0, 0] = 110, 140
    out = auto(image=image)["image"].astype(float)
    assert out.min() == 0 and out.max() == 255 and abs(out[1, 0, 0] - 255 * 10 / 40) <= 1  # 100 → 0, 110 → 64, 140 → 255


@pytest.mark.slow
def test_pseudo_label_mix_puts_the_kept_images_in_at_the_ratio_asked_even_after_the_run_moved(unlabeled_run, tmp_path):
    import shutil

    from torch.utils.data import DataLoader, TensorDataset

    from augmentor import PseudoLabelMix, pseudo_labelled_images

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(unlabeled_run, moved)  # a run moved to another folder still finds its kept images
    kept = pseudo_labelled_images(moved)
    x = torch.zeros(40, 1, 32, 32)  # black real images: every non-zero one in a batch came from the run
    loader = DataLoader(TensorDataset(x, torch.arange(40) % 10), batch_size=10)
    kept_unit = kept.images.float() / 255
    for xb, yb, mask in PseudoLabelMix(loader, moved, ratio=0.3, return_mask=True):
        assert int(mask.sum()) == 3 and torch.equal(yb, torch.arange(10))  # labels kept, as SyntheticMix's "match"
        assert (xb[~mask] == 0).all()
        for image, label in zip(xb[mask], yb[mask]):
            same = (kept_unit[kept.labels == label] - image).abs().flatten(1).max(1).values
            assert float(same.min()) < 1e-6  # one of the run's kept images of that class, as kept


@pytest.mark.slow
def test_the_reports_code_for_the_pseudo_label_recipe_runs_on_a_fitted_run(unlabeled_run, tmp_path, monkeypatch):
    """The lines report.md shows when SELF-G wins are code a user can paste after `augmentor fit --unlabeled ...
    --out run`: half of each batch becomes the run's pseudo-labelled images."""
    import shutil

    from torch.utils.data import DataLoader, TensorDataset

    from augmentor.gain.recipes import recipe_code

    lines = recipe_code("SELF-G")
    python = "\n".join(lines[lines.index("```python") + 1 : -1])
    shutil.copytree(unlabeled_run, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    scope = {"loader": DataLoader(TensorDataset(torch.zeros(20, 1, 32, 32), torch.arange(20) % 10), batch_size=10)}
    exec(python, scope)
    batches = list(scope["loader"])
    assert len(batches) == 2 and all(int((xb.flatten(1).abs().sum(1) > 0).sum()) == 5 for xb, _ in batches)


def _labeller(right: torch.Tensor, confidence: float, classes: int = 4) -> torch.Tensor:
    """Probabilities of a labeller that says ``confidence`` for its guess, right where ``right``: (N, classes)."""
    truth = torch.arange(len(right)) % classes
    guess = torch.where(right, truth, (truth + 1) % classes)
    probs = torch.full((len(right), classes), (1 - confidence) / (classes - 1))
    probs[torch.arange(len(right)), guess] = confidence
    return probs, truth


@pytest.mark.parametrize("share_right, confidence", [(0.8, 0.99), (0.95, 0.5)])
def test_calibration_turns_a_labellers_confidence_into_how_often_it_is_right(share_right, confidence):
    from augmentor.semi.calibration import check_labels

    g = torch.Generator().manual_seed(0)
    val_probs, val_truth = _labeller(torch.rand(400, generator=g) < share_right, confidence)
    kept_probs, _ = _labeller(torch.rand(1000, generator=g) < share_right, confidence)
    check = check_labels(val_probs, val_truth, kept_probs)
    assert abs(check.estimated_precision - share_right) < 0.04, check  # an over- and an underconfident labeller
    assert (check.temperature > 1) == (confidence > share_right)
    assert abs(check.validation_accuracy - share_right) < 0.05 and check.validation_images == 400


def test_a_few_flawless_validation_images_do_not_make_the_labeller_look_surer_than_it_says():
    from augmentor.semi.calibration import check_labels

    val_probs, val_truth = _labeller(torch.ones(20, dtype=torch.bool), 0.99)  # 20 of 20 right at 0.99
    kept_probs, _ = _labeller(torch.ones(500, dtype=torch.bool), 0.99)
    check = check_labels(val_probs, val_truth, kept_probs)
    assert check.validation_accuracy == 1.0 and check.temperature > 0.8
    assert 0.99 <= check.estimated_precision < 0.997, check  # near what it says, not 100 %
    many_probs, many_truth = _labeller(torch.ones(2000, dtype=torch.bool), 0.99)  # 2,000 of 2,000: surer, rightly
    assert check_labels(many_probs, many_truth, kept_probs).estimated_precision > 0.9995


def test_the_label_check_warns_in_one_line_when_the_labels_are_doubtful_or_unchecked():
    from augmentor.semi.calibration import LabelCheck, check_labels

    assert LabelCheck(400, 0.97, 1.5, 0.96).warning("pseudo-labels") is None
    low = LabelCheck(400, 0.85, 3.0, 0.84).warning("pseudo-labels")
    assert "an estimated 84 % of its kept labels are right (calibrated on 400" in low and "\n" not in low
    assert "too few" in LabelCheck(12, 1.0, 0.25, 0.999).warning("pseudo-labels")  # perfect on 12 images proves little
    empty = check_labels(torch.ones(0, 3) / 3, torch.zeros(0, dtype=torch.long), torch.ones(5, 3) / 3)
    assert empty.validation_images == 0 and "too few" in empty.warning("pseudo-labels")


@pytest.mark.slow
def test_fit_checks_its_labels_on_a_fifth_of_the_labelled_images_when_that_is_enough(tmp_path, capsys):
    """10 labelled digits a class: the labellers learn from 8 of each and are checked on the other 2 (20 images);
    the GAN learns from all 100."""
    out = tmp_path / "run"
    args = ["--per-class", 10, "--unlabeled", "sklearn:digits", "--pseudo-labeller", "classifier", "--steps", 2, "--no-export"]
    code, _, err = run_cli(capsys, "fit", "--out", out, *args, *PSEUDO, *TINY)
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    check = cfg["pseudo_labels"]["check"]
    assert cfg["num_images"] == 100 and check["validation_images"] == 20 and 0 < check["estimated_precision"] <= 1
    assert f"an estimated {100 * check['estimated_precision']:.0f} % of them right" in err
    code, stdout, err = run_cli(capsys, "pseudo-labels", out, "--out", tmp_path / "labels.csv")
    assert code == 0 and f"an estimated {100 * check['estimated_precision']:.0f} % of them are labelled right" in stdout
