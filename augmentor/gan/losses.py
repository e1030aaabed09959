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


def coverage(real: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from each real image (M, D) to the nearest of its K generated candidates (M, D).

    Pulling the *nearest* candidate towards every training image (implicit maximum likelihood, Li & Malik
    2018) keeps every training image reachable, so the generator cannot settle on one shape per class.
    The trainer picks the nearest candidate without gradients (Trainer.nearest_noise).
    """
    return (nearest - real).pow(2).mean()
