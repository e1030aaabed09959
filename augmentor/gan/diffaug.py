"""Differentiable augmentation (Zhao et al. 2020, "DiffAugment"): color, translation, cutout.

Applied to real *and* fake images in both the D and the G step, so D never sees un-augmented images and
cannot memorize a tiny training set, while G still gets gradients through the augmentation. Random
parameters are drawn apart from applying them (``draw_params`` / ``apply``): seeded and testable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_params(ops, batch: int, size: int, generator: torch.Generator, device) -> dict:
    """Random parameters for one batch. Every op gets one draw per image."""

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=device)

    p = {}
    if "color" in ops:
        p["brightness"] = rand(batch, 1, 1, 1) - 0.5  # add [-0.5, 0.5)
        p["saturation"] = rand(batch, 1, 1, 1) * 2  # scale [0, 2)
        p["contrast"] = rand(batch, 1, 1, 1) + 0.5  # scale [0.5, 1.5)
    if "translation" in ops:
        shift = int(size * 0.125 + 0.5)  # up to 1/8 of the image
        p["shift"] = (rand(batch, 2) * (2 * shift + 1)).long() - shift  # (dy, dx) in [-shift, shift]
    if "cutout" in ops:
        half = int(size * 0.5 + 0.5)  # a square of half the image side
        p["cut_center"] = (rand(batch, 2) * (size + 1 - half % 2)).long()
        p["cut_size"] = half
    return p


def apply(x: torch.Tensor, p: dict) -> torch.Tensor:
    if "brightness" in p:
        x = x + p["brightness"]
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * p["saturation"] + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * p["contrast"] + mean
    if "shift" in p:
        x = _translate(x, p["shift"])
    if "cut_center" in p:
        x = x * _cutout_mask(x, p["cut_center"], p["cut_size"])
    return x


def diff_augment(x: torch.Tensor, ops, generator: torch.Generator) -> torch.Tensor:
    if not ops:
        return x
    return apply(x, draw_params(ops, x.shape[0], x.shape[-1], generator, x.device))


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels; what comes in from the border is zero."""
    B, C, H, W = x.shape
    padded = F.pad(x, [1, 1, 1, 1])  # one zero pixel all round; indices outside clamp onto it
    rows = (torch.arange(H, device=x.device)[None, :] - shift[:, :1] + 1).clamp(0, H + 1)  # (B, H)
    cols = (torch.arange(W, device=x.device)[None, :] - shift[:, 1:] + 1).clamp(0, W + 1)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout_mask(x: torch.Tensor, center: torch.Tensor, size: int) -> torch.Tensor:
    B, _, H, W = x.shape
    ys = torch.arange(H, device=x.device)[None, :] - center[:, :1]  # (B, H)
    xs = torch.arange(W, device=x.device)[None, :] - center[:, 1:]  # (B, W)
    inside_y = (ys >= -(size // 2)) & (ys < size - size // 2)
    inside_x = (xs >= -(size // 2)) & (xs < size - size // 2)
    cut = inside_y[:, :, None] & inside_x[:, None, :]  # (B, H, W)
    return (~cut).to(x.dtype)[:, None]
