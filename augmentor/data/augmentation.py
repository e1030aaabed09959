"""Classical augmentation, the baseline synthetic data has to beat: albumentations pipelines applied to
batches, the built-in presets, a user's own serialized pipeline, real images re-drawn through the same
interface as a Sampler (the bench's duplicate-real control), and a Sampler's images augmented the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import data
from ..errors import ConfigError


def preset(channels: int, seed: int = 0):
    """Domain-appropriate defaults: gray → small affine + brightness/contrast, no flips (digits, X-rays);
    color → flips, rotation and color jitter (leaves, photos). Colour can be the signal (leaf diseases): the
    bench chooses between this preset and none on validation images."""
    import albumentations as A

    if channels == 1:
        transforms = [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.08, 0.08), rotate=(-12, 12), shear=(-8, 8), p=1.0),
            A.RandomBrightnessContrast(0.1, 0.15, p=0.5),
        ]
    else:
        transforms = [
            A.HorizontalFlip(),
            A.VerticalFlip(),
            A.Rotate(limit=30, border_mode=4, p=1.0),  # reflect
            A.ColorJitter(0.2, 0.2, 0.2, 0.02, p=0.8),
        ]
    # albumentations draws from its own random state: seed it, or arms are not reproducible
    return A.Compose(transforms, seed=seed)


def pipeline_or_preset(path, channels: int, seed: int = 0, flag: str = "--augment"):
    """The pipeline saved at ``path``, or the preset for ``channels`` where there is none."""
    return load_pipeline(path, seed, flag) if path else preset(channels, seed)


def load_pipeline(path, seed: int = 0, flag: str = "--augment"):
    """A pipeline saved with albumentations' own ``A.save(pipeline, path)`` (json, or yaml by extension).
    ``flag``: the option that named the file, for the error message."""
    import albumentations as A

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file (save your pipeline with albumentations.save(pipeline, path))")
    try:
        pipeline = A.load(str(path), data_format="yaml" if path.suffix in (".yaml", ".yml") else "json")
    except Exception as e:  # albumentations raises many kinds for a file that is not one of its pipelines
        raise ConfigError(f"{flag} {path}: not an albumentations pipeline saved with A.save ({type(e).__name__})") from None
    pipeline.set_random_seed(seed)
    return pipeline


def augment_batch(aug, x: torch.Tensor) -> torch.Tensor:
    """albumentations on each image of a [-1, 1] float batch, through uint8 HWC as a user's pipeline would.
    ``aug`` None: the batch unchanged."""
    if aug is None:
        return x
    u8 = data.tanh_to_uint8(x).permute(0, 2, 3, 1).numpy()
    out = np.stack([aug(image=im)["image"] for im in u8])
    out = out[..., None] if out.ndim == 3 else out
    return data.uint8_to_tanh(torch.from_numpy(out).permute(0, 3, 1, 2))


class AugmentedBatches:
    """A loader's (x, y) batches with classical augmentation applied: what SyntheticMix wraps."""

    def __init__(self, loader, aug):
        self.loader, self.aug = loader, aug

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield augment_batch(self.aug, x), y


class RealResampler:
    """Real training images re-drawn (with replacement, per class) and augmented, behind a Sampler's sampling
    interface, so ``SyntheticMix`` can put them where synthetic images would go: the same batches, the same
    counts and labels. "Synthetic data helped" then means "helped more than showing real images again"."""

    def __init__(self, images: data.ImageSet, aug=None):
        self.images, self.aug = images, aug
        self.class_names = list(images.class_names)
        self.num_classes = len(self.class_names)
        self.image_shape = (images.channels, images.size, images.size)
        self.device = torch.device("cpu")
        self.chunk = 256
        self.path = Path(f"<real images of {images.source}>")
        self._members = [torch.nonzero(images.labels == c).flatten() for c in range(self.num_classes)]

    def class_index(self, c) -> int:
        return self.class_names.index(c) if isinstance(c, str) else int(c)

    def sample(self, n: int, labels, seed: Optional[int] = None, value_range: str = "tanh", numpy: bool = False):
        g = torch.Generator().manual_seed(seed or 0)
        labels = torch.full((n,), int(labels)) if isinstance(labels, (int, np.integer)) else torch.as_tensor(labels)
        index = torch.empty(n, dtype=torch.long)
        for c in labels.unique().tolist():
            where = labels == c
            members = self._members[c]
            if len(members) == 0:
                raise ConfigError(f"class {self.class_names[c]} has no real images to re-draw")
            index[where] = members[torch.randint(len(members), (int(where.sum()),), generator=g)]
        x = augment_batch(self.aug, data.uint8_to_tanh(self.images.images[index]))
        x = data.convert_range(x, "tanh", value_range)
        return x.numpy() if numpy else x


class AugmentedSamples:
    """A Sampler (or any source with its interface) whose images get classical augmentation, as RealResampler's
    re-drawn real images do: the bench's arms that put synthetic images through the same pipeline as the real
    ones beside them (what a dataset-level pipeline does to images that SyntheticReplace swapped in)."""

    def __init__(self, source, aug):
        self.source, self.aug = source, aug
        self.class_names, self.num_classes, self.image_shape = source.class_names, source.num_classes, source.image_shape
        self.device, self.chunk, self.path = torch.device("cpu"), source.chunk, source.path

    def class_index(self, c) -> int:
        return self.source.class_index(c)

    def sample(self, n: int, labels, seed: Optional[int] = None, value_range: str = "tanh", numpy: bool = False):
        x = augment_batch(self.aug, self.source.sample(n, labels, seed=seed).cpu())
        x = data.convert_range(x, "tanh", value_range)
        return x.numpy() if numpy else x


class SharedSource:
    """Several sources (Samplers or RealResamplers) behind one sampling interface, each giving an equal share
    of every request: "a quarter pseudo-labelled images, a quarter synthetic" is SyntheticMix at ratio 0.5 over
    a SharedSource of the two."""

    def __init__(self, sources: list):
        first = sources[0]
        self.sources = sources
        self.class_names, self.num_classes, self.image_shape = first.class_names, first.num_classes, first.image_shape
        self.device, self.chunk, self.path = torch.device("cpu"), first.chunk, Path(" + ".join(str(s.path) for s in sources))

    def class_index(self, c) -> int:
        return self.sources[0].class_index(c)

    def sample(self, n: int, labels, seed: Optional[int] = None, value_range: str = "tanh", numpy: bool = False):
        g = torch.Generator().manual_seed(seed or 0)
        labels = torch.full((n,), int(labels)) if isinstance(labels, (int, np.integer)) else torch.as_tensor(labels)
        owner = torch.randperm(n, generator=g) % len(self.sources)  # equal shares, at random places
        out = torch.empty((n, *self.image_shape))
        for i, src in enumerate(self.sources):
            where = torch.nonzero(owner == i).flatten()
            if len(where):
                part = src.sample(len(where), labels[where], seed=(seed or 0) * 31 + i, value_range=value_range)
                out = out.to(part.dtype)
                out[where] = part.cpu()
        return out.numpy() if numpy else out
