"""What lies on disk and how it is opened: the run-directory layout, the ONNX metadata schema, and the
onnxruntime sessions (providers, threads, fork safety). ``Sampler``, ``AnomalyScorer``, ``export`` and
``run`` all go through here, so there is one way to find a model and one way to open it.

run/
  config.json        data, model and training configs, data fingerprint, versions (the run's source of truth)
  holdout.json       which images were held out of training
  pseudo_labels.json with --unlabeled: the unlabelled images kept for the GAN, their pseudo-labels and confidence
  checkpoints/       ckpt_XXXXXX.pt, the newest --keep-checkpoints (each embeds the same configs)
  samples/           step_XXXXXX.png grids (one row per class); progress.gif the grids as an animation
  log.jsonl          losses every few steps; losses.png, diversity.png the same as plots
  generator.onnx     discriminator.onnx: written by export at the end
  encoder.onnx       anomaly.npz: written by anomaly scoring on first use (the encoder, the normal images' references)
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from . import __version__, outputs
from .errors import ConfigError, ModelFileError

log = logging.getLogger("augmentor")

CONFIG = "config.json"
HOLDOUT = "holdout.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
PSEUDO_LABELS = "pseudo_labels.json"  # with --unlabeled: which unlabelled images were kept, with which label
MODEL_FILES = {"generator": "generator.onnx", "discriminator": "discriminator.onnx", "encoder": "encoder.onnx"}
ANOMALY = "anomaly.npz"  # what anomaly scores compare with: normal images' D features and statistics, calibration
LOSSES_PLOT, DIVERSITY_PLOT, PROGRESS_GIF = "losses.png", "diversity.png", "progress.gif"
LOCK = ".lock"  # held by the fit writing the run (its process id)
# Every name a run writes at its top
FP16_FILES = tuple(name.replace(".onnx", "-fp16.onnx") for name in MODEL_FILES.values())  # export --fp16
RUN_FILES = (
    CONFIG,
    HOLDOUT,
    LOG,
    PSEUDO_LABELS,
    ANOMALY,
    LOSSES_PLOT,
    DIVERSITY_PLOT,
    PROGRESS_GIF,
    *MODEL_FILES.values(),
    *FP16_FILES,
)
CHECKPOINT_NAME = re.compile(r"^ckpt_(\d{6,})\.pt$")
SAMPLE_NAME = re.compile(r"^step_(\d{6,})\.png$")
# What a run writes in each of its folders: these names, and names of this pattern
RUN_LAYOUT = {".": (RUN_FILES, None), CHECKPOINTS: ((), CHECKPOINT_NAME), SAMPLES: ((), SAMPLE_NAME)}
RUN_SECTIONS = ("augmentor_version", "data", "model", "train")  # what every run's config.json holds


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:06d}.pt"


def sample_name(step: int) -> str:
    return f"step_{step:06d}.png"


def sample_grids(folder) -> list:
    """A run's sample grids in ``folder``, oldest step first, as (step, path)."""
    folder = Path(folder)
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := SAMPLE_NAME.match(p.name))] if folder.is_dir() else []
    return sorted(found)


