"""Shared by the studies: where the real datasets are, the seeded MNIST pool/test split, environment facts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from augmentor import data
from augmentor.gain.protocol import environment as run_environment

DATASETS = Path(os.environ.get("AUGMENTOR_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def require(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        sys.exit(f"error: {path} not found; set AUGMENTOR_DATASETS to the folder holding the shared datasets")
    return path


def mnist_pool_test(size: int = 32, seed: int = 0):
    """MNIST test set split 5,000 pool / 5,000 test, stratified and seeded (the findings' protocol)."""
    full = data.load(str(require("mnist-t10k")), size=size)
    pool, test = data.stratified_split(full, 0.5, seed)
    return full, full.subset(pool), full.subset(test)


def environment() -> dict:
    return {**run_environment(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
