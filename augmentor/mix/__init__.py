"""Synthetic images into the pipeline you already have."""

from __future__ import annotations

from .dataset import OUTPUTS, SyntheticDataset, SyntheticReplace, as_sampler, to_output  # noqa: F401
from .loader import AUTO_POOL, SyntheticMix  # noqa: F401
