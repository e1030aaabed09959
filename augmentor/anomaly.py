"""Anomaly scores from a trained GAN (higher = more anomalous).

Each method is one score or a z-score average of several (``METHODS``; their one-class AUROC on held-out
images: benchmarks/anomaly.py, docs/results.md "Anomaly scores"):
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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import checkpoint, data, outputs
from .errors import ConfigError, ModelFileError, cannot_write, writable_folder
from .modelfiles import ANOMALY, CHECKPOINTS, CONFIG, MODEL_FILES, LazySession, find_model, read_metadata, run_files
from .plots import heatmap_names, plot_roc, write_heatmaps

log = logging.getLogger("augmentor")


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
            from .export import load_models

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
            for name in (ANOMALY, MODEL_FILES["encoder"]):
                outputs.claim(folder / name)
        outputs.write(folder / ANOMALY, lambda f: np.savez(f, **arrays))
        if self._encoder is not None and not isinstance(self._encoder, LazySession):
            from .export import export_encoder

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


def training_images(run_dir: Path) -> data.ImageSet:
    """The normal images a run was trained on, rebuilt from its config (for method="features")."""
    from .run import read_config, stored_training_images

    cfg = read_config(run_dir)
    if cfg["data"].get("in_memory"):
        raise ConfigError(f"{run_dir}: was trained on in-memory images; use the Python API and AnomalyScorer.fit")
    return stored_training_images(Path(run_dir), cfg)[1]


def score_dataset(
    model,
    source: str,
    out: Path,
    method: str = DEFAULT_METHOD,
    split: str = "test",
    normal_classes: Optional[str] = None,
    heatmaps: Optional[Path] = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Score every image of a data source into a CSV (path or index, label, score). With ``normal_classes``,
    also AUROC / AUPRC (anomaly = any other class), a per-class table and an ROC plot beside the CSV
    (OUT.roc.png); with ``heatmaps``, one picture per image (image, reconstruction, residual), most anomalous
    first. Every input and every file it writes is checked before the first write; ``force`` replaces the CSV
    and its ROC plot, and heat maps an earlier score wrote, never other files."""
    import csv
    import io

    out = Path(out)
    roc_path = out.with_suffix(".roc.png")
    heatmaps = Path(heatmaps) if heatmaps is not None else None
    for path in (out, roc_path) if normal_classes else (out,):
        if path.exists() and not force:
            raise ConfigError(f"{path}: exists; choose another --out (or --force to replace it)")
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; give --out a file name (e.g. scores.csv)")
    if heatmaps is not None and heatmaps.is_dir() and any(heatmaps.iterdir()) and not force:
        raise ConfigError(f"{heatmaps}: not empty; choose a new --heatmaps folder (or --force to write beside what is there)")
    outputs.check_writable(out.parent, "--out")  # before the scoring, which can take minutes
    if heatmaps is not None:
        outputs.check_writable(heatmaps, "--heatmaps")
    scorer = AnomalyScorer(model, method)
    ds = _load_matching(source, split, scorer)
    normal = _normal_classes(ds, normal_classes, source) if normal_classes else None
    if not scorer.ready or (heatmaps is not None and scorer._encoder is None):
        if scorer.run_dir is None:
            raise ConfigError(
                f"--method {method} needs the run directory (it computes the normal images' references once): "
                "give --model the folder fit wrote (an export made after one such score carries them), or --method discriminator"
            )
        in_the_way = outputs.in_the_way(scorer.run_dir, (ANOMALY, MODEL_FILES["encoder"]), ours=run_files(scorer.run_dir)["."])
        if in_the_way:
            raise ConfigError(
                f"{in_the_way[0]}: a file augmentor did not write, where score keeps the run's references; move it away"
            )
        train = training_images(scorer.run_dir)
        log.info("computing what scores compare with from the %d training images (once; kept in %s)", len(train), scorer.run_dir)
        scorer.fit(data.uint8_to_tanh(train.images), train.labels, encoder=heatmaps is not None or None, progress=progress)
        scorer.save()
    x = data.uint8_to_tanh(ds.images)
    scores = scorer.score(x)
    files = None
    if heatmaps is not None:  # every heat map's name is known now: check them all before writing any
        names = [Path(p).stem if ds.paths else str(i) for i, p in enumerate(ds.paths or [None] * len(ds))]
        files = heatmap_names(scores, names, [ds.class_names[lab] for lab in ds.labels.tolist()])
        in_the_way = outputs.in_the_way(heatmaps, [name for _, name in files])
        if in_the_way:
            raise ConfigError(
                f"{in_the_way[0]}: a file augmentor did not write, where a heat map goes; choose a new --heatmaps folder"
            )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "label", "score"])
    for i, (lab, sc) in enumerate(zip(ds.labels.tolist(), scores.tolist())):
        writer.writerow([ds.paths[i] if ds.paths else i, ds.class_names[lab], f"{sc:.6g}"])
    try:
        writable_folder(out.parent)
        outputs.write(out, lambda f: f.write(buf.getvalue().encode()))
    except OSError as e:
        raise cannot_write(out, e) from None
    result = {"csv": out, "n": len(scores)}
    if normal is not None:
        result.update(_separation(ds, scores, normal))
        result["roc_plot"] = roc_path
        plot_roc(result["is_anomaly"], scores, result["auroc"], roc_path)
        del result["is_anomaly"]
    if heatmaps is not None:
        recon, maps = scorer.heatmaps(x)
        outputs.remove_listed(heatmaps)  # an earlier score's heat maps (only with --force: the folder was empty otherwise)
        result["heatmaps"] = write_heatmaps(ds.images, data.tanh_to_uint8(recon), maps, files, heatmaps)
    return result


