"""``SyntheticMix``: wraps any DataLoader of (x, y) batches and replaces round(ratio · B) samples per batch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from ..data.images import convert_range
from ..errors import ConfigError
from ..onnx.sampler import Sampler
from ..onnx.sessions import ort_cuda_usable
from .dataset import as_sampler

AUTO_POOL = 1000  # images per class that SyntheticMix(pool="auto") keeps on the CPU


def _batch_device(device) -> torch.device:
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={str(device)!r}: SyntheticMix mixes on 'cpu' or 'cuda[:i]'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r}: torch sees no GPU here; leave device out to keep batches where they are")
    return device


def _moved(planned, device: torch.device):
    """The planned batches with their images and labels copied to ``device``. On a GPU the copy of batch i + 1
    is issued on a side stream, from pinned memory, while batch i is used (timm's PrefetchLoader pattern)."""
    if device.type != "cuda":
        for batch, x, y, pos, syn_y in planned:
            yield batch, x.to(device), y.to(device), pos, syn_y
        return
    copying, ahead = torch.cuda.Stream(device), None
    for batch, x, y, pos, syn_y in planned:
        with torch.cuda.stream(copying):
            x, y = (t.to(device, non_blocking=True) for t in (_pinned(x), _pinned(y)))
        if ahead is not None:
            yield ahead
        torch.cuda.current_stream(device).wait_stream(copying)
        for t in (x, y):
            t.record_stream(torch.cuda.current_stream(device))  # made on the side stream, used on this one
        ahead = (batch, x, y, pos, syn_y)
    if ahead is not None:
        yield ahead


def _pinned(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_cuda or t.is_pinned() else t.pin_memory()


def _length(loader, unknown: int) -> int:
    """Batches in one pass over ``loader``; ``unknown`` for one without a length (an iterable dataset)."""
    try:
        return len(loader)
    except TypeError:
        return unknown


class SyntheticMix:
    """Wrap a DataLoader of (x, y): each batch gets round(ratio · B) samples replaced by synthetic ones.

    The synthetic images match the batch's shape, dtype and device; ``transform`` is a batched tensor
    transform applied to them (e.g. ``v2.Normalize`` — the same normalization your real images got).
    Without one, float batches get [0, 1] and uint8 batches 0..255. ``labels``: "match" keeps each
    replaced sample's label; "balanced" gives the synthetic slots to the classes rarest in the batch;
    a {class: weight} dict draws labels with those weights. ``len()`` and epochs follow the loader.

    Batches may be tuples ``(x, y, ...)`` or dicts (the Hugging Face datasets style): a dict batch has its
    ``image_key`` and ``label_key`` entries mixed and comes back as a dict with its other entries unchanged
    (and ``"is_synthetic"`` with ``return_mask``).

    ``pool``: where the synthetic images come from. An int N: N images per class, generated once (on first
    use of the class) and drawn in a fresh random order each pass; None: freshly generated images for
    every batch. "auto" (default): fresh on a GPU, a pool on the CPU, where generating costs about as much as
    the classifier step it feeds (benchmarks/throughput.py) and would slow it: 1,000 per class, or fewer when a
    pass over the loader cannot draw that many (a short loader should not wait for images it never uses).

    ``device``: where the batches should end up, e.g. "cuda". Each batch of a CPU loader is then copied there
    (from pinned memory, the next batch's copy issued on a side stream while this one is used) and mixed there,
    the synthetic images coming from onnxruntime's CUDA provider straight into torch memory; which samples
    are replaced is decided on the CPU copy, so mixing never waits for the GPU. None (default): batches stay
    where the loader puts them.
    """

    def __init__(
        self,
        loader,
        model,
        ratio: float = 0.3,
        labels: Union[str, dict] = "match",
        transform: Optional[Callable] = None,
        return_mask: bool = False,
        seed: int = 0,
        pool: Union[int, str, None] = "auto",
        image_key: str = "image",
        label_key: str = "label",
        device: Union[str, torch.device, None] = None,
    ):
        self.device = None if device is None else _batch_device(device)
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"ratio {ratio} must be in [0, 1]")
        if not (pool is None or pool == "auto" or (isinstance(pool, int) and not isinstance(pool, bool) and pool > 0)):
            raise ConfigError(f"pool={pool!r} must be a count > 0, None (fresh images every batch) or 'auto'")
        if not (labels in ("match", "balanced") or isinstance(labels, dict)):
            raise ConfigError(f"labels={labels!r} must be 'match', 'balanced' or a {{class: weight}} dict")
        self.loader, self.ratio, self.transform, self.return_mask = loader, ratio, transform, return_mask
        self.image_key, self.label_key = image_key, label_key
        self.samplers = {}  # one per device the batches arrive on
        self.model = model
        first = as_sampler(model, "cpu")
        self.samplers[torch.device("cpu")] = first
        self.meta_sampler = first
        self.label_mode = labels
        if isinstance(labels, dict):
            w = torch.zeros(first.num_classes, dtype=torch.float64)
            for c, weight in labels.items():
                try:
                    w[first.class_index(c)] = float(weight)
                except (TypeError, ValueError):
                    raise ConfigError(f"labels={{...}}: the weight of {c!r} is {weight!r}, not a number") from None
            if not torch.isfinite(w).all() or w.sum() <= 0 or (w < 0).any():
                raise ConfigError("labels={...}: weights must be finite numbers ≥ 0 with a positive sum")
            self.weights = (w / w.sum()).float()
        self.seed = seed
        self.epoch = 0
        self.pool = pool
        self._pools = {}  # (device, class) → uint8 images; kept across epochs

    def __len__(self) -> int:
        return len(self.loader)

    def _sampler_for(self, device: torch.device) -> Sampler:
        if device not in self.samplers:
            if not isinstance(self.model, (str, Path)) or not ort_cuda_usable():
                # onnxruntime without CUDA (or a Sampler the user built): generate there, copy to the batch's device
                self.samplers[device] = self.samplers[torch.device("cpu")]
            else:
                self.samplers[device] = Sampler(self.model, device=str(device))
        return self.samplers[device]

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        self.epoch += 1
        self._buffer = {}  # per (device, class): images (or pool order) not used yet; new each epoch, so epochs are reproducible
        planned = (self._plan(batch, g) for batch in self.loader)
        if self.device is not None:
            planned = _moved(planned, self.device)
        for batch, x, y, pos, syn_y in planned:
            yield self._mix(batch, x, y, pos, syn_y, g)

    def _plan(self, batch, g: torch.Generator) -> tuple:
        """(batch, x, y, positions to replace, their labels), decided from the batch as the loader gave it."""
        x, y = self._unpack(batch)
        classes = self._check(x, y)
        k = int(round(self.ratio * len(x)))
        pos = torch.randperm(len(x), generator=g)[:k] if k else torch.empty(0, dtype=torch.long)
        return batch, x, y, pos, self._synthetic_labels(classes, pos, g) if k else None

    def _mix(self, batch, x, y, pos, syn_y, g: torch.Generator):
        mask = torch.zeros(len(x), dtype=torch.bool)
        if len(pos):
            mask[pos] = True
            x, y = x.clone(), y.clone()
            x[pos.to(x.device)] = self._synthetic(syn_y, g, x)
            if y.dim() == 2:  # one-hot rows in, one-hot rows out
                syn_y = torch.nn.functional.one_hot(syn_y, y.shape[1])
            y[pos.to(y.device)] = syn_y.to(y.device, y.dtype)
        return self._pack(batch, x, y, mask.to(x.device))

    def _unpack(self, batch) -> tuple:
        if isinstance(batch, Mapping):
            missing = [k for k in (self.image_key, self.label_key) if k not in batch]
            if missing:
                raise ConfigError(
                    f"the loader's batches are dicts with keys {sorted(batch)}, without {missing}; "
                    "name the image and label entries: SyntheticMix(..., image_key=..., label_key=...)"
                )
            return batch[self.image_key], batch[self.label_key]
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ConfigError(
                f"the loader's batches are {type(batch).__name__}; SyntheticMix needs (images, labels) pairs or dicts of them"
            )
        return batch[0], batch[1]

    def _pack(self, batch, x, y, mask):
        if isinstance(batch, Mapping):
            out = {**batch, self.image_key: x, self.label_key: y}
            return {**out, "is_synthetic": mask} if self.return_mask else out
        return (x, y, mask) if self.return_mask else (x, y)

    def _check(self, x, y) -> torch.Tensor:
        """Refuse a batch the generator cannot match; returns its labels as class indices (long, on the CPU)."""
        want = self.meta_sampler.image_shape
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError(
                f"{self.meta_sampler.path}: makes images of shape {want} (C, H, W) but the loader's batches are {got}; "
                "train or export a model at the loader's size and channels"
            )
        classes = self._class_indices(y)
        if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= self.meta_sampler.num_classes):
            bad = int(classes.min()) if int(classes.min()) < 0 else int(classes.max())
            raise ConfigError(
                f"label {bad} in the loader is not a class of {self.meta_sampler.path} ({self.meta_sampler.num_classes} classes)"
            )
        return classes

    def _class_indices(self, y) -> torch.Tensor:
        """Class indices of a batch's labels: integers, floats holding whole numbers, or one-hot rows (BCE losses)."""
        n = self.meta_sampler.num_classes
        what = "labels must be class indices (integers, or floats holding whole numbers) or one-hot rows"
        if not isinstance(y, torch.Tensor):
            raise ConfigError(f"SyntheticMix: the loader's {what}; got {type(y).__name__}")
        y = y.detach().cpu()
        if y.dim() == 2 and y.shape[1] == n:
            is_one_hot = ((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all()
            if not is_one_hot:
                raise ConfigError(
                    f"SyntheticMix: {what}; got rows of {n} that are not one-hot (soft labels: apply MixUp or label smoothing after SyntheticMix)"
                )
            return y.argmax(1)
        if y.dim() != 1:
            raise ConfigError(f"SyntheticMix: {what}; got labels of shape {tuple(y.shape)} for {n} classes")
        if y.is_floating_point() and not (torch.isfinite(y).all() and (y == y.round()).all()):
            raise ConfigError(f"SyntheticMix: {what}; got fractional or NaN values such as {y[y != y.round()][:1].tolist()}")
        return y.long()

    def _synthetic_labels(self, y: torch.Tensor, pos: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.label_mode == "match":
            return y[pos]
        if self.label_mode == "balanced":  # fill each slot with the class rarest among the kept samples
            keep = torch.ones(len(y), dtype=torch.bool)
            keep[pos] = False
            counts = torch.bincount(y[keep], minlength=self.meta_sampler.num_classes).float()
            counts += torch.rand(len(counts), generator=g) * 0.1  # break ties at random
            out = []
            for _ in range(len(pos)):
                c = int(torch.argmin(counts))
                out.append(c)
                counts[c] += 1
            return torch.tensor(out, dtype=torch.long)
        return torch.multinomial(self.weights, len(pos), replacement=True, generator=g)

    def _synthetic(self, labels: torch.Tensor, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        device = like.device if like.device.type == "cuda" else torch.device("cpu")  # generate where the batch lives
        sampler = self._sampler_for(device)
        images = torch.empty((len(labels), *sampler.image_shape), device=sampler.device)
        for c in torch.unique(labels).tolist():
            where = torch.nonzero(labels == c).flatten()
            images[where.to(images.device)] = self._take(sampler, c, len(where), g, slots=len(labels))
        if like.dtype == torch.uint8:
            images = convert_range(images, "unit", "uint8")
        if self.transform is not None:
            images = self.transform(images)
        return images.to(like.device, like.dtype)

    def _take(self, sampler: Sampler, c: int, n: int, g: torch.Generator, slots: int) -> torch.Tensor:
        size = self.pool
        if size == "auto":  # at most what one pass can draw of a class: every synthetic slot of every batch
            size = None if sampler.device.type == "cuda" else min(AUTO_POOL, _length(self.loader, AUTO_POOL) * slots)
        return self._fresh(sampler, c, n, g) if size is None else self._from_pool(sampler, c, n, g, size)

    def _from_pool(self, sampler: Sampler, c: int, n: int, g: torch.Generator, size: int) -> torch.Tensor:
        """n images of class c from its pool (``size`` images, made on the class's first use), without repeats
        until the pool has been gone through."""
        key = (sampler.device, c)
        if key not in self._pools:
            seed = (self.seed * 1_000_003 + c) % 2**62  # the pool depends on (seed, class) alone
            self._pools[key] = sampler.sample(size, c, seed=seed, value_range="uint8")  # uint8: a quarter of the memory
        pool = self._pools[key]  # its size is fixed: an "auto" size asked for at a later batch may differ
        order = self._buffer.get(key, torch.empty(0, dtype=torch.long))
        while len(order) < n:
            order = torch.cat([order, torch.randperm(len(pool), generator=g)])
        self._buffer[key] = order[n:]
        return pool[order[:n].to(sampler.device)].float().div_(255)

    def _fresh(self, sampler: Sampler, c: int, n: int, g: torch.Generator) -> torch.Tensor:
        """n fresh images of class c, from a per-class buffer refilled a block at a time: a batch needs only a
        few images of each class, and one generator call per few images would cost far more per image."""
        key = (sampler.device, c)
        have = self._buffer.get(key)
        if have is None or len(have) < n:
            block = max(n, sampler.chunk if sampler.device.type == "cuda" else 64)
            seed = int(torch.randint(2**62, (1,), generator=g))
            fresh = sampler.sample(block, c, seed=seed, value_range="unit")
            have = fresh if have is None else torch.cat([have, fresh])
        self._buffer[key] = have[n:]
        return have[:n]


class SyntheticBatch:
    """``images, labels = SyntheticBatch(run, ratio=0.3)(images, labels)``: the same replacement as SyntheticMix,
    as a batch transform for a training loop that moves its batches itself (torchvision v2's MixUp and CutMix
    idiom): call it after your ``.to(device)``; on a GPU the synthetic images are made there. The options are
    SyntheticMix's. It reads the labels on the CPU (one small copy a batch); SyntheticMix(loader, device=...)
    decides before the copy and never waits."""

    def __init__(
        self,
        model,
        ratio: float = 0.3,
        labels: Union[str, dict] = "match",
        transform: Optional[Callable] = None,
        return_mask: bool = False,
        seed: int = 0,
        pool: Union[int, str, None] = "auto",
    ):
        self.mixer = SyntheticMix(
            None, model, ratio=ratio, labels=labels, transform=transform, return_mask=return_mask, seed=seed, pool=pool
        )
        self.mixer._buffer = {}
        self.generator = torch.Generator().manual_seed(seed * 7919)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        return self.mixer._mix(*self.mixer._plan((images, labels), self.generator), self.generator)
