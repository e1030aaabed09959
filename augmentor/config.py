"""Frozen configs for a run: what data, which model, how to train. Each maps to and from a plain dict
(config.json, checkpoints), so a run directory or a checkpoint rebuilds everything from the file alone."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from .data import SUPPORTED_SIZES
from .errors import ConfigError

MODES = ("conditional", "per-class", "unconditional")
LOSSES = ("ns", "hinge")
DIFFAUG_OPS = ("color", "translation", "cutout")


class _Dict:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))} (file from a newer augmentor?)")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True)
class DataConfig(_Dict):
    """Where the training images come from and which of them are used."""

    source: str = "sklearn:digits"
    split: str = "train"
    size: int = 32
    channels: Optional[int] = None
    classes: Optional[str] = None
    per_class: Optional[int] = None
    holdout: float = 0.0
    strict: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"--per-class {self.per_class} must be at least 1")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout {self.holdout} must be in [0, 1)")


@dataclass(frozen=True)
class ModelConfig(_Dict):
    """A DCGAN pair. ``class_names`` fixes the number of classes and names them in exports."""

    size: int
    channels: int
    class_names: tuple
    mode: str = "conditional"
    nz: int = 128
    g_width: int = 64  # base channels of G (DCGAN's ngf)
    d_width: int = 64  # base channels of D (DCGAN's ndf)
    spectral_norm: bool = True

    def __post_init__(self):
        if self.size not in SUPPORTED_SIZES:
            raise ConfigError(f"size {self.size} is not supported; choose one of {SUPPORTED_SIZES}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels {self.channels} must be 1 or 3")
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode} is not one of {', '.join(MODES)}")
        if self.mode != "unconditional" and len(self.class_names) < 2:
            raise ConfigError(
                f"--mode {self.mode} needs at least 2 classes (the data has {len(self.class_names)}); use --mode unconditional"
            )
        for name, v in (("nz", self.nz), ("g_width", self.g_width), ("d_width", self.d_width)):
            if v < 1:
                raise ConfigError(f"{name} must be positive (got {v})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_upsamplings(self) -> int:
        """Stride-2 layers between the 4×4 base and the image: 3 for 32 px, 4 for 64, 5 for 128."""
        return int(math.log2(self.size)) - 2


@dataclass(frozen=True)
class TrainConfig(_Dict):
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)
    loss: str = "ns"  # non-saturating or hinge
    diffaug: str = "color,translation,cutout"  # empty string: off
    ema_decay: float = 0.999
    coverage: Optional[float] = 0.0  # weight of the coverage term (0: off; None: run.fit decides from the data)
    coverage_k: int = 8
    coverage_space: str = "pixel"  # "pixel" or "feature" (discriminator features)
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"--steps {self.steps} must be at least 1")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 2")
        if not self.lr > 0:
            raise ConfigError(f"--lr {self.lr} must be positive")
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss {self.loss} is not one of {', '.join(LOSSES)}")
        bad = [op for op in self.diffaug_ops if op not in DIFFAUG_OPS]
        if bad:
            raise ConfigError(f"--diffaug: unknown op(s) {', '.join(bad)}; choose from {', '.join(DIFFAUG_OPS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay {self.ema_decay} must be in [0, 1)")
        if (self.coverage is not None and self.coverage < 0) or self.coverage_k < 1:
            raise ConfigError("--coverage must be ≥ 0 and --coverage-k ≥ 1")
        if self.coverage_space not in ("pixel", "feature"):
            raise ConfigError(f"--coverage-space {self.coverage_space} must be pixel or feature")

    @property
    def diffaug_ops(self) -> tuple:
        return tuple(op.strip() for op in self.diffaug.split(",") if op.strip())
