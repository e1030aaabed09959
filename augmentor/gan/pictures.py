"""Pictures of training: sample grids, the progress animation, loss and diversity plots."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from PIL import Image

from ..data.images import convert_range, tanh_to_unit
from ..store import outputs


def grid_image(images: torch.Tensor, rows: int) -> Image.Image:
    """(N, C, H, W) in [-1, 1] → one PIL image, ``rows`` rows (one per class), 2-pixel white gaps."""
    from torchvision.utils import make_grid

    x = images.detach().cpu().float()
    n, c = x.shape[:2]
    grid = make_grid(tanh_to_unit(x), nrow=-(-n // rows), padding=2, pad_value=1.0)  # 3 channels, also for gray
    arr = convert_range(grid, "unit", "uint8").permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    if img.width < 256:  # small digits are hard to see: enlarge with crisp pixels
        scale = max(1, 256 // img.width)
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img


def write_gif(frames: list, path: Path, ms_per_frame: int = 300) -> None:
    images = [Image.open(f).convert("RGB") for f in frames]
    if images:
        outputs.write(
            Path(path),
            lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0),
        )


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():  # class names in scripts the font lacks (e.g. CJK) show as boxes: no warning
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        outputs.write(Path(path), lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def plot_losses(log_path: Path, out: Path) -> None:
    plt = pyplot()
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
    save_figure(fig, out)


def plot_diversity(log_path: Path, out: Path) -> None:
    """Per-class diversity ratio over training (1 ≈ as varied as the real images, near 0 = collapsed)."""
    plt = pyplot()
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
    save_figure(fig, out)
