"""FixMatch (Sohn et al. 2020), the method a user with unlabelled images would pick instead of a GAN labeller.

Each step adds μ unlabelled images per labelled one: the classifier's prediction on a weak view of an unlabelled
image becomes the target for a strong view of it wherever the prediction is at least THRESHOLD confident, so a
label is learnt only if it survives a heavy distortion. Trained with the bench's classifier, steps and labelled
batches (train_classifier's ``extra_loss``)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import data
from ..data.augmentation import augment_batch

THRESHOLD = 0.95  # the paper's: a target only where the weak view is this sure
MU_CHOICES = (1, 3)  # unlabelled images per labelled one; the bench picks on validation (3 unless 1 is clearly better)
# How far the strong view's ops go, as a share of RandAugment's largest magnitudes: torchvision's default
# magnitude (9 of 30 bins), as in the reference this arm is checked against; the full range fell further short of
# it on leaf photos.
STRENGTH = 0.3


def strong_augmentation(channels: int, seed: int = 0):
    """RandAugment as FixMatch uses it, in albumentations: two of its photometric and geometric ops, each at a
    random strength up to STRENGTH of RandAugment's largest, then one cutout of up to half the side, filled with
    mid-gray."""
    import albumentations as A

    s = STRENGTH
    ops = [
        A.NoOp(),
        A.AutoContrast(method="pil", p=1.0),  # RandAugment's linear stretch; albumentations' default equalizes
        A.Equalize(p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.9 * s, contrast_limit=0.0, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.9 * s, p=1.0),
        A.Sharpen(alpha=(0.0, 0.9 * s), p=1.0),
        A.Posterize(num_bits=(8 - round(4 * s), 8), p=1.0),
        A.Solarize(threshold_range=(1.0 - s, 1.0), p=1.0),
        A.Affine(rotate=(-30 * s, 30 * s), p=1.0),
        A.Affine(shear={"x": (-17 * s, 17 * s), "y": (0, 0)}, p=1.0),
        A.Affine(shear={"x": (0, 0), "y": (-17 * s, 17 * s)}, p=1.0),
        A.Affine(translate_percent={"x": (-0.45 * s, 0.45 * s), "y": (0, 0)}, p=1.0),
        A.Affine(translate_percent={"x": (0, 0), "y": (-0.45 * s, 0.45 * s)}, p=1.0),
    ]
    if channels == 3:  # PIL's "Color": saturation
        ops.append(A.ColorJitter(brightness=0, contrast=0, saturation=(1 - 0.9 * s, 1 + 0.9 * s), hue=0, p=1.0))
    cutout = A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.05, 0.5), hole_width_range=(0.05, 0.5), fill=128, p=1.0)
    return A.Compose([A.SomeOf(ops, n=2, p=1.0), cutout], seed=seed)


class ConsistencyLoss:
    """The unlabelled term of a step, for train_classifier(extra_loss=...): μ × batch unlabelled images drawn with
    replacement, weak and strong views, masked cross-entropy of the strong view against the weak view's label. One
    forward pass over the labelled batch and both views, as FixMatch's own code does: batch norm then normalises
    labelled and unlabelled images with the same statistics, as it will at test time.
    ``known``: fixed targets for some unlabelled images (index → class, −1 for none; FIX+G: the GAN labeller's
    confident labels), used where the classifier's own weak view is not yet sure."""

    def __init__(self, unlabeled: torch.Tensor, batch: int, weak, strong, seed: int, known: Optional[torch.Tensor] = None):
        self.unlabeled, self.batch, self.weak, self.strong = unlabeled, batch, weak, strong
        self.known = known
        self.g = torch.Generator().manual_seed(seed)
        self.kept = []  # per step: the share of the drawn images that had a target

    def draw(self) -> tuple:
        """A step's unlabelled images: (their indices, weak views, strong views)."""
        idx = torch.randint(len(self.unlabeled), (self.batch,), generator=self.g)
        x = data.uint8_to_tanh(self.unlabeled[idx])
        return idx, augment_batch(self.weak, x), augment_batch(self.strong, x)

    def state_dict(self) -> dict:
        return {"kept": torch.stack(self.kept).cpu() if self.kept else torch.zeros(0)}

    def load_state_dict(self, state: dict) -> None:
        self.kept = list(state["kept"])

    def __call__(self, model, labelled: torch.Tensor) -> tuple:
        """(the labelled images' logits, this step's unlabelled loss)."""
        idx, weak, strong = self.draw()
        device = labelled.device
        logits = model(torch.cat([labelled, weak.to(device), strong.to(device)]))
        labelled_logits, logits = logits[: len(labelled)], logits[len(labelled) :]
        with torch.no_grad():
            confidence, target = F.softmax(logits[: len(idx)].float(), 1).max(1)
            mask = confidence >= THRESHOLD
            if self.known is not None:
                given = self.known[idx].to(device)
                target = torch.where(mask | (given < 0), target, given)
                mask = mask | (given >= 0)
        self.kept.append(mask.float().mean().detach())
        loss = F.cross_entropy(logits[len(idx) :], target, reduction="none")
        return labelled_logits, (loss * mask).mean()

    def share_with_targets(self, last: int = 50) -> float:
        """The share of the drawn unlabelled images that had a target, over the last ``last`` steps."""
        return round(float(torch.stack([k.cpu() for k in self.kept[-last:]]).mean()), 4) if self.kept else 0.0
