"""A dataset in memory (ImageSet) and the value ranges images move between."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError

SUPPORTED_SIZES = (32, 64, 128)
BUILTIN_DIGITS = "sklearn:digits"
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# Decompression-bomb guard: refuse anything bigger than 50 megapixels before decoding it.
MAX_IMAGE_PIXELS = 50_000_000


@dataclass
class ImageSet:
    """A whole dataset in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list
    source: str
    paths: Optional[list] = None  # file per image, for folder sources
    skipped: list = field(default_factory=list)  # (path, reason) of files that could not be used

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def class_counts(self) -> list:
        return torch.bincount(self.labels.cpu(), minlength=self.num_classes).tolist()

    def subset(self, index) -> ImageSet:
        index = torch.as_tensor(index, dtype=torch.long)
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return replace(self, images=self.images[index], labels=self.labels[index], paths=paths)

    def to(self, device) -> ImageSet:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def fingerprint(self) -> str:
        """A short hash of pixels, labels and class names: tells two training sets apart."""
        h = hashlib.sha256()
        h.update(self.images.cpu().numpy().tobytes())
        h.update(self.labels.cpu().numpy().astype(np.int64).tobytes())
        h.update("\0".join(self.class_names).encode())
        return h.hexdigest()[:16]


# Value ranges, by name: "uint8" 0..255 (files, datasets), "tanh" float [-1, 1] (the generator's output and
# the discriminator's input), "unit" float [0, 1] (torchvision's ToDtype(scale=True)). Convert only through
# these, so a range is never guessed: a mistake here raises nothing and quietly costs accuracy.
VALUE_RANGES = ("tanh", "unit", "uint8")


def uint8_to_tanh(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(127.5).sub_(1.0)


def tanh_to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def tanh_to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.add(1.0).mul_(0.5).clamp_(0, 1)


def unit_to_tanh(images: torch.Tensor) -> torch.Tensor:
    return images.mul(2.0).sub_(1.0)


def convert_range(images: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """Between any two of VALUE_RANGES (through "tanh")."""
    for r in (source, target):
        if r not in VALUE_RANGES:
            raise ConfigError(f"value_range {r!r} is not one of {', '.join(VALUE_RANGES)}")
    if source == target:
        return images
    x = {"tanh": lambda t: t, "unit": unit_to_tanh, "uint8": uint8_to_tanh}[source](images)
    return {"tanh": lambda t: t, "unit": tanh_to_unit, "uint8": tanh_to_uint8}[target](x)
