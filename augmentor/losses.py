"""Adversarial losses on raw logits, and the coverage term against within-class collapse."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # non-saturating: BCE on logits


def g_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()


def coverage(real: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
    """Mean over real images of the squared distance to the nearest of its K generated candidates.

    ``real`` (M, D), ``fakes`` (M, K, D) of the same class as each real image. Pulling the *nearest*
    candidate towards every training image (implicit maximum likelihood, Li & Malik 2018) keeps every
    training image reachable, so the generator cannot settle on one shape per class.
    """
    dist = (fakes - real[:, None]).pow(2).mean(dim=2)  # (M, K)
    return dist.min(dim=1).values.mean()
