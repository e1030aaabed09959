"""Anomaly scores from a trained GAN's discriminator and generator."""

from __future__ import annotations

from .score import score_dataset, training_images  # noqa: F401
from .scorer import (  # noqa: F401
    CALIBRATION_SHARE,
    COMPARED,
    DEFAULT_METHOD,
    ENCODER_STEPS,
    MAX_REFERENCES,
    METHODS,
    MIN_NORMAL,
    AnomalyScorer,
    Method,
)
