"""Does synthetic data help a classifier on *your* data? The gain protocol behind `augmentor bench`.

For every shot count and seed:
  1. a held-out real test set (fixed across seeds) never touches GAN training, classifier training or
     any choice; a validation part is carved out of the training images for choosing the classical
     augmentation (preset or none) and the mix ratio;
  2. the GANs are trained on that setting's training images only (with unlabelled images: one more GAN that
     also learns from them through pseudo-labels);
  3. the same classifier (SmallCNN, same steps) is trained in each arm of ``ARMS`` (records: which use
     synthetic images, augmentation, balancing, and what replaces a share of each batch), and arm E at the
     ratio chosen on validation;
  4. quality: FID, KID, precision and recall in the feature space of a SmallCNN trained on the real
     training pool, and memorization (nearest-neighbour distances of samples vs held-out test images).
Writes report.md, results.json and PNG plots (report.py, plots.py). When synthetic data does not beat the
best arm without it, the report says so and recommends ratio 0.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from . import __version__, data, distributed, metrics, outputs, plots, report, run, transfer
from . import augmentation as augmentation_
from .classifier import embed, predict, train_classifier
from .config import InitConfig, TrainConfig, UnlabeledConfig
from .errors import ConfigError, writable_folder
from .mix import SyntheticMix
from .modelfiles import SAMPLES, sample_grids
from .report import REPORT, RESULTS
from .sampler import Sampler
from .train import resolve_precision
from .unlabeled import drop_labelled, expected_shares, load_unlabeled, pseudo_label, pseudo_labelled, read_pseudo_labels

log = logging.getLogger("augmentor")

RATIOS = (0.25, 0.5)
UNLABELED_REST = object()  # bench --unlabeled-rest: the pool images outside each setting's draw are the unlabelled ones


def environment() -> dict:
    """What a speed or quality figure was measured on: versions, the CPU's model (the speed of bf16 autocast
    depends on it, train.resolve_precision) and threads."""
    model = platform.processor() or platform.machine()  # not Linux: the architecture is what platform knows
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "augmentor": __version__,
        "cpu": model,
        "cpu_precision": resolve_precision("auto", torch.device("cpu")),
        "threads": torch.get_num_threads(),
    }


@dataclass(frozen=True)
class Preset:
    shots: tuple  # images per class (see parse_shots for the other settings)
    seeds: tuple
    gan_steps: int
    clf_steps: int
    width: int
    batch_size: int = 64
    n_synthetic: int = 2000
    reference: bool = False  # also train the tutorials' plain recipe, to show what our training adds
    pseudo_steps: int = 1000  # the pseudo-labelling classifier's steps (with unlabelled images)
    labeller_steps: int = 2000  # the semi-supervised GAN's steps, which then gives the pseudo-labels
    pseudo_threshold: float = 0.9


PRESETS = {
    # the protocol at CPU scale (its measured times: docs/results.md)
    "quick": Preset(shots=(10,), seeds=(0, 1, 2), gan_steps=800, clf_steps=400, width=32, reference=True),
    # for a GPU: the protocol of the README's tables
    "full": Preset(
        shots=(10, 20, 50, 100), seeds=(0, 1, 2), gan_steps=3000, clf_steps=1000, width=64, n_synthetic=5000, reference=True
    ),
    # seconds: a dry run of every step, for tests
    "smoke": Preset(
        shots=(6,),
        seeds=(0, 1),
        gan_steps=3,
        clf_steps=3,
        width=8,
        batch_size=16,
        n_synthetic=60,
        reference=True,
        pseudo_steps=30,
        labeller_steps=30,
        pseudo_threshold=0.2,
    ),
}


@dataclass
class Split:
    pool: data.ImageSet  # every non-test image: n-shot sets are drawn from it
    test: data.ImageSet
    name: str = ""
    notes: list = field(default_factory=list)


def split_data(source: Optional[str], size: int, test_fraction: float = 0.3, classes: Optional[str] = None) -> Split:
    """Held-out test set: the source's own test split when it has one (.npz), else a seeded stratified part.
    ``classes``: keep only these (pool and test alike)."""
    split = None
    if source and source.endswith(".npz"):
        try:
            test = data.load(source, size=size, split="test")
            pool = data.load(source, size=size, split="train")
            split = Split(pool, test, source, ["test set: the file's own test split"])
        except data.DataError:
            pass
    if split is None:
        full = data.load(source, size=size)
        pool_idx, test_idx = data.stratified_split(full, test_fraction, seed=12345)
        split = Split(
            full.subset(pool_idx),
            full.subset(test_idx),
            full.source,
            [f"test set: a stratified {test_fraction:.0%} of the data (seed 12345)"],
        )
    if classes:
        split.pool, split.test = data.select_classes(split.pool, classes), data.select_classes(split.test, classes)
        split.notes.append(f"classes: {', '.join(split.pool.class_names)} only")
    return split


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    pred = probs.argmax(1)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
    }
    if probs.shape[1] == 2 and len(np.unique(y)) == 2:
        out["auroc"] = float(roc_auc_score(y, probs[:, 1]))
    return out


def clearly_better(probs_a: np.ndarray, probs_b: np.ndarray, y: np.ndarray) -> bool:
    """Whether model a's balanced accuracy beats model b's by more than two standard errors of the difference,
    each class's accuracy taken as a binomial proportion over its images (Laplace's (right + 1) / (n + 2) for the
    variance, so that a perfect score on two images is not taken as certain). On a few validation images a win by
    one image is noise."""
    classes = np.unique(y)

    def balanced_and_variance(probs):
        right = probs.argmax(1) == y
        acc = np.array([right[y == c].mean() for c in classes])
        n = np.array([(y == c).sum() for c in classes])
        smoothed = (acc * n + 1) / (n + 2)
        return acc.mean(), (smoothed * (1 - smoothed) / n).sum() / len(classes) ** 2

    (a, var_a), (b, var_b) = balanced_and_variance(probs_a), balanced_and_variance(probs_b)
    return bool(a - b > 2 * np.sqrt(var_a + var_b))


def chosen_on_validation(val_probs: dict, y: np.ndarray, default):
    """What to deploy, from each candidate's validation probabilities: ``default`` (the preset augmentation, ratio 0)
    unless another candidate beats it beyond the validation's noise (clearly_better); then the best of those, ties
    going to the earlier in ``val_probs``. Before 0.9 (augmentation) and 0.10 (mix ratio) a strict win chose."""
    balanced = {c: scores(probs, y)["balanced_accuracy"] for c, probs in val_probs.items()}
    beyond_noise = [c for c in val_probs if c == default or clearly_better(val_probs[c], val_probs[default], y)]
    return max(beyond_noise, key=balanced.__getitem__)  # max keeps the first of equals


def imbalanced(images: data.ImageSet) -> bool:
    """A class has over 1.5× the images of another: the bench then adds class-balanced arms, lets the extra images
    top up the rare classes and keeps every training image (n-shot draws would erase the imbalance)."""
    counts = images.class_counts()
    return max(counts) > 1.5 * max(1, min(counts))


def carve_validation(train: data.ImageSet, seed: int) -> tuple:
    """20 % of each class (at least one image of a class that has ≥ 3) for choosing the ratio."""
    kept, val = data.stratified_split(train, 0.2, seed)
    return train.subset(kept), train.subset(val)


def parse_shots(text: str) -> tuple:
    """'10,20' → images per class; '10%' → a stratified 10 % of the training images (imbalance kept); 'all'."""
    shots = []
    for item in text.split(","):
        item = item.strip()
        try:
            if item == "all":
                shots.append("all")
            elif item.endswith("%") and 0 < float(item[:-1]) < 100:
                shots.append(f"{float(item[:-1]):g}%")
            elif int(item) >= 1:
                shots.append(int(item))
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--shots: '{item}' is not a count per class (10), a share of the data (10%) or 'all'") from None
    return tuple(shots)


def choose_training_images(pool: data.ImageSet, shot, seed: int) -> torch.Tensor:
    if shot == "all":
        return torch.arange(len(pool))
    if isinstance(shot, str):  # "10%": the same share of every class, so the imbalance stays as it was
        return data.stratified_split(pool, float(shot[:-1]) / 100, seed)[1].sort().values
    return data.per_class_subset(pool, shot, seed)


def rest_of_pool(pool: data.ImageSet, chosen: torch.Tensor) -> data.ImageSet:
    """The pool images outside a setting's draw ``chosen``: --unlabeled-rest's unlabelled images."""
    rest = torch.ones(len(pool), dtype=torch.bool)
    rest[chosen] = False
    return pool.subset(torch.nonzero(rest).flatten())


@dataclass(frozen=True)
class Arm:
    """One way of training the classifier. ``synthetic`` decides which side of the verdict an arm is on.

    Sources of the images that replace ``ratio`` of each batch (``mix``, equal shares) or that a CAS arm trains
    on alone (``cas``): "gan" (the GAN on the labelled images), "plain" (the tutorials' recipe), "unlabeled"
    (the GAN that also learnt from the unlabelled images), "real" (labelled images re-drawn), "pseudo"
    (unlabelled images labelled by the classifier: self-training), "pseudo-gan" (labelled by the semi-supervised
    GAN). An arm runs only where all its sources exist."""

    name: str
    uses_gan: bool  # a GAN made part of its training data (images, or labels): the verdict's GAN side
    classical: bool = False  # classical augmentation of the real images (the chosen pipeline)
    balanced: bool = False  # class-balanced sampling; trained only on imbalanced data
    mix: tuple = ()
    ratio: float = 0.0
    cas: Optional[str] = None
    # the generator's share goes through the classical pipeline too, as re-drawn real images always do. Data
    # decide whether that helps (it went both ways in docs/results.md), so both are measured.
    synthetic_augmented: bool = False

    @property
    def sources(self) -> set:
        return {*self.mix, *([self.cas] if self.cas else [])}


ARMS = (
    Arm("A real", False),
    Arm("B real+aug", False, classical=True),
    Arm("C real+balanced", False, balanced=True),
    Arm("C' real+aug+balanced", False, classical=True, balanced=True),
    *(Arm(f"DUP real+aug+re-drawn real {r}", False, classical=True, mix=("real",), ratio=r) for r in RATIOS),
    Arm("SELF real+aug+pseudo-labelled 0.5", False, classical=True, mix=("pseudo",), ratio=0.5),
    *(Arm(f"D real+syn {r}", True, mix=("gan",), ratio=r) for r in RATIOS),
    *(Arm(f"E real+aug+syn {r}", True, classical=True, mix=("gan",), ratio=r) for r in RATIOS),
    Arm("F synthetic only (CAS)", True, cas="gan"),
    # SELF-G: self-training with the semi-supervised GAN's labels and none of its images: what its labels give
    Arm("SELF-G real+aug+GAN-pseudo-labelled 0.5", True, classical=True, mix=("pseudo-gan",), ratio=0.5),
    Arm("U real+aug+syn(unlabeled GAN) 0.5", True, classical=True, mix=("unlabeled",), ratio=0.5),
    Arm(
        "SELF+U real+aug+GAN-pseudo-labelled 0.25+syn(unlabeled GAN) 0.25",
        True,
        classical=True,
        mix=("pseudo-gan", "unlabeled"),
        ratio=0.5,
    ),
    Arm(
        "U-aug real+aug+syn(unlabeled GAN, augmented) 0.5",
        True,
        classical=True,
        mix=("unlabeled",),
        ratio=0.5,
        synthetic_augmented=True,
    ),
    Arm(
        "SELF+U-aug real+aug+GAN-pseudo-labelled 0.25+syn(unlabeled GAN, augmented) 0.25",
        True,
        classical=True,
        mix=("pseudo-gan", "unlabeled"),
        ratio=0.5,
        synthetic_augmented=True,
    ),
    Arm("U synthetic only (CAS)", True, cas="unlabeled"),
    Arm("R plain GAN: real+aug+syn 0.5", True, classical=True, mix=("plain",), ratio=0.5),
    Arm("R plain GAN: synthetic only (CAS)", True, cas="plain"),
)
# Not trained on its own: arm E at the ratio chosen on validation (ratio 0 is arm B). What a user would deploy.
CHOSEN = Arm("E real+aug+syn (chosen)", True, classical=True, mix=("gan",))
ARM_BY_NAME = {a.name: a for a in (*ARMS, CHOSEN)}


@dataclass
class SettingResult:
    """The numbers of one (shot, seed) setting: what results.json keeps."""

    shot: object
    seed: int
    train_images: int
    val_images: int
    imbalanced: bool
    augmentation: str  # the classical pipeline the arms used: a file, "preset" or "none" (chosen on validation)
    augmentation_val: Optional[dict]  # the validation scores that chose it (None for a user's file)
    gan_seconds: float
    pseudo_labels: Optional[dict]  # with unlabelled images, per labeller (classifier, gan): kept, per class, right
    arms: dict  # arm name → scores on the held-out test set
    val_balanced_accuracy: dict  # ratio of arm E → balanced accuracy on the validation images
    chosen_ratio: float
    gan_run: str


@dataclass
class SettingSamples:
    """The tensors of one setting, for the quality measures and pictures; never written to JSON."""

    synthetic: dict  # generator name ("gan", "unlabeled", "plain") → its samples
    train: data.ImageSet


def run_setting(
    split: Split,
    shot,
    seed: int,
    preset: Preset,
    out: Path,
    device: str,
    progress: bool,
    coverage: Optional[float] = None,
    augment_file: Optional[Path] = None,
    unlabeled: Optional[data.ImageSet] = None,
    init: Optional[InitConfig] = None,
    unlabeled_shares: Optional[str] = None,
) -> tuple:
    """Train the GANs and every arm's classifier for one (shot, seed). Returns (SettingResult, SettingSamples).
    ``unlabeled``: unlabelled images for the U and SELF arms; ``UNLABELED_REST`` takes the pool images outside
    this setting's draw. ``init``: the run our GANs start from (fit --init; the model's width is then the run's)."""
    pool = split.pool
    chosen = choose_training_images(pool, shot, seed)
    labels_known = unlabeled is UNLABELED_REST  # then how many pseudo-labels are right can be counted
    if unlabeled is UNLABELED_REST:
        unlabeled = rest_of_pool(pool, chosen)
    train, val = carve_validation(pool.subset(chosen), seed)
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    x_val, y_val = data.uint8_to_tanh(val.images), val.labels.numpy()
    k = pool.num_classes
    is_imbalanced = imbalanced(train)

    # The GANs see this setting's training images only.
    def train_gan(name: str, train_cfg: TrainConfig, options: dict, unlabeled_images=None, start=None) -> Sampler:
        directory = out / "runs" / f"{name}shot{str(shot).replace('%', 'pct')}-seed{seed}"
        run.fit(
            directory,
            train,
            train_cfg,
            options if start else {"width": preset.width, **options},
            unlabeled=unlabeled_images,
            init=start,
            pseudo_options=pseudo_options,
            device=device,
            force=True,
            progress=progress,
            sample_every=max(1, preset.gan_steps // 4),
            checkpoint_every=preset.gan_steps,
        )
        return Sampler(directory, device="cpu")

    pseudo_options = UnlabeledConfig(  # the labellers augment as the arms do: with the user's --augment file, if any
        pseudo_threshold=preset.pseudo_threshold,
        pseudo_steps=preset.pseudo_steps,
        labeller_steps=preset.labeller_steps,
        pseudo_augment=str(augment_file) if augment_file is not None else None,
        unlabeled_shares=unlabeled_shares,
    )
    t0 = time.time()
    ours = TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, lr=5e-4, seed=seed, coverage=coverage)
    gans = {"gan": train_gan("", ours, {}, start=init)}
    gan_seconds = time.time() - t0
    pseudo_record, pseudo_sets = None, {}
    if unlabeled is not None:  # the GAN that also learns from the unlabelled images, through pseudo-labels
        unlabeled = drop_labelled(unlabeled, train)
        gans["unlabeled"] = train_gan("unlabeled-", ours, {}, unlabeled, start=init)
        by_gan = read_pseudo_labels(gans["unlabeled"].path.parent)
        # Self-training's labels, the baseline: the classifier alone (the same seed, so the same classifier the
        # semi-supervised GAN started from)
        by_classifier = pseudo_label(train, unlabeled, replace(pseudo_options, pseudo_labeller="classifier"), seed=seed)
        pseudo_record = {}
        for source_name, labeller, pseudo in (("pseudo", "classifier", by_classifier), ("pseudo-gan", "gan", by_gan)):
            pseudo_sets[source_name] = pseudo_labelled(unlabeled, pseudo, train.class_names)
            record = pseudo_record[labeller] = pseudo.record(train.class_names)
            if labels_known:  # (--unlabeled-rest) how many are right
                record["right"] = round(float((unlabeled.labels[pseudo.index] == pseudo.labels).float().mean()), 4)
    if preset.reference:  # the tutorials' recipe, same budget: per-class DCGANs, BCE, no DiffAugment, EMA or spectral norm
        gans["plain"] = train_gan(
            "plain-",
            TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, seed=seed, diffaug="", ema_decay=0.0, coverage=0.0),
            {"mode": "per-class" if k >= 2 else "unconditional", "spectral_norm": False},
        )
    y_syn = torch.arange(preset.n_synthetic) % k
    x_syn = {name: g.sample(preset.n_synthetic, y_syn, seed=seed) for name, g in gans.items()}

    def source(name: str, aug, synthetic_augmented: bool):
        """What replaces a share of the batches: real images re-drawn (augmented like the rest of the batch,
        ``aug``), or a generator's images, through ``aug`` too where the arm says so."""
        if name == "real":
            return augmentation_.RealResampler(train, aug)
        if name in pseudo_sets:
            return augmentation_.RealResampler(pseudo_sets[name], aug)
        return augmentation_.AugmentedSamples(gans[name], aug) if synthetic_augmented and aug is not None else gans[name]

    def evaluate(model):  # on the held-out test set
        return scores(predict(model, x_test), y_test)

    def fit_clf(arm: Arm):
        return train_classifier(
            x_train, y_train, k, steps=preset.clf_steps, batch_size=preset.batch_size, seed=seed, batches=batches(arm)
        )

    # The classical pipeline: the user's (--augment), else the preset or none, whichever scores better on validation.
    augmentation_val = None
    augmentation = str(augment_file) if augment_file is not None else "preset"  # no file: validation decides, below
    make_aug = lambda: augmentation_.pipeline_or_preset(augment_file, pool.channels, seed)  # noqa: E731

    def batches(arm: Arm):
        """The arm's training batches: real (balanced or not), classically augmented, a share replaced."""
        ds = TensorDataset(x_train, y_train)
        weights = (
            (1.0 / torch.bincount(y_train, minlength=k).clamp(min=1).float())[y_train] if arm.balanced else torch.ones(len(ds))
        )
        draw = WeightedRandomSampler(
            weights, preset.clf_steps * preset.batch_size, replacement=True, generator=torch.Generator().manual_seed(seed)
        )
        loader = DataLoader(ds, batch_size=preset.batch_size, sampler=draw)
        aug = make_aug() if arm.classical and augmentation != "none" else None
        base = augmentation_.AugmentedBatches(loader, aug) if aug is not None else loader
        if not arm.mix:
            return iter(base)
        sources = [source(name, aug, arm.synthetic_augmented) for name in arm.mix]
        extra = sources[0] if len(sources) == 1 else augmentation_.SharedSource(sources)
        labels = "balanced" if is_imbalanced else "match"  # imbalanced data: the extra images top up the rare classes
        return iter(SyntheticMix(base, extra, ratio=arm.ratio, labels=labels, transform=data.unit_to_tanh, seed=seed))

    models = {"A real": fit_clf(ARMS[0])}
    if augment_file is None:
        with_preset = fit_clf(ARM_BY_NAME["B real+aug"])
        val_probs = {"none": predict(models["A real"], x_val), "preset": predict(with_preset, x_val)}
        augmentation_val = {name: scores(probs, y_val)["balanced_accuracy"] for name, probs in val_probs.items()}
        # The preset unless "none" did better beyond the validation's noise: a narrow win is no evidence against the
        # domain default. Before 0.9 a strict win chose "none"; where the test set could tell, that cost MNIST seeds
        # 5 and 3.8 points (one image of 20 or 10) and an X-ray seed 15 (validation: none 92.8, preset 92.4 on 777
        # images; the official test split differs from the train split), and was right once, by 7 points, on a
        # strawberry draw whose leaves the colour preset harms (docs/results.md, "Classical augmentation or none").
        augmentation = chosen_on_validation(val_probs, y_val, default="preset")
        models["B real+aug"] = with_preset if augmentation == "preset" else models["A real"]

    available = {"real", *gans, *pseudo_sets}
    for arm in ARMS:
        if arm.name in models or (arm.balanced and not is_imbalanced) or not arm.sources <= available:
            continue
        if arm.cas:
            models[arm.name] = train_classifier(x_syn[arm.cas], y_syn, k, steps=preset.clf_steps, seed=seed)
        else:
            models[arm.name] = fit_clf(arm)
    arms = {name: evaluate(m) for name, m in models.items()}

    # E: the ratio is chosen on the validation images; the test set plays no part.
    e_models = {0.0: models["B real+aug"], **{a.ratio: models[a.name] for a in ARMS if a.mix == ("gan",) and a.classical}}
    e_probs = {r: predict(m, x_val) for r, m in e_models.items()}
    val_scores = {r: scores(probs, y_val)["balanced_accuracy"] for r, probs in e_probs.items()}
    best = chosen_on_validation(e_probs, y_val, default=0.0)  # ratios in increasing order: ties to the smaller
    arms[CHOSEN.name] = evaluate(e_models[best])
    result = SettingResult(
        shot=shot,
        seed=seed,
        train_images=len(train),
        val_images=len(val),
        imbalanced=is_imbalanced,
        augmentation=augmentation,
        augmentation_val=augmentation_val,
        gan_seconds=round(gan_seconds, 1),
        pseudo_labels=pseudo_record,
        arms={a.name: arms[a.name] for a in (*ARMS, CHOSEN) if a.name in arms},  # in table order
        val_balanced_accuracy={str(r): v for r, v in val_scores.items()},
        chosen_ratio=best,
        gan_run=str(gans["gan"].path.parent),
    )
    return result, SettingSamples(x_syn, train)


