"""Checkpoints that describe themselves (weights + configs + versions), written atomically, loaded
with ``torch.load(weights_only=True)``: no pickle, nothing executed on load."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from .. import __version__
from ..errors import ModelFileError
from . import outputs
from .rundir import CHECKPOINT_NAME

log = logging.getLogger("augmentor")

FORMAT_VERSION = 1
REQUIRED = ("format_version", "step", "model_config", "train_config", "G", "D", "G_ema")


def save(path: Path, payload: dict) -> None:
    payload = {"format_version": FORMAT_VERSION, "augmentor_version": __version__, **payload}
    outputs.write(path, lambda f: torch.save(payload, f), own=True)


def load(path: Path, map_location="cpu") -> dict:
    """Load and verify one checkpoint. Raises ModelFileError (torn, foreign or newer format)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: not a readable augmentor checkpoint (torn or foreign file: {first[:120]})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise ModelFileError(f"{path}: not an augmentor checkpoint (missing fields)")
    if not isinstance(state["format_version"], int) or state["format_version"] > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: checkpoint format {state['format_version']} is newer than this augmentor "
            f"({__version__}, format {FORMAT_VERSION}); upgrade augmentor to read it"
        )
    return state


def list_checkpoints(folder: Path) -> list:
    """Checkpoint files in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_good(folder: Path, map_location="cpu") -> Optional[tuple]:
    """(path, state) of the newest checkpoint that loads; torn ones are reported and passed over."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load(path, map_location)
        except ModelFileError as e:
            log.warning(f"{e}; trying the one before")
    return None
