"""`augmentor bench`: the classifier gain of synthetic data against real data and honest controls."""

from __future__ import annotations

from .runner import bench, copy_sample_grids, quality, recommend_ratio  # noqa: F401
