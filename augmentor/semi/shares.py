"""The class shares the labellers expect among unlabelled images, and probabilities reweighted by them."""

from __future__ import annotations

from typing import Optional

import torch

from .. import data
from ..config import parse_shares
from ..errors import DataError


def labelled_shares(labelled: data.ImageSet, num_classes: int):
    """The labelled images' class shares, the best estimate of the unlabelled images' own; None when the classes
    are equally common (an n-per-class draw is a choice, not an estimate: nothing is corrected then)."""
    counts = torch.bincount(labelled.labels, minlength=num_classes).float()
    return None if bool((counts == counts[0]).all()) else counts / counts.sum()


def expected_shares(labelled: data.ImageSet, stated: Optional[str] = None):
    """The class shares the labellers expect among the unlabelled images: the user's (--unlabeled-shares, every
    class named), else the labelled images' (labelled_shares): an equal draw of labelled images from imbalanced
    unlabelled ones otherwise makes the labellers over-call the rare classes."""
    if stated is None:
        return labelled_shares(labelled, labelled.num_classes)
    shares = parse_shares(stated)
    names = list(labelled.class_names)
    if set(shares) != set(names):
        unknown, missing = sorted(set(shares) - set(names)), [n for n in names if n not in shares]
        what = f"unknown class {', '.join(unknown)}" if unknown else f"no share for {', '.join(missing)}"
        raise DataError(f"--unlabeled-shares {stated}: {what}; name every class of the labelled images ({', '.join(names)})")
    return torch.tensor([shares[n] for n in names])


def reweighted(probs: torch.Tensor, shares) -> torch.Tensor:
    """Both labellers learn from class-balanced batches, so their probabilities take the classes as equally
    common. Reweighted by the expected class ``shares`` (Saerens et al. 2002; None: unchanged, bit-identical), a
    rare class is over-called less."""
    if shares is None:
        return probs
    weighted = probs * shares.to(probs.dtype)
    return weighted / weighted.sum(1, keepdim=True)
