"""Pictures of a bench: the gain plot and the nearest real images of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..gan.pictures import grid_image, pyplot, save_figure
from ..store import outputs


def plot_gain(summary: dict, metric: str, path: Path) -> None:
    """The bench's arms per shot setting, mean with seed spread as error bars."""
    from .report import describe

    plt = pyplot()
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
    save_figure(fig, path)


def plot_neighbours(synthetic: torch.Tensor, train: torch.Tensor, path: Path, n: int = 8) -> None:
    """Top row: synthetic images (labels cycling through the classes); bottom row: the nearest training image
    to each (pixel features). Both in [-1, 1]."""
    from ..gan.metrics import pixel_features

    syn = synthetic[:n]
    nearest = torch.cdist(pixel_features(syn), pixel_features(train)).argmin(1)
    grid = grid_image(torch.cat([syn, train[nearest]]), rows=2)
    outputs.write(Path(path), lambda f: grid.save(f, format="PNG"))