def is_run(out) -> bool:
    """Whether ``out`` holds an augmentor run: a config.json with the sections every run writes."""
    try:
        config = json.loads((Path(out) / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and all(k in config for k in RUN_SECTIONS)


def run_files(out) -> dict:
    """{folder of the run ("." for its top): the names augmentor wrote there}. A run from before the manifests
    (augmentor 0.10 and older) listed nothing: its files are the ones named as a run names them."""
    out = Path(out)
    if not (out / outputs.MANIFEST).exists() and is_run(out):  # legacy: the one place names decide
        return {
            sub: {
                p.name for p in (out / sub).iterdir() if p.is_file() and (p.name in names or (pattern and pattern.match(p.name)))
            }
            if (out / sub).is_dir()
            else set()
            for sub, (names, pattern) in RUN_LAYOUT.items()
        }
    return {sub: outputs.listed(out / sub) for sub in RUN_LAYOUT}


def run_files_in_the_way(out, ours: dict) -> list:
    """What a run in ``out`` would write over that augmentor did not write (``ours``: run_files(out))."""
    out = Path(out)
    found = []
    for sub, (names, pattern) in RUN_LAYOUT.items():
        folder = out / sub
        if folder.exists() and not folder.is_dir():
            found.append(folder)
        else:
            found += outputs.in_the_way(folder, names, pattern, ours[sub])
    return found


def adopt_run_files(out, ours: dict) -> None:
    """List ``ours`` in the run's manifests: a legacy run is adopted before it is written again."""
    for sub, names in ours.items():
        for name in sorted(names):
            outputs.claim(Path(out) / sub / name)


def remove_run_files(out, ours: dict) -> None:
    """Remove what a run wrote in ``out`` (``ours``: run_files(out)), and its subfolders if nothing else is left."""
    out = Path(out)
    for sub in RUN_LAYOUT:
        outputs.remove_listed(out / sub, ours[sub])
        if sub != ".":
            outputs.remove_empty(out / sub)


# ------------------------------------------------------------------ ONNX metadata

FORMAT = "1"
PREFIX = "augmentor."
INT_FIELDS = ("size", "channels", "nz", "step", "unlabeled_images")
# key → what it says; every augmentor ONNX file carries all of them
METADATA_FIELDS = {
    "format": "metadata schema version",
    "kind": "generator, discriminator or encoder",
    "mode": "conditional, per-class or unconditional",
    "class_names": "JSON list; label i is class_names[i]",
    "size": "image side in pixels",
    "channels": "1 or 3",
    "nz": "noise dimension of the generator's z input",
    "value_range": "of images in and out: -1,1",
    "precision": "fp32 or fp16 arithmetic (inputs and outputs are float32 either way)",
    "augmentor_version": "the version that exported it",
    "data_fingerprint": "hash of the training images",
    "step": "training step of the checkpoint",
    "pair": "file name of the other model of the same export (generator ↔ discriminator; an encoder's discriminator)",
    "unlabeled_images": "pseudo-labelled unlabelled images the generator also learnt from (0: none)",
    "init": "the checkpoint training started from (fit --init), with its step and data fingerprint; empty: from scratch",
}


def encode_metadata(values: dict) -> dict:
    missing = set(METADATA_FIELDS) - set(values) - {"format"}
    if missing:
        raise ValueError(f"metadata lacks {sorted(missing)}")
    out = {"format": FORMAT, **values}
    return {PREFIX + k: (json.dumps(list(v)) if k == "class_names" else str(v)) for k, v in out.items()}


def read_metadata(path) -> dict:
    """Our metadata of an ONNX file, values decoded. Raises ModelFileError for a file that is not ours."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        run = path.parent if (path.parent / CONFIG).exists() else "RUN_DIR"
        raise ModelFileError(f"{path}: not an ONNX file, or a truncated one; export it again: augmentor export {run}") from None
    meta = {p.key[len(PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    if "format" not in meta:
        raise ModelFileError(
            f"{path}: an ONNX model not made by augmentor (no augmentor metadata); export one with `augmentor export RUN`"
        )
    if meta["format"] != FORMAT:
        raise ModelFileError(f"{path}: augmentor ONNX format {meta['format']} is not supported by this version ({__version__})")
    try:
        meta["class_names"] = json.loads(meta["class_names"])
        meta.setdefault("unlabeled_images", "0")  # files exported before 0.2 did not say
        meta.setdefault("init", "")  # nor before 0.3
        for k in INT_FIELDS:
            meta[k] = int(meta[k])
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: damaged augmentor metadata ({e})") from None
    return meta


# ------------------------------------------------------------------ finding a model


def find_model(model, kind: str) -> Path:
    """The ``kind`` ("generator" | "discriminator") ONNX file of a run directory, or of an ONNX file: that
    file itself when it is of that kind, else the other model of the same export (its ``pair`` metadata)."""
    path = Path(model)
    if path.is_dir():
        found = path / MODEL_FILES[kind]
        if not found.exists():
            raise ModelFileError(f"{path}: no {MODEL_FILES[kind]} (export the run first: augmentor export {path})")
        return found
    meta = read_metadata(path)
    if meta["kind"] == kind:
        return path
    pair = path.with_name(meta.get("pair", "")) if meta.get("pair") else None
    if pair is None or not pair.is_file():
        raise ModelFileError(f"{path}: is an augmentor {meta['kind']}, not a {kind}, and its {kind} is not beside it")
    return pair


# ------------------------------------------------------------------ onnxruntime


def ort_cuda_usable() -> bool:
    """Only ask onnxruntime for CUDA where there is a GPU: onnxruntime-gpu logs an error otherwise. When torch
    sees a GPU that onnxruntime cannot use, say so once: sampling then runs on the CPU, much slower."""
    import torch

    if not torch.cuda.is_available():
        return False
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return True
    global _warned_no_cuda_ep
    if not _warned_no_cuda_ep:
        _warned_no_cuda_ep = True
        log.warning(
            "torch sees a CUDA GPU but this onnxruntime has no CUDA provider, so sampling runs on the CPU; "
            "fix: pip uninstall onnxruntime && pip install onnxruntime-gpu"
        )
    return False


_warned_no_cuda_ep = False


def resolve_ort_device(device: str) -> str:
    """ "auto" → "cuda" when onnxruntime can use a GPU, else "cpu"; a bad or unusable device is refused."""
    if device == "auto":
        return "cuda" if ort_cuda_usable() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device {device!r} is not one of auto, cpu, cuda")
    if device.startswith("cuda") and not ort_cuda_usable():
        raise ConfigError(f"device {device}: no GPU that onnxruntime can use here; use device='cpu'")
    return device


class LazySession:
    """An onnxruntime session made on first use and made again in a new process, so an object holding one
    can be handed to DataLoader workers (forked or spawned): each worker opens its own."""

    def __init__(self, path: Path, device: str = "cpu"):
        self.path, self.device = Path(path), device
        self._session, self._pid = None, None

    def get(self):
        if self._session is None or self._pid != os.getpid():
            import onnxruntime as ort
            import torch

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, torch.get_num_threads())  # 1 in DataLoader workers
            opts.log_severity_level = 3
            if self.device.startswith("cuda"):
                index = int(self.device.split(":")[1]) if ":" in self.device else 0
                providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
            else:
                providers = ["CPUExecutionProvider"]
            self._session = ort.InferenceSession(str(self.path), opts, providers=providers)
            self._pid = os.getpid()
        return self._session

    def __getstate__(self):  # picklable for spawn-started workers: the session is rebuilt there
        return {**self.__dict__, "_session": None, "_pid": None}
