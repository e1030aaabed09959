"""Pictures a person would rather look at than numbers: sample grids, the progress GIF, loss and diversity
curves, the bench's gain chart and nearest-neighbour pairs, ROC curves."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import outputs
from .data import convert_range, tanh_to_unit


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():  # class names in scripts the font lacks (e.g. CJK) show as boxes: no warning
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        outputs.write(Path(path), lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def plot_losses(log_path: Path, out: Path) -> None:
    plt = _pyplot()
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
    _save(fig, out)


def plot_diversity(log_path: Path, out: Path) -> None:
    """Per-class diversity ratio over training (1 ≈ as varied as the real images, near 0 = collapsed)."""
    plt = _pyplot()
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
    _save(fig, out)


def plot_gain(summary: dict, metric: str, path: Path) -> None:
    """The bench's arms per shot setting, mean with seed spread as error bars."""
    from .report import describe

    plt = _pyplot()
    shots = list(summary)
    arms = list(summary[shots[0]])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(arms) * len(shots)), 4))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        means = [100 * summary[s][arm][metric]["mean"] if arm in summary[s] else np.nan for s in shots]
        stds = [100 * summary[s][arm][metric]["std"] if arm in summary[s] else 0 for s in shots]
        ax.bar(np.arange(len(shots)) + i * width, means, width, yerr=stds, capsize=3, label=arm)
    ax.set_xticks(np.arange(len(shots)) + 0.4 - width / 2, [describe(s) for s in shots])
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    low = min(100 * summary[s][a][metric]["mean"] for s in shots for a in summary[s])
    ax.set_ylim(max(0, low - 10), 100)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_neighbours(synthetic: torch.Tensor, train: torch.Tensor, path: Path, n: int = 8) -> None:
    """Top row: synthetic images (labels cycling through the classes); bottom row: the nearest training image
    to each (pixel features). Both in [-1, 1]."""
    from .metrics import pixel_features

    syn = synthetic[:n]
    nearest = torch.cdist(pixel_features(syn), pixel_features(train)).argmin(1)
    grid = grid_image(torch.cat([syn, train[nearest]]), rows=2)
    outputs.write(Path(path), lambda f: grid.save(f, format="PNG"))


def plot_roc(y, scores, auroc: float, path: Path) -> None:
    from sklearn.metrics import roc_curve

    plt = _pyplot()

    fpr, tpr, _ = roc_curve(y, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    _save(fig, path)


def heatmap_names(scores, names, labels) -> list:
    """(image index, file name) of each heat map, by rank, most anomalous first."""
    from .sampler import safe_name

    width = len(str(len(scores)))
    return [
        (int(i), safe_name(f"{rank + 1:0{width}d}_{labels[i]}_{names[i]}", str(rank + 1)) + ".png")
        for rank, i in enumerate(np.argsort(-np.asarray(scores)))
    ]


def write_heatmaps(images, reconstructions, maps, files: list, folder: Path) -> Path:
    """One PNG per image — the image, what the generator makes of it, where they differ (inferno, one scale
    for all) — at ``files`` (heatmap_names). ``images``/``reconstructions``: uint8 (N, C, H, W)."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    scale = float(np.quantile(maps.numpy(), 0.999)) or 1.0
    heat = matplotlib.colormaps["inferno"](np.clip(maps.numpy() / scale, 0, 1))[..., :3]  # (N, H, W, 3)
    heat = (heat * 255).astype(np.uint8)

    def gray_to_rgb(x: np.ndarray) -> np.ndarray:
        return np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x

    panels = np.concatenate(
        [gray_to_rgb(images.numpy()).transpose(0, 2, 3, 1), gray_to_rgb(reconstructions.numpy()).transpose(0, 2, 3, 1), heat],
        axis=2,
    )  # (N, H, 3W, 3)
    zoom = max(1, 128 // images.shape[-1])
    for i, name in files:
        picture = Image.fromarray(panels[i]).resize((panels.shape[2] * zoom, panels.shape[1] * zoom), Image.NEAREST)
        outputs.write(folder / name, lambda f, picture=picture: picture.save(f, format="PNG"), own=True)
    return folder
