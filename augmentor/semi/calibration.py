"""How far a labeller's kept labels can be trusted, from labelled images it did not learn from.

Labellers trained on a few images are overconfident: a mean confidence near 1 can sit on labels of which many are
wrong. Temperature scaling (Guo et al. 2017) fitted on held-out labelled images softens their
probabilities until they match how often the labeller is right there; the mean softened confidence of the kept
labels then estimates their precision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch

PRECISION_WARNING = 0.9  # below this estimate, a user is told the kept labels may cost accuracy
MIN_VALIDATION = 20  # fewer held-out images than this cannot tell 85 % right from 99 %
TEMPERATURES = torch.logspace(-0.6, 1.0, 161)  # 0.25 to 10: an undertrained labeller is underconfident
# log T's prior spread around 1 (the labeller's own confidence): a small flawless validation set would otherwise drive
# T to its floor and every estimate to 100 %, though 20 right answers cannot tell 98 % right from 100 %
LOG_TEMPERATURE_SD = 0.5


@dataclass(frozen=True)
class LabelCheck:
    """A labeller's kept labels, checked against ``validation_images`` held-out labelled images."""

    validation_images: int
    validation_accuracy: Optional[float]  # the labeller's share right on them
    temperature: float
    estimated_precision: Optional[float]  # the kept labels' mean calibrated confidence (None: nothing kept)

    def record(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def warning(
        self,
        labeller: str,
        advice: str = "label more images, raise --pseudo-threshold, or compare recipes with augmentor bench --unlabeled",
    ) -> Optional[str]:
        """One line for the user when the kept labels may not be trustworthy, else None; ``advice``: what to do then."""
        if self.validation_images < MIN_VALIDATION:
            return (
                f"{labeller}: only {self.validation_images} labelled validation images, too few to estimate how many of "
                "its kept labels are right; look through some of them (augmentor pseudo-labels) before relying on them"
            )
        if self.estimated_precision is not None and self.estimated_precision < PRECISION_WARNING:
            return (
                f"{labeller}: an estimated {100 * self.estimated_precision:.0f} % of its kept labels are right "
                f"(calibrated on {self.validation_images} labelled validation images); wrong labels can cost accuracy: {advice}"
            )
        return None


def unchecked_warning(labelled_images: int) -> str:
    """The line for labels that could not be checked: a fifth of the labelled images is under MIN_VALIDATION."""
    return (
        f"pseudo-labels: not checked: a fifth of {labelled_images} labelled images is too few to estimate how many "
        "of the kept labels are right; look through some of them (augmentor pseudo-labels) before relying on them"
    )


def fit_temperature(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T (of TEMPERATURES) under which softmax(log p / T) gives the held-out labels the highest
    likelihood, times a log-normal prior on T around 1: many held-out images move T where they point, a few barely."""
    log_p = probs.double().clamp_min(1e-12).log()
    t = TEMPERATURES.double()
    nll = torch.stack([torch.nn.functional.cross_entropy(log_p / ti, labels, reduction="sum") for ti in t])
    return float(TEMPERATURES[int((nll + t.log() ** 2 / (2 * LOG_TEMPERATURE_SD**2)).argmin())])


def calibrated(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    return (probs.double().clamp_min(1e-12).log() / temperature).softmax(1).to(probs.dtype)


def check_labels(val_probs: torch.Tensor, val_labels: torch.Tensor, kept_probs: torch.Tensor) -> LabelCheck:
    """``val_probs``: the labeller's probabilities for the held-out labelled images (labels ``val_labels``);
    ``kept_probs``: its probabilities for the unlabelled images it kept."""
    val_labels = val_labels.long()
    if len(val_labels) == 0:
        return LabelCheck(0, None, 1.0, None)
    temperature = fit_temperature(val_probs, val_labels)
    precision = float(calibrated(kept_probs, temperature).max(1).values.mean()) if len(kept_probs) else None
    return LabelCheck(
        validation_images=len(val_labels),
        validation_accuracy=float((val_probs.argmax(1) == val_labels).float().mean()),
        temperature=temperature,
        estimated_precision=precision,
    )
