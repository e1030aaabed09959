"""The bench's protocol: the held-out test set, the draws, the validation choices and their statistics."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from .. import __version__, data
from ..data.augmentation import AugmentedBatches
from ..gan.train import resolve_precision
from ..mix.loader import SyntheticMix
from ..semi.classifier import Checkpoints, SmallCNN, train_classifier

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


RECALL_CLASSES = 4  # up to this many classes, each one's recall is a metric too (more would not fit a table)


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro-F1; AUROC with two classes; each class's recall (``recall_K``, K its
    index) with up to RECALL_CLASSES: on imbalanced data the rare class's is the one to watch."""
    pred = probs.argmax(1)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
    }
    if probs.shape[1] == 2 and len(np.unique(y)) == 2:
        out["auroc"] = float(roc_auc_score(y, probs[:, 1]))
    if probs.shape[1] <= RECALL_CLASSES:
        out.update({f"recall_{k}": float((pred[y == k] == k).mean()) for k in range(probs.shape[1]) if (y == k).any()})
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
    going to the earlier in ``val_probs``."""
    balanced = {c: scores(probs, y)["balanced_accuracy"] for c, probs in val_probs.items()}
    beyond_noise = [c for c in val_probs if c == default or clearly_better(val_probs[c], val_probs[default], y)]
    return max(beyond_noise, key=balanced.__getitem__)  # max keeps the first of equals


def imbalanced(images: data.ImageSet) -> bool:
    """A class has over 1.5× the images of another: the bench then adds class-balanced arms, lets the extra images
    top up the rare classes and keeps every training image (n-shot draws would erase the imbalance)."""
    counts = images.class_counts()
    return max(counts) > 1.5 * max(1, min(counts))


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


def classifier_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    preset,
    seed: int,
    *,
    balanced: bool = False,
    augment=None,
    extra=None,
    ratio: float = 0.0,
    labels: str = "match",
    device: str = "cpu",
):
    """The batches every arm's classifier trains on: ``preset.clf_steps`` batches of ``preset.batch_size`` images
    drawn with replacement from ``x`` (tanh range), each class equally often when ``balanced``; through the
    classical pipeline ``augment`` (albumentations, or None); with ``extra`` (a Sampler, RealResampler or
    SharedSource) replacing a share ``ratio`` of each batch (``labels`` as SyntheticMix's), mixed on ``device``
    (a GPU: the batches are copied ahead and the generator samples there). An iterator of (x, y)."""
    weights = (1.0 / torch.bincount(y, minlength=num_classes).clamp(min=1).float())[y] if balanced else torch.ones(len(y))
    draw = WeightedRandomSampler(
        weights, preset.clf_steps * preset.batch_size, replacement=True, generator=torch.Generator().manual_seed(seed)
    )
    batches = DataLoader(TensorDataset(x, y), batch_size=preset.batch_size, sampler=draw)
    if augment is not None:
        batches = AugmentedBatches(batches, augment)
    if extra is not None:
        on = None if device == "cpu" else device  # the CPU: batches stay where the loader made them
        batches = SyntheticMix(batches, extra, ratio=ratio, labels=labels, transform=data.unit_to_tanh, seed=seed, device=on)
    return iter(batches)


def train_protocol_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    preset,
    seed: int,
    device: str = "cpu",
    progress: Optional[str] = None,
    checkpoints: Optional[Checkpoints] = None,
    **batches,
) -> SmallCNN:
    """The bench's classifier (SmallCNN, ``preset.clf_steps`` steps, on ``device``; ``progress``: its progress bar's
    label; ``checkpoints``: train_classifier's) on ``classifier_batches(..., **batches)``: what a study calls to
    measure what the bench measures."""
    return train_classifier(
        x,
        y,
        num_classes,
        steps=preset.clf_steps,
        batch_size=preset.batch_size,
        seed=seed,
        batches=classifier_batches(x, y, num_classes, preset, seed, device=device, **batches),
        device=device,
        progress=progress,
        checkpoints=checkpoints,
    )
