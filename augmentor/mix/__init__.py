"""Synthetic images into the pipeline you already have."""

from __future__ import annotations

from .dataset import SyntheticDataset, SyntheticReplace  # noqa: F401
from .loader import SyntheticBatch, SyntheticMix  # noqa: F401
from .pseudo import PseudoLabelMix  # noqa: F401
