"""Synthetic images as a Dataset, and as a per-sample transform."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..errors import ConfigError
from ..onnx.sampler import Sampler

OUTPUTS = ("pil", "tensor", "numpy")


def as_sampler(model, device: str = "cpu"):
    """A path (run directory or generator .onnx) opens a Sampler; a Sampler, or anything with its sampling
    interface (e.g. augmentation.RealResampler), is used as it is."""
    return Sampler(model, device=device) if isinstance(model, (str, Path)) else model


def to_output(img_uint8_chw: np.ndarray, output: str):
    if output == "tensor":
        return torch.from_numpy(np.ascontiguousarray(img_uint8_chw))  # uint8 (C, H, W), as torchvision v2 expects
    hwc = img_uint8_chw.transpose(1, 2, 0)
    if output == "numpy":
        return np.ascontiguousarray(hwc)  # uint8 (H, W, C), as albumentations expects
    from PIL import Image

    return Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc)


class SyntheticDataset(torch.utils.data.Dataset):
    """``n`` images (classes in turn) or ``class_counts`` ({class name or index: count} or a list).

    Returns ``(image, label)``; ``output`` "pil" | "tensor" (uint8 C×H×W) | "numpy" (uint8 H×W×C).
    Images are generated in blocks of ``block`` and cached one block at a time; item i depends only on
    (seed, i), so workers, reruns and shuffles agree. Safe with ``num_workers > 0``: each worker builds
    its own onnxruntime session on first use.
    """

    def __init__(
        self,
        model,
        n: Union[int, dict, list, None] = None,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        output: str = "pil",
        seed: int = 0,
        block: int = 256,
        class_counts: Union[dict, list, None] = None,
    ):
        if output not in OUTPUTS:
            raise ConfigError(f"output={output!r} is not one of {', '.join(OUTPUTS)}")
        self.sampler = as_sampler(model)
        counts = class_counts if class_counts is not None else n
        if isinstance(counts, (dict, list, tuple)):
            items = counts.items() if isinstance(counts, dict) else enumerate(counts)
            per_class = {}
            for c, k in items:
                if int(k) < 0:
                    raise ConfigError(f"class count {k} for '{c}' must be ≥ 0")
                per_class[self.sampler.class_index(c)] = int(k)
            labels = [c for c, k in sorted(per_class.items()) for _ in range(k)]
            self.labels = torch.tensor(labels, dtype=torch.long)
        elif isinstance(counts, (int, np.integer)) and counts >= 0:
            self.labels = torch.arange(int(counts)) % self.sampler.num_classes
        else:
            raise ConfigError(f"n must be a count ≥ 0 or class counts (got {counts!r})")
        self.transform, self.target_transform = transform, target_transform
        self.output, self.seed, self.block = output, seed, block
        self.classes = self.sampler.class_names
        self._cache = (None, None)

    def __len__(self) -> int:
        return len(self.labels)

    def _block(self, b: int) -> np.ndarray:
        if self._cache[0] != b:
            y = self.labels[b * self.block : (b + 1) * self.block]
            seed = (self.seed * 1_000_003 + b) % 2**62  # block b's noise depends on (seed, b) alone
            self._cache = (b, self.sampler.sample(len(y), y, seed=seed, value_range="uint8", numpy=True))
        return self._cache[1]

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} synthetic images")
        i %= len(self)
        img = to_output(self._block(i // self.block)[i % self.block], self.output)
        label = int(self.labels[i])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label


class SyntheticReplace:
    """With probability ``p``, replace an (image, label) pair by a synthetic image of the same label.

    Use it where a joint transform goes (``VisionDataset(transforms=...)``) or call it on a pair. The
    synthetic image has the input's type: PIL in → PIL out, uint8 (C, H, W) tensor → the same, numpy
    (H, W, C) → the same. Random draws use torch's global generator, which DataLoader seeds per worker.
    """

    def __init__(self, model, p: float = 0.3, buffer: int = 64):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p={p} must be in [0, 1]")
        self.sampler = as_sampler(model)
        self.p, self.buffer = p, buffer
        self._queues: dict = {}

    def make_params(self) -> dict:
        return {"replace": bool(torch.rand(1) < self.p)}

    def __call__(self, image, label):
        return self.transform(image, label, self.make_params())

    def transform(self, image, label, params: dict):
        if not params["replace"]:
            return image, label
        c = self.sampler.class_index(int(label))
        queue = self._queues.get(c)
        if not queue:  # one generator call per `buffer` images of a class, not one per image
            seed = int(torch.randint(2**62, (1,)))
            queue = list(self.sampler.sample(self.buffer, c, seed=seed, value_range="uint8", numpy=True))
            self._queues[c] = queue
        img = queue.pop()
        if isinstance(image, torch.Tensor):
            out = torch.from_numpy(np.ascontiguousarray(img))
            out = out if image.dtype == torch.uint8 else out.float().div_(255).to(image.dtype)
        elif isinstance(image, np.ndarray):
            out = np.ascontiguousarray(img.transpose(1, 2, 0))
            out = out[..., 0] if image.ndim == 2 else out
        else:
            out = to_output(img, "pil")
        return out, label
