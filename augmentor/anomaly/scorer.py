"""Anomaly scores from a trained GAN (higher = more anomalous).

Each method is one score or a z-score average of several (``METHODS``):
- ``features`` (default): cosine distance of D's last features to the nearest normal image's. Cosine, not
  Euclidean: the length of the feature vector follows brightness and contrast.
- ``mahalanobis``: Mahalanobis distance of the mean and spread of every D block's activations, Gaussian
  (Ledoit-Wolf shrinkage) fitted on the normal images.
- ``residual``: f-AnoGAN's izi_f residual, |x − G(E(x))|² + κ·|f_D(x) − f_D(G(E(x)))|², with an encoder E
  trained on the normal images (encoder.py); ``heatmaps`` shows where it is.
- ``fused``: the z-scores of ``features`` and ``mahalanobis`` averaged, each calibrated on normal images kept
  out of the references.
- ``discriminator``: minus D's logit (for a conditional model, of the class finding the image most real).

Every method but ``discriminator`` compares with the normal images: ``fit(normal_images)`` computes what it
needs once, and ``save`` keeps it in the run (anomaly.npz, encoder.onnx) so that ``score --model RUN`` needs
no training images. Inference goes through the exported ONNX files with onnxruntime; a run directory that
has only checkpoints falls back to torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import data
from ..errors import ConfigError, ModelFileError
from ..onnx.metadata import find_model, read_metadata
from ..onnx.sessions import LazySession
from ..store import checkpoint, outputs
from ..store.rundir import ANOMALY, CHECKPOINTS, CONFIG, MODEL_FILES


@dataclass(frozen=True)
class Method:
    components: tuple  # the scores it averages (as z-scores calibrated on held-out normal images when several)
    summary: str  # for --help


METHODS = {
    "features": Method(("features",), "cosine distance of D's features to the nearest normal image's"),
    "fused": Method(("features", "mahalanobis"), "features and mahalanobis averaged as z-scores"),
    "mahalanobis": Method(("mahalanobis",), "distance of D's activation statistics from the normal images'"),
    "residual": Method(("residual",), "f-AnoGAN's reconstruction residual (trains an encoder once)"),
    "discriminator": Method(("discriminator",), "minus D's logit; needs no normal images"),
}


DEFAULT_METHOD = "features"  # the best over both datasets of benchmarks/anomaly.py (tests/test_anomaly.py holds it)
SCORED_SPLIT = "test"  # of an .npz / IDX source: the images a model did not train on
COMPARED = ("features", "mahalanobis", "residual")  # the components that compare with normal images
ENCODER_STEPS = 500  # izi_f steps: 500 at batch 64 (~20 s on one CPU core at 32 px, width 32)
CALIBRATION_SHARE = 0.1  # of the normal images, held out of the references to calibrate the z-scores
MAX_REFERENCES = 4096  # nearest-neighbour bank kept in anomaly.npz (float16)
MIN_NORMAL = 20


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method {name!r} is not one of {', '.join(METHODS)}")
    return METHODS[name]


class AnomalyScorer:
    """``AnomalyScorer(run).fit(normal_images).score(images)``; ``model``: a run directory or an augmentor
    ONNX file (a generator or an encoder finds its discriminator). A run that kept its references (anomaly.npz)
    scores without ``fit``."""

    def __init__(self, model, method: str = DEFAULT_METHOD, chunk: int = 256):
        self.method, self.chunk = method, chunk
        self.components = _method(method).components
        self.threshold: Optional[float] = None
        path = Path(model)
        self.run_dir = next((p for p in (path, path.parent) if p.is_dir() and (p / CONFIG).exists()), None)
        self._torch = None  # (config, G, D, checkpoint state) of the newest checkpoint, loaded when needed
        if path.is_file() or (path.is_dir() and (path / MODEL_FILES["discriminator"]).exists()):
            d_path = find_model(path, "discriminator")
            self.meta = read_metadata(d_path)
            self.source = d_path
            self._sessions = {"discriminator": LazySession(d_path, "cpu")}
            g_path = d_path.with_name(self.meta["pair"]) if self.meta.get("pair") else None
            if g_path is not None and g_path.is_file():
                self._sessions["generator"] = LazySession(g_path, "cpu")
        elif path.is_dir() and checkpoint.latest_good(path / CHECKPOINTS) is not None:
            cfg = self._torch_models()[0]
            self.meta = {"size": cfg.size, "channels": cfg.channels, "class_names": list(cfg.class_names), "mode": cfg.mode}
            self.meta["step"] = checkpoint.latest_good(path / CHECKPOINTS)[1]["step"]
            self._sessions = {}
            self.source = path
        else:
            raise ModelFileError(
                f"{model}: no discriminator here (expected a run directory or discriminator.onnx); train with augmentor fit"
            )
        self.num_classes = len(self.meta["class_names"])
        self.conditional = self.meta["mode"] != "unconditional"
        self.references: dict = {}  # what fit computed: features bank, Gaussian, calibration
        self._encoder = None  # torch module or LazySession
        # where fit's references are kept: the run, or beside an exported discriminator (export copies them there)
        self.saved_in = self.run_dir or (self.source.parent if self.source.is_file() else None)
        if self.saved_in is not None:
            self._load_saved()

    # ------------------------------------------------------------------ models

    def _torch_models(self) -> tuple:
        if self._torch is None:
            from ..onnx.export import load_models

            found = checkpoint.latest_good(self.run_dir / CHECKPOINTS) if self.run_dir else None
            if found is None:
                raise ConfigError(
                    f"{self.source}: the encoder is trained from the run's checkpoints; give the run directory fit wrote"
                )
            self._torch = (*load_models(found[1]), found[1])
        return self._torch[:3]

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

    def _discriminate(self, x: torch.Tensor, labels: torch.Tensor) -> tuple:
        """(logits (N,), features (N, F), layer stats (N, S)) for one chunk."""
        if "discriminator" in self._sessions:
            outs = self._sessions["discriminator"].get().run(None, {"image": x.numpy(), "label": labels.numpy()})
            if len(outs) < 3:
                raise ModelFileError(f"{self.source}: exported by augmentor < 0.3; export it again: augmentor export RUN")
            return tuple(torch.from_numpy(o) for o in outs)
        D = self._torch_models()[2]
        with torch.no_grad():
            return D(x, labels), D.features(x, labels).flatten(1), D.layer_stats(x, labels)

    def _reconstruct(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """G(E(x)) for one chunk: through onnxruntime where the files are, else torch."""
        if self._encoder is None:
            raise ConfigError(f"method {self.method!r} needs the encoder: scorer.fit(normal_images) first")
        if isinstance(self._encoder, LazySession):
            z = torch.from_numpy(self._encoder.get().run(None, {"image": x.numpy(), "label": labels.numpy()})[0])
        else:
            with torch.no_grad():
                z = self._encoder(x, labels)
        if "generator" in self._sessions:
            return torch.from_numpy(self._sessions["generator"].get().run(None, {"z": z.numpy(), "label": labels.numpy()})[0])
        with torch.no_grad():
            return self._torch_models()[1](z, labels)

    # ------------------------------------------------------------------ raw scores

    def _discriminate_best(self, x: torch.Tensor) -> tuple:
        """D's outputs for one chunk under the class that finds each image most real: (logit, features,
        layer stats, that class)."""
        per_class = [
            self._discriminate(x, torch.full((len(x),), c, dtype=torch.long))
            for c in range(self.num_classes if self.conditional else 1)
        ]
        best = torch.stack([p[0] for p in per_class]).argmax(0)
        rows = torch.arange(len(x))
        return (*(torch.stack([p[j] for p in per_class])[best, rows] for j in range(3)), best)

    def _raw(self, x: torch.Tensor, components, maps: bool = False) -> dict:
        """Each asked component per image (higher = more anomalous); with ``maps``, the reconstruction and the
        pixel residual map too."""
        from .encoder import KAPPA

        out = {k: [] for k in (*sorted(components), *(("reconstruction", "residual_map") if maps else ()))}
        for i in range(0, len(x), self.chunk):
            xc = x[i : i + self.chunk]
            logit, feats, stats, best = self._discriminate_best(xc)
            if "discriminator" in out:
                out["discriminator"].append(-logit)
            if "features" in out:
                normed = torch.nn.functional.normalize(feats, dim=1)
                out["features"].append(1 - (normed @ self._need("features").float().T).max(1).values)
            if "mahalanobis" in out:
                centred = stats - self._need("stats_mean")
                out["mahalanobis"].append(((centred @ self._need("stats_precision")) * centred).sum(1).clamp_min(0).sqrt())
            if "residual" in out or maps:
                recon = self._reconstruct(xc, best)
                pixel_map = (xc - recon).pow(2).mean(1)
                if "residual" in out:
                    feature_residual = (feats - self._discriminate(recon, best)[1]).pow(2).mean(1)
                    out["residual"].append(pixel_map.mean((1, 2)) + KAPPA * feature_residual)
                if maps:
                    out["reconstruction"].append(recon)
                    out["residual_map"].append(pixel_map)
        return {k: torch.cat(v) for k, v in out.items()}

    def _need(self, key: str) -> torch.Tensor:
        if key not in self.references:
            raise ConfigError(f"method {self.method!r} needs the normal training images first: scorer.fit(normal_images)")
        return self.references[key]

    # ------------------------------------------------------------------ fit, save, load

    def fit(
        self,
        normal_images,
        labels=None,
        encoder: Optional[bool] = None,
        encoder_steps: Optional[int] = None,
        progress: bool = False,
    ) -> AnomalyScorer:
        """Compute what the method compares with from normal images: D's features and layer statistics of 90 %
        of them, the encoder (trained on the same 90 %) when the method needs it or ``encoder`` is True, and
        each score's mean and spread on the other 10 % (the z-scores' calibration, on images the references
        never saw). ``labels``: the normal images' classes, for a conditional model's encoder."""
        x = self._prepare(normal_images)
        if len(x) < MIN_NORMAL:
            raise ConfigError(f"{len(x)} normal images; anomaly scores need at least {MIN_NORMAL}")
        labels = torch.zeros(len(x), dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_calibration = max(5, int(len(x) * CALIBRATION_SHARE))
        calibration, reference = order[:n_calibration], order[n_calibration:]
        parts = [self._discriminate_best(x[reference[i : i + self.chunk]]) for i in range(0, len(reference), self.chunk)]
        feats, stats = (torch.cat([o[j] for o in parts]) for j in (1, 2))
        from sklearn.covariance import LedoitWolf

        gaussian = LedoitWolf().fit(stats.double().numpy())
        self.references = {
            "features": torch.nn.functional.normalize(feats[:MAX_REFERENCES], dim=1).half(),
            "stats_mean": torch.from_numpy(gaussian.location_).float(),
            "stats_precision": torch.from_numpy(gaussian.precision_).float(),
            "step": torch.tensor(self.meta.get("step", -1)),
        }
        if ("residual" in self.components) if encoder is None else encoder:
            self.train_encoder(x[reference], labels[reference], encoder_steps or ENCODER_STEPS, progress)
        compared = COMPARED if self._encoder is not None else tuple(c for c in COMPARED if c != "residual")
        for name, values in self._raw(x[calibration], compared).items():
            self.references[f"{name}_mean"] = values.mean()
            self.references[f"{name}_std"] = values.std().clamp_min(1e-8)
        return self

    def train_encoder(self, images: torch.Tensor, labels: torch.Tensor, steps: int, progress: bool = False):
        """izi_f (encoder.py) against the run's newest checkpoint."""
        from tqdm.auto import tqdm

        from .encoder import train_encoder

        cfg, G, D = self._torch_models()
        if self._torch[3]["step"] != self.meta["step"]:
            raise ConfigError(
                f"{self.source}: older than the run's newest checkpoint; export it again: augmentor export {self.run_dir}"
            )
        with tqdm(
            total=steps, desc="encoder", unit="step", disable=None if progress else True, leave=False
        ) as bar:  # None: off without a terminal
            self._encoder = train_encoder(G, D, cfg, images, labels, steps, bar=bar)

    def save(self, folder: Optional[Path] = None) -> Path:
        """Keep the references (anomaly.npz) and the encoder (encoder.onnx, parity-checked) in the run, so
        that later scores need no normal images."""
        if folder is None and self.run_dir is None:
            raise ConfigError(f"{self.source} is not inside a run directory: give save() a folder")
        folder = Path(folder or self.run_dir)
        if not self.references:
            raise ConfigError("nothing to save: scorer.fit(normal_images) first")
        arrays = {k: v.numpy() for k, v in self.references.items()}
        if self.run_dir is not None and folder.resolve() == self.run_dir.resolve():  # the run's own: fit --force removes them
            outputs.claim(folder / ANOMALY, folder / MODEL_FILES["encoder"])
        outputs.write(folder / ANOMALY, lambda f: np.savez(f, **arrays))
        if self._encoder is not None and not isinstance(self._encoder, LazySession):
            from ..onnx.export import export_encoder

            cfg = self._torch_models()[0]
            export_encoder(self._encoder, folder / MODEL_FILES["encoder"], cfg, self._torch[3])
            self._encoder = LazySession(folder / MODEL_FILES["encoder"], "cpu")  # score as the CLI will: onnxruntime
        return folder / ANOMALY

    def _load_saved(self) -> None:
        path = self.saved_in / ANOMALY
        if not path.is_file():
            return
        try:
            with np.load(path) as saved:
                references = {k: torch.from_numpy(saved[k]) for k in saved.files}
        except (OSError, ValueError, EOFError, KeyError):
            return  # not references augmentor kept: computed again where the run lets score write them
        if "step" not in references:
            return
        if int(references["step"]) != self.meta.get("step", -1):
            return  # computed for another checkpoint: fit again
        self.references = references
        encoder = self.saved_in / MODEL_FILES["encoder"]
        if encoder.is_file() and "residual_mean" in references:
            meta = read_metadata(encoder)
            if all(meta[k] == self.meta.get(k) for k in ("step", "size", "channels")):  # else: one of another model
                self._encoder = LazySession(encoder, "cpu")

    @property
    def ready(self) -> bool:
        """True when every score of the method can be computed without fit."""
        needs = {"features": "features", "mahalanobis": "stats_mean", "residual": "residual_mean"}
        return all(needs[c] in self.references for c in self.components if c in needs) and (
            "residual" not in self.components or self._encoder is not None
        )

    # ------------------------------------------------------------------ scores

    def score(self, images) -> np.ndarray:
        return self.scores(images, {self.method: METHODS[self.method]})[self.method]

    def scores(self, images, methods: dict) -> dict:
        """Several methods' scores at once ({name: Method}), each component computed once (for benchmarks)."""
        raw = self._raw(self._prepare(images), {c for m in methods.values() for c in m.components})
        out = {}
        for name, m in methods.items():
            if len(m.components) == 1:
                out[name] = raw[m.components[0]].numpy()
            else:
                z = [(raw[c] - self._need(f"{c}_mean")) / self._need(f"{c}_std") for c in m.components]
                out[name] = torch.stack(z).mean(0).numpy()
        return out

    def heatmaps(self, images) -> tuple:
        """(reconstructions G(E(x)) in [-1, 1], pixel residual maps (N, H, W)): where the image is not one
        the generator can make."""
        raw = self._raw(self._prepare(images), (), maps=True)
        return raw["reconstruction"], raw["residual_map"]

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
