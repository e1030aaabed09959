"""Anomaly scores from a trained GAN's discriminator and generator."""

from __future__ import annotations

from .scorer import AnomalyScorer  # noqa: F401
