"""Unlabelled images as information the classifier lacks: pseudo-labels for the generator's training set.

A SmallCNN is trained on the labelled images (classical augmentation, class-balanced batches) and labels
every unlabelled image; by default a semi-supervised GAN (semisupervised.py) then starts from its confident
labels, learns from every unlabelled image, and labels them again. The confident ones (softmax ≥
``pseudo_threshold``) join the labelled images in the GAN's training set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .. import data
from ..config import UnlabeledConfig
from ..data import augmentation
from ..errors import DataError, ModelFileError
from ..store.rundir import PSEUDO_LABELS
from .calibration import LabelCheck, check_labels
from .shares import expected_shares, labelled_shares, reweighted

log = logging.getLogger("augmentor")


@dataclass
class PseudoLabels:
    """Which unlabelled images were kept (``index`` into the unlabelled set), with which label and confidence."""

    index: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor
    considered: int  # unlabelled images labelled (after dropping those also in the labelled set)
    check: Optional[LabelCheck] = None  # how far they can be trusted, from held-out labelled images
    seconds: Optional[float] = None  # how long the labelling took (every labeller it went through)

    def per_class(self, num_classes: int) -> list:
        return torch.bincount(self.labels, minlength=num_classes).tolist()

    def record(self, class_names) -> dict:
        """What config.json and log.jsonl say about them."""
        return {
            "considered": self.considered,
            "kept": len(self.index),
            "kept_per_class": dict(zip(class_names, self.per_class(len(class_names)))),
            "mean_confidence": round(float(self.confidence.mean()), 4) if len(self.index) else None,
            **({"check": self.check.record()} if self.check else {}),
            **({"seconds": self.seconds} if self.seconds is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(
            {"index": self.index.tolist(), "label": self.labels.tolist(), "confidence": [round(c, 5) for c in self.confidence.tolist()],
             "considered": self.considered, "check": self.check.record() if self.check else None, "seconds": self.seconds}
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> PseudoLabels:
        d = json.loads(text)
        return cls(torch.tensor(d["index"], dtype=torch.long), torch.tensor(d["label"], dtype=torch.long),
                   torch.tensor(d["confidence"]), d["considered"], LabelCheck(**d["check"]) if d.get("check") else None,
                   d.get("seconds"))  # fmt: skip


def _image_hashes(images: torch.Tensor) -> list:
    return [hashlib.blake2b(img.numpy().tobytes(), digest_size=12).digest() for img in images]


def load_unlabeled(source: str, labelled: data.ImageSet, split: str = "train", strict: bool = False) -> data.ImageSet:
    """The unlabelled images at the labelled images' size and channels, without any that are also labelled.
    A different channel count is refused (gray X-rays with colour photos is a mistake, not a conversion)."""
    images = data.load(source, labelled.size, None, split, strict)
    if images.channels != labelled.channels:
        raise DataError(
            f"--unlabeled {source}: {'colour' if images.channels == 3 else 'gray'} images, but the labelled ones are "
            f"{'colour' if labelled.channels == 3 else 'gray'}; give unlabelled images of the same kind"
        )
    return drop_labelled(images, labelled)


def drop_labelled(images: data.ImageSet, labelled: data.ImageSet) -> data.ImageSet:
    """``images`` without those that are also among the labelled images (pixel for pixel), with a warning."""
    labelled_hashes = set(_image_hashes(labelled.images))
    overlap = torch.tensor([h in labelled_hashes for h in _image_hashes(images.images)], dtype=torch.bool)
    if overlap.any():
        log.warning(
            f"--unlabeled {images.source}: {int(overlap.sum())} of its images are also labelled; they are used with their labels only"
        )
        images = images.subset(torch.nonzero(~overlap).flatten())
    if len(images) == 0:
        raise DataError(f"--unlabeled {images.source}: no unlabelled images left (all of them are among the labelled ones)")
    return images


def pseudo_label(
    labelled: data.ImageSet,
    unlabeled: data.ImageSet,
    cfg: UnlabeledConfig,
    seed: int = 0,
    device="cpu",
    validation: Optional[data.ImageSet] = None,
) -> PseudoLabels:
    """Keep the unlabelled images the pseudo-labeller is confident about, with its labels: the classifier
    trained on ``labelled``, then (``cfg.pseudo_labeller == "gan"``) the semi-supervised GAN that starts from
    the classifier's confident labels and learns from every unlabelled image (semisupervised.py). ``validation``:
    held-out labelled images, on which the final labeller's kept labels are checked (calibration.check_labels)."""
    if labelled.num_classes < 2:
        raise DataError("--unlabeled needs labelled images of at least 2 classes to learn labels from")
    shares = expected_shares(labelled, cfg.unlabeled_shares)
    started = time.time()
    held_out = validation.images if validation is not None else unlabeled.images[:0]
    images = torch.cat([unlabeled.images, held_out])  # one pass labels both

    def unlabelled_and_held_out(probs_of_images):
        return (reweighted(p, shares) for p in probs_of_images.split([len(unlabeled), len(held_out)]))

    probs, val_probs = unlabelled_and_held_out(classifier_probabilities(labelled, images, cfg, seed))
    pseudo = keep_confident(probs, shares, cfg.pseudo_threshold, "classifier")
    if cfg.pseudo_labeller == "gan":
        from .semisupervised import label_probabilities, train_labelling_gan

        gan = train_labelling_gan(
            labelled, unlabeled, unlabeled.images[pseudo.index], pseudo.labels, cfg.labeller_steps, seed,
            augment=cfg.pseudo_augment, shares=shares, device=device,
        )  # fmt: skip
        probs, val_probs = unlabelled_and_held_out(label_probabilities(gan, images))
        pseudo = keep_confident(probs, shares, cfg.pseudo_threshold, "semi-supervised GAN")
    if validation is not None:
        pseudo.check = check_labels(val_probs, validation.labels, probs[pseudo.index])
    pseudo.seconds = round(time.time() - started, 1)
    return pseudo


