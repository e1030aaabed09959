"""The ONNX metadata schema, and finding a run's model files."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..errors import ModelFileError
from ..store import legacy
from ..store.rundir import CONFIG, MODEL_FILES

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
        meta = legacy.onnx_metadata(meta)
        meta["class_names"] = json.loads(meta["class_names"])
        for k in INT_FIELDS:
            meta[k] = int(meta[k])
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: damaged augmentor metadata ({e})") from None
    return meta


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