def quality(split: Split, results: list, samples: list, preset: Preset, seed: int = 0) -> dict:
    """Feature-space measures for the first seed of each shot, against a judge trained on the whole pool."""
    pool = split.pool
    judge = train_classifier(data.uint8_to_tanh(pool.images), pool.labels, pool.num_classes, steps=preset.clf_steps, seed=seed)
    f_pool = embed(judge, data.uint8_to_tanh(pool.images[:5000]))

    def measures(x_syn: torch.Tensor, train: data.ImageSet) -> dict:
        f_syn = embed(judge, x_syn)
        precision, recall = metrics.precision_recall(f_pool[:2000], f_syn[:2000])
        memorization = metrics.memorization(
            x_syn[:2000], data.uint8_to_tanh(train.images), data.uint8_to_tanh(split.test.images[:2000])
        )
        return {"fid": metrics.fid(f_pool, f_syn), "kid": metrics.kid(f_pool, f_syn), "precision": precision,
                "recall": recall, "memorization": memorization}  # fmt: skip

    out = {}
    for r, s in zip(results, samples):
        if r.seed == results[0].seed:
            out[str(r.shot)] = measures(s.synthetic["gan"], s.train)
            if "unlabeled" in s.synthetic:  # near-copies of the *labelled* images, as for the GAN above
                out[str(r.shot)]["unlabeled_gan"] = measures(s.synthetic["unlabeled"], s.train)
    return out


