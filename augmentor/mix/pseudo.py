"""``PseudoLabelMix``: a `fit --unlabeled` run's kept unlabelled images, with their pseudo-labels, mixed into your
batches: the bench's SELF-G recipe in one call."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ..data.augmentation import RealResampler
from ..errors import ConfigError
from ..run.pseudo import pseudo_labelled_images
from .loader import SyntheticMix


class PseudoLabelMix(SyntheticMix):
    """``PseudoLabelMix(loader, run, ratio=0.5)``: like SyntheticMix, but each replaced sample is one of the
    unlabelled images the run kept, drawn at random from those of the slot's class (``labels`` as SyntheticMix's),
    put through ``augment`` (an albumentations pipeline, e.g. the one your real images get; None: as kept), then
    ``transform``. ``device`` as SyntheticMix's. A run without unlabelled images is refused in one line."""

    def __init__(
        self,
        loader,
        run,
        ratio: float = 0.5,
        labels: Union[str, dict] = "match",
        augment=None,
        transform: Optional[Callable] = None,
        return_mask: bool = False,
        seed: int = 0,
        image_key: str = "image",
        label_key: str = "label",
        device: Union[str, torch.device, None] = None,
    ):
        kept = pseudo_labelled_images(run)
        empty = [name for c, name in enumerate(kept.class_names) if not (kept.labels == c).any()]
        if empty and labels != "balanced" and not isinstance(labels, dict):
            raise ConfigError(
                f"{run}: kept no unlabelled images of class {', '.join(empty)}; give labels={{class: weight}} without "
                "it, or fit again with more unlabelled images or a lower --pseudo-threshold"
            )
        super().__init__(
            loader,
            RealResampler(kept, augment),
            ratio=ratio,
            labels=labels,
            transform=transform,
            return_mask=return_mask,
            seed=seed,
            pool=None,  # drawing kept images costs nothing to speak of: no pool
            image_key=image_key,
            label_key=label_key,
            device=device,
        )