def _normal_classes(ds: data.ImageSet, normal_classes: str, source: str) -> list:
    """The classes named normal, checked before anything is scored or written: both normal and other images needed."""
    normal = data.select_classes(ds, normal_classes, flag="--normal-classes").class_names
    present = {ds.class_names[lab] for lab in ds.labels.unique().tolist()}
    if not (present & set(normal)) or not (present - set(normal)):
        raise ConfigError(
            f"--normal-classes {normal_classes}: need both normal and other images in {source} to compute AUROC "
            f"(it has {', '.join(sorted(present))})"
        )
    return normal


def _load_matching(source: str, split: str, scorer: AnomalyScorer) -> data.ImageSet:
    """The images to score, at the model's size; gray images are repeated into color, color ones refused."""
    ds = data.load(source, size=scorer.meta["size"], split=split)
    if ds.channels == scorer.meta["channels"]:
        return ds
    if ds.channels == 1:
        return data.load(source, size=scorer.meta["size"], split=split, channels=scorer.meta["channels"])
    raise ConfigError(
        f"{source}: color images, but {scorer.source} was trained on gray ones; score gray images or train on color"
    )


def _separation(ds: data.ImageSet, scores: np.ndarray, normal) -> dict:
    """AUROC and AUPRC of normal against every other image, and per class: its mean score and its AUROC
    against the normal images."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    names = [ds.class_names[lab] for lab in ds.labels.tolist()]
    y = np.array([n not in normal for n in names])
    per_class = []
    for name in ds.class_names:
        mine = np.array([n == name for n in names])
        if not mine.any():
            continue
        row = {"class": name, "normal": name in normal, "n": int(mine.sum()), "mean_score": float(scores[mine].mean())}
        if name not in normal:
            both = mine | ~y
            row["auroc"] = float(roc_auc_score(y[both], scores[both]))
        per_class.append(row)
    return {
        "auroc": float(roc_auc_score(y, scores)),
        "auprc": float(average_precision_score(y, scores)),
        "per_class": per_class,
        "is_anomaly": y,
    }
