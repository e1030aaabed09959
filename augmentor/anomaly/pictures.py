"""Pictures of anomaly scores: the ROC curve and per-image heat maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..gan.pictures import pyplot, save_figure
from ..store import outputs


def plot_roc(y, scores, auroc: float, path: Path) -> None:
    from sklearn.metrics import roc_curve

    plt = pyplot()

    fpr, tpr, _ = roc_curve(y, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    save_figure(fig, path)


def heatmap_names(scores, names, labels) -> list:
    """(image index, file name) of each heat map, by rank, most anomalous first."""
    from ..onnx.sampler import safe_name

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
    outputs.claim(*(folder / name for _, name in files))  # listed first, all at once: --force replaces only these
    for i, name in files:
        picture = Image.fromarray(panels[i]).resize((panels.shape[2] * zoom, panels.shape[1] * zoom), Image.NEAREST)
        outputs.atomic_write(folder / name, lambda f, picture=picture: picture.save(f, format="PNG"))
    return folder
