"""Anomaly scores from a trained discriminator (higher = more anomalous).

The methods, as measured by benchmarks/anomaly.py (one-class AUROC on held-out images; README):
- ``"features"`` (default): the distance of D's penultimate features to the nearest features of the
  normal training images (closer to f-AnoGAN's feature residual). MNIST mean 0.961, PneumoniaMNIST 0.467.
- ``"discriminator"``: minus D's logit; for a conditional model, the logit of the class that finds the
  image most real. Worse than chance as measured: MNIST 0.449, PneumoniaMNIST 0.432. Kept by name only.

Scores go through the exported ``discriminator.onnx`` with onnxruntime; a run directory that has only
checkpoints falls back to torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import checkpoint, data
from .errors import ConfigError, ModelFileError
from .modelfiles import CHECKPOINTS, CONFIG, MODEL_FILES, LazySession, find_model, read_metadata
from .plots import plot_roc


@dataclass(frozen=True)
class Method:
    needs_normal_images: bool  # scorer.fit(normal_images) first (score_dataset rebuilds them from the run)
    measured: str  # one-class AUROC, benchmarks/anomaly.py


METHODS = {
    "features": Method(True, "MNIST 0.961, PneumoniaMNIST 0.467"),
    "discriminator": Method(False, "MNIST 0.449, PneumoniaMNIST 0.432 (worse than chance)"),
}
DEFAULT_METHOD = "features"  # the best measured


class AnomalyScorer:
    """``AnomalyScorer(run).fit(normal_images).score(images)``; ``model``: a run directory or an augmentor
    ONNX file (a generator finds its discriminator)."""

    def __init__(self, model, method: str = DEFAULT_METHOD, chunk: int = 256):
        if method not in METHODS:
            raise ConfigError(f"method {method!r} is not one of {', '.join(METHODS)}")
        self.method, self.chunk = method, chunk
        self.reference: Optional[torch.Tensor] = None
        self.threshold: Optional[float] = None
        path = Path(model)
        onnx_path = None
        if path.is_file() or (path.is_dir() and (path / MODEL_FILES["discriminator"]).exists()):
            onnx_path = find_model(path, "discriminator")
        if onnx_path is not None:
            self.meta = read_metadata(onnx_path)
            self._session = LazySession(onnx_path, "cpu")
            self.torch_D = None
            self.source = onnx_path
        elif path.is_dir() and checkpoint.latest_good(path / CHECKPOINTS) is not None:  # torch fallback
            from .export import load_models

            state = checkpoint.latest_good(path / CHECKPOINTS)[1]
            cfg, _, self.torch_D = load_models(state)
            self.meta = {"size": cfg.size, "channels": cfg.channels, "class_names": list(cfg.class_names), "mode": cfg.mode}
            self._session = None
            self.source = path
        else:
            raise ModelFileError(
                f"{model}: no discriminator here (expected a run directory or discriminator.onnx); train with augmentor fit"
            )
        self.run_dir = next((p for p in (path, path.parent) if p.is_dir() and (p / CONFIG).exists()), None)
        self.num_classes = len(self.meta["class_names"])
        self.conditional = self.meta["mode"] != "unconditional"

    @property
    def image_shape(self) -> tuple:
        return (self.meta["channels"], self.meta["size"], self.meta["size"])

    def _prepare(self, images) -> torch.Tensor:
        x = torch.as_tensor(images)
        if x.dtype == torch.uint8:
            x = data.uint8_to_tanh(x)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"{self.source}: expects images of shape (N, {', '.join(map(str, self.image_shape))}); got {tuple(x.shape)}"
            )
        return x.float().contiguous()

    def _run(self, x: torch.Tensor, labels: torch.Tensor) -> tuple:
        """(logits (N,), features (N, F)) for one chunk."""
        if self._session is not None:
            logit, feats = self._session.get().run(None, {"image": x.numpy(), "label": labels.numpy()})
            return torch.from_numpy(logit), torch.from_numpy(feats)
        with torch.no_grad():
            return self.torch_D(x, labels), self.torch_D.features(x, labels).flatten(1)

    def _outputs(self, x: torch.Tensor) -> tuple:
        """Best logit over classes, and the features under that class."""
        logits, feats = [], []
        for i in range(0, len(x), self.chunk):
            xc = x[i : i + self.chunk]
            per_class = [
                self._run(xc, torch.full((len(xc),), c, dtype=torch.long))
                for c in range(self.num_classes if self.conditional else 1)
            ]
            lg = torch.stack([p[0] for p in per_class])  # (K, n)
            best = lg.argmax(0)
            logits.append(lg.max(0).values)
            ft = torch.stack([p[1] for p in per_class])  # (K, n, F)
            feats.append(ft[best, torch.arange(len(xc))])
        return torch.cat(logits), torch.cat(feats)

    def fit(self, normal_images) -> AnomalyScorer:
        """Remember the features of normal images (needed by method="features")."""
        self.reference = self._outputs(self._prepare(normal_images))[1]
        return self

    def score(self, images) -> np.ndarray:
        x = self._prepare(images)
        logits, feats = self._outputs(x)
        if self.method == "discriminator":
            return (-logits).numpy()
        if self.reference is None:
            raise ConfigError(f"method={self.method!r} needs the normal training images first: scorer.fit(normal_images)")
        return torch.cdist(feats, self.reference).min(dim=1).values.numpy()

    def calibrate(self, normal_images, false_positive_rate: float = 0.05) -> float:
        """Threshold at the given false-positive rate on held-out normal images."""
        if not 0 < false_positive_rate < 1:
            raise ConfigError(f"false_positive_rate {false_positive_rate} must be in (0, 1)")
        self.threshold = float(np.quantile(self.score(normal_images), 1 - false_positive_rate))
        return self.threshold

    def predict(self, images) -> np.ndarray:
        """True where an image scores above the calibrated threshold."""
        if self.threshold is None:
            raise ConfigError("call calibrate(normal_images) before predict()")
        return self.score(images) > self.threshold


def training_images(run_dir: Path) -> data.ImageSet:
    """The normal images a run was trained on, rebuilt from its config (for method="features")."""
    from .config import DataConfig
    from .run import prepare_data, read_config

    cfg = read_config(run_dir)
    if cfg["data"].get("in_memory"):
        raise ConfigError(f"{run_dir}: was trained on in-memory images; use the Python API and AnomalyScorer.fit")
    return prepare_data(DataConfig.from_dict(cfg["data"])).train


def score_dataset(
    model,
    source: str,
    out: Path,
    method: str = DEFAULT_METHOD,
    split: str = "test",
    normal_classes: Optional[str] = None,
    force: bool = False,
) -> dict:
    """Score every image of a data source into a CSV (path or index, label, score). With ``normal_classes``,
    also AUROC / AUPRC (anomaly = any other class) and an ROC plot beside the CSV."""
    import csv
    import io

    from sklearn.metrics import average_precision_score, roc_auc_score

    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out}: exists; choose another --out (or --force to overwrite it)")
    scorer = AnomalyScorer(model, method)
    ds = data.load(source, size=scorer.meta["size"], split=split)
    if ds.channels != scorer.meta["channels"]:
        ds = (
            data.load(source, size=scorer.meta["size"], split=split, channels=scorer.meta["channels"])
            if ds.channels == 1
            else None
        )
        if ds is None:
            raise ConfigError(
                f"{source}: color images, but {scorer.source} was trained on gray ones; score gray images or train on color"
            )
    if METHODS[method].needs_normal_images:
        if scorer.run_dir is None:
            raise ConfigError(
                f"--method {method} needs the run directory (it rebuilds the training images' features): "
                "give --model the folder fit wrote, or --method discriminator"
            )
        scorer.fit(data.uint8_to_tanh(training_images(scorer.run_dir).images))
    scores = scorer.score(data.uint8_to_tanh(ds.images))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "label", "score"])
    for i, (lab, sc) in enumerate(zip(ds.labels.tolist(), scores.tolist())):
        writer.writerow([ds.paths[i] if ds.paths else i, ds.class_names[lab], f"{sc:.6g}"])
    try:
        checkpoint.atomic_write(out, lambda f: f.write(buf.getvalue().encode()))
    except OSError as e:
        raise ConfigError(f"{out}: cannot write here ({e.strerror or e})") from None
    result = {"csv": out, "n": len(scores)}
    if normal_classes:
        normal = data.select_classes(ds, normal_classes).class_names  # validates the names
        y = np.array([ds.class_names[lab] not in normal for lab in ds.labels.tolist()])
        if y.all() or not y.any():
            raise ConfigError(
                f"--normal-classes {normal_classes}: need both normal and other images in {source} to compute AUROC"
            )
        result.update(auroc=float(roc_auc_score(y, scores)), auprc=float(average_precision_score(y, scores)))
        result["roc_plot"] = out.with_suffix(".roc.png")
        plot_roc(y, scores, result["auroc"], result["roc_plot"])
    return result
