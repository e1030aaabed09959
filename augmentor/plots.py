"""Pictures a person would rather look at than numbers: sample grids, the progress GIF, loss curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import tanh_to_uint8


def grid_image(images: torch.Tensor, rows: int) -> Image.Image:
    """(N, C, H, W) in [-1, 1] → one PIL image, ``rows`` rows (one per class), 2-pixel gaps."""
    x = tanh_to_uint8(images.detach().cpu())
    n, c, h, w = x.shape
    cols = -(-n // rows)
    pad = 2
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = (
            x[i].permute(1, 2, 0).numpy()
        )
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if img.width < 256:  # small digits are hard to see: enlarge with crisp pixels
        scale = max(1, 256 // img.width)
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img


def write_gif(frames: list, path: Path, ms_per_frame: int = 300) -> None:
    images = [Image.open(f).convert("RGB") for f in frames]
    if images:
        images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)


def plot_losses(log_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss_d" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [r["step"] for r in rows]
    for key in ("loss_d", "loss_g", "coverage"):
        if any(r.get(key) for r in rows):
            ax.plot(steps, [r.get(key, float("nan")) for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_diversity(log_path: Path, out: Path) -> None:
    """Per-class diversity ratio over training (1 ≈ as varied as the real images, near 0 = collapsed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("diversity")]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name in rows[-1]["diversity"]:
        ax.plot([r["step"] for r in rows], [r["diversity"].get(name, float("nan")) for r in rows], label=name)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("sample / real spread")
    ax.set_title("within-class diversity (per class)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