def classifier_probabilities(labelled: data.ImageSet, images: torch.Tensor, cfg: UnlabeledConfig, seed: int = 0):
    """The first labeller: a SmallCNN trained on ``labelled`` (classical augmentation, class-balanced batches, so
    it takes the classes as equally common), its class probabilities for ``images`` (uint8)."""
    from .classifier import predict, train_classifier

    aug = augmentation.pipeline_or_preset(cfg.pseudo_augment, labelled.channels, seed, "--pseudo-augment")
    x, y = data.uint8_to_tanh(labelled.images), labelled.labels
    with torch.random.fork_rng(devices=[]):  # the classifier seeds torch's global generator: not the user's
        model = train_classifier(
            x, y, labelled.num_classes, steps=cfg.pseudo_steps, seed=seed, balanced=True,
            augment=lambda xb, yb: (augmentation.augment_batch(aug, xb), yb), progress="pseudo-labelling classifier",
        )  # fmt: skip
        return torch.from_numpy(predict(model, data.uint8_to_tanh(images)))


def keep_confident(probs: torch.Tensor, shares, threshold: float, labeller: str) -> PseudoLabels:
    """The labels with confidence ≥ ``threshold``, and per class at most its expected number (expected share ×
    unlabelled images; the most confident first) where ``shares`` are given: a labeller that over-calls a rare
    class does so with its least sure labels."""
    confidence, labels = probs.max(1)
    keep = confidence >= threshold
    if not keep.any():
        raise DataError(
            f"--unlabeled: the {labeller} was not confident about any of the {len(probs)} unlabelled images "
            f"(highest {float(confidence.max()):.2f} < --pseudo-threshold {threshold}); lower it or label more images"
        )
    for k, share in enumerate([] if shares is None else shares.tolist()):
        called = torch.nonzero(keep & (labels == k)).flatten()
        expected = round(share * len(probs))
        if len(called) > expected:
            keep[called[confidence[called].argsort(descending=True)[expected:]]] = False
    kept = torch.nonzero(keep).flatten()
    return PseudoLabels(kept, labels[kept], confidence[kept], len(probs))


def kept_summary(pseudo: PseudoLabels, labelled: data.ImageSet, stated: Optional[str]) -> str:
    """The line fit logs after pseudo-labelling: what was kept per class and, when nothing told the labellers how
    the unlabelled images are split (an even labelled draw, no --unlabeled-shares), that they took it as even.
    The images alone do not reveal the split well enough to estimate it; the user may know it."""
    counts = pseudo.per_class(labelled.num_classes)
    share = [f"{name} {n} ({100 * n / max(len(pseudo.index), 1):.0f} %)" for name, n in zip(labelled.class_names, counts)]
    line = f"pseudo-labels: kept {len(pseudo.index)} of {pseudo.considered}: {', '.join(share)}"
    if pseudo.check is not None and pseudo.check.estimated_precision is not None:
        line += (
            f"; an estimated {100 * pseudo.check.estimated_precision:.0f} % of them right "
            f"(calibrated on {pseudo.check.validation_images} labelled validation images)"
        )
    if stated is None and labelled_shares(labelled, labelled.num_classes) is None:
        line += (
            "; the labelled classes are equally common, so the labellers took the unlabelled images to be too: "
            "if you know they are split otherwise, say so with --unlabeled-shares"
        )
    return line


def pseudo_labelled(unlabeled: data.ImageSet, pseudo: PseudoLabels, class_names) -> data.ImageSet:
    """The kept unlabelled images with their pseudo-labels."""
    return data.ImageSet(unlabeled.images[pseudo.index], pseudo.labels, list(class_names), f"pseudo-labelled {unlabeled.source}")


def with_pseudo_labelled(labelled: data.ImageSet, unlabeled: data.ImageSet, pseudo: PseudoLabels) -> data.ImageSet:
    """The GAN's training set: the labelled images, then the kept unlabelled ones with their pseudo-labels."""
    kept = pseudo_labelled(unlabeled, pseudo, labelled.class_names)
    return data.ImageSet(
        torch.cat([labelled.images, kept.images]),
        torch.cat([labelled.labels, kept.labels]),
        list(labelled.class_names),
        f"{labelled.source} + {kept.source}",
    )


def read_pseudo_labels(run_dir: Path) -> PseudoLabels:
    path = Path(run_dir) / PSEUDO_LABELS
    try:
        return PseudoLabels.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        why = "missing" if isinstance(e, FileNotFoundError) else "damaged"
        raise ModelFileError(
            f"{path}: {why}; the run cannot say which unlabelled images it kept (fit a new run with --unlabeled)"
        ) from None