def recommend_ratio(results: list) -> float:
    """The ratio of arm E with the best mean validation score over all settings (a ratio that was trained)."""
    ratios = sorted({float(r) for res in results for r in res.val_balanced_accuracy})
    mean = {r: statistics.mean(res.val_balanced_accuracy[str(r)] for res in results) for r in ratios}
    return max(ratios, key=lambda r: (mean[r], -r))


def bench(
    source: Optional[str],
    out,
    preset: str = "quick",
    size: int = 32,
    device: str = "auto",
    progress: bool = True,
    seeds: Optional[tuple] = None,
    coverage: Optional[float] = None,
    shots: Optional[tuple] = None,
    augment: Optional[str] = None,
    unlabeled: Optional[str] = None,
    unlabeled_rest: bool = False,
    unlabeled_shares: Optional[str] = None,
    classes: Optional[str] = None,
    init: InitConfig | str | None = None,
    gan_steps: Optional[int] = None,
) -> dict:
    """``unlabeled``: a source of unlabelled images for the SELF, U and SELF+U arms, or ``unlabeled_rest``: the
    pool images outside each setting's draw (for benchmarks on labelled data; the test set stays out);
    ``unlabeled_shares``: the class shares the labellers expect among them (fit --unlabeled-shares).
    ``shots``: the training sets to draw (see parse_shots); default the preset's n per class, or all
    images when the data are imbalanced (n-shot sets would erase the imbalance). ``augment``: a file of the
    user's albumentations pipeline (``A.save``) for the classical arms; default: the built-in preset or
    none, chosen on validation. ``classes``: bench on these classes only. ``init``: a run our GANs start from
    (fit --init), e.g. one fitted on related data; an InitConfig to freeze D's first blocks too. ``gan_steps``:
    every GAN's steps instead of the preset's (the classifiers keep theirs)."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset} is not one of {', '.join(PRESETS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; choose a new --out folder")
    if out.is_dir() and any(out.iterdir()):  # its report, plots and GAN runs would land among the user's files
        what = "holds a bench already" if (out / RESULTS).exists() else "is not empty"
        raise ConfigError(f"{out}: {what}; choose a new --out folder")
    outputs.check_writable(out, "--out")
    p = PRESETS[preset]
    if seeds:
        if len(set(seeds)) < len(seeds):
            raise ConfigError(f"--seeds {','.join(map(str, seeds))}: a seed given twice would count one result twice")
        p = dataclasses.replace(p, seeds=tuple(seeds))
    if gan_steps is not None:
        if gan_steps < 1:
            raise ConfigError(f"--gan-steps {gan_steps} must be ≥ 1")
        p = dataclasses.replace(p, gan_steps=gan_steps)
    augment_file = Path(augment) if augment else None
    if augment_file is not None:
        augmentation_.load_pipeline(augment_file)  # a bad file fails now, before hours of training
    if unlabeled and unlabeled_rest:
        raise ConfigError("give --unlabeled SOURCE or --unlabeled-rest, not both")
    split = split_data(source, size, classes=classes)  # before anything is written: bad data leaves no trace
    if split.pool.num_classes < 2:
        raise ConfigError(
            f"{source or 'sklearn:digits'}: one class only; bench trains classifiers, so give labelled images of 2+ classes"
        )
    fit_steps = TrainConfig().steps
    if p.gan_steps < fit_steps:  # longer-trained GANs made better training data (docs/results.md)
        split.notes.append(
            f"the GANs train {p.gan_steps} steps, fewer than fit's {fit_steps}: the arms with their images may "
            "understate a generator you fit yourself (--gan-steps; docs/results.md)"
        )
    init = InitConfig.of(init)
    if init.init:
        start = transfer.load_source(init.init)
        frozen = f", D's first {init.freeze_d} blocks fixed" if init.freeze_d else ""
        split.notes.append(f"our GANs start from {start.path} (step {start.state['step']}; fit --init{frozen})")
    else:
        init = None
    unlabeled_images = UNLABELED_REST if unlabeled_rest else None
    if unlabeled:
        unlabeled_images = load_unlabeled(unlabeled, split.pool)
        split.notes.append(f"unlabelled images: {unlabeled} ({len(unlabeled_images)})")
    elif unlabeled_rest:
        split.notes.append("unlabelled images: the pool images outside each setting's draw, their labels unused")
    if unlabeled_shares:
        if unlabeled_images is None:
            raise ConfigError("--unlabeled-shares describes unlabelled images: give --unlabeled SOURCE or --unlabeled-rest too")
        shares = expected_shares(split.pool, unlabeled_shares)  # a malformed or mismatched value fails now
        stated = ", ".join(f"{name} {share:.2f}" for name, share in zip(split.pool.class_names, shares.tolist()))
        split.notes.append(f"the labellers expect these class shares among the unlabelled images: {stated}")
    counts = split.pool.class_counts()
    asked = bool(shots)
    if not shots:
        shots = p.shots
        if imbalanced(split.pool):  # n-shot subsets would erase the imbalance the user has
            shots = ("all",)
            split.notes.append("imbalanced data: all training images used as given, with class-balanced arms")
    for shot in shots:
        if isinstance(shot, int) and shot > min(counts):
            name = split.pool.class_names[counts.index(min(counts))]
            whose = "" if asked else f" (the {preset} preset's)"
            raise ConfigError(
                f"--shots {shot}{whose}: class '{name}' has {min(counts)} images outside the held-out test set; "
                "give --shots at most that, or --shots all"
            )
    w = distributed.world()  # under torchrun: one setting per process in turn, one report from rank 0
    train_device = str(run.resolve_device(device, w))
    t0 = time.time()
    settings = [(shot, seed) for shot in shots for seed in p.seeds]
    distributed.start(w, torch.device("cpu"))  # gloo: only results travel between the processes
    distributed.gather(w, None)  # every process has checked --out before any writes in it
    writable_folder(out)
    with distributed.alone():  # each setting's GANs train in this process only
        mine = {
            i: run_setting(
                split,
                shot,
                seed,
                p,
                out,
                train_device,
                progress,
                coverage,
                augment_file,
                unlabeled_images,
                init,
                unlabeled_shares,
            )
            for i, (shot, seed) in enumerate(settings)
            if i % w.size == w.rank
        }
    merged = {i: d for part in distributed.gather(w, mine) for i, d in part.items()}
    done = [merged[i] for i in range(len(settings))]
    if not w.main:
        distributed.stop(w)
        return {}
    results, samples = [r for r, _ in done], [s for _, s in done]
    summary = report.summarize(results)
    metric = "balanced_accuracy" if any(r.imbalanced for r in results) else "accuracy"
    helped, lines = report.verdict(summary, metric, ARM_BY_NAME, CHOSEN.name)
    results_json = {
        "source": split.name,
        "preset": preset,
        "size": size,
        "test_images": len(split.test),
        "pool_images": len(split.pool),
        "primary_metric": metric,
        "recommended_ratio": recommend_ratio(results) if helped else 0.0,
        "chosen_ratio_per_seed": [r.chosen_ratio for r in results],
        "augmentation_per_seed": [r.augmentation for r in results],
        "synthetic_helped": helped,
        "arms": {a.name: dataclasses.asdict(a) for a in (*ARMS, CHOSEN)},
        "summary": summary,
        "quality": quality(split, results, samples, p),
        "notes": split.notes,
        "settings": [dataclasses.asdict(r) for r in results],
        "wall_seconds": round(time.time() - t0, 1),
        "env": {
            **environment(),
            "device": device,
            "preset": p.__dict__,
        },
    }
    outputs.write(out / RESULTS, lambda f: f.write(json.dumps(results_json, indent=2, default=str).encode()))
    plots.plot_gain(summary, metric, out / "gain.png")
    plots.plot_neighbours(
        samples[0].synthetic["gan"], data.uint8_to_tanh(samples[0].train.images), out / "nearest_neighbours.png"
    )
    results_json["sample_grids"] = copy_sample_grids(results, out)
    text = report.render(results_json, lines)
    outputs.write(out / REPORT, lambda f: f.write(text.encode()))
    distributed.stop(w)
    return results_json


def copy_sample_grids(results: list, out: Path) -> dict:
    """The last sample grid of each shot setting's first GAN, beside the report (the runs may not be kept)."""
    grids = {}
    for r in results:
        name = f"samples_{str(r.shot).replace('%', 'pct')}.png"
        found = sample_grids(Path(r.gan_run) / SAMPLES)
        if found and str(r.shot) not in grids:
            outputs.write(out / name, lambda f, grid=found[-1][1]: f.write(grid.read_bytes()))
            grids[str(r.shot)] = name
    return grids
