"""Subsets of an ImageSet: classes, a seeded stratified holdout, seeded n-shot draws."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..errors import ConfigError
from .images import ImageSet

log = logging.getLogger("augmentor")


def select_classes(data: ImageSet, classes: str, flag: str = "--classes") -> ImageSet:
    """Keep the classes named in ``"a,b"`` (by name or index) and renumber them 0..k-1; errors name ``flag``."""
    wanted = []
    for token in (t.strip() for t in classes.split(",") if t.strip()):
        if token in data.class_names:
            wanted.append(data.class_names.index(token))
        elif token.isdigit() and int(token) < data.num_classes:
            wanted.append(int(token))
        else:
            raise ConfigError(f"{flag}: unknown class '{token}'; this dataset has {', '.join(data.class_names)}")
    if not wanted:
        raise ConfigError(f"{flag}: give at least one class name or index")
    wanted = list(dict.fromkeys(wanted))
    remap = torch.full((data.num_classes,), -1, dtype=torch.long)
    remap[wanted] = torch.arange(len(wanted))
    keep = torch.nonzero(remap[data.labels.cpu()] >= 0).flatten()
    out = data.subset(keep)
    return replace(out, labels=remap[out.labels.cpu()].to(out.labels.device), class_names=[data.class_names[i] for i in wanted])


def stratified_split(data: ImageSet, fraction: float, seed: int) -> tuple:
    """Split off ``fraction`` of each class (at least one image per class when it has ≥ 2). Returns index tensors
    (kept, held). Callers check ``fraction`` where the user gave it (--holdout, --shots)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"stratified_split: fraction {fraction} is not in [0, 1)")
    g = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in range(data.num_classes):
        idx = torch.nonzero(data.labels.cpu() == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_held = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def carve_validation(images: ImageSet, seed: int) -> tuple:
    """(training images, validation images): 20 % of each class (at least one image of a class that has ≥ 2) held
    out to choose or check something on images the model did not learn from."""
    kept, val = stratified_split(images, 0.2, seed)
    return images.subset(kept), images.subset(val)


def per_class_subset(data: ImageSet, n: int, seed: int) -> torch.Tensor:
    """Indices of a seeded n-shot subset: ``n`` images of each class (all of a class that has fewer)."""
    if n < 1:
        raise ConfigError(f"--per-class {n} must be at least 1")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(data.num_classes):
        idx = torch.nonzero(data.labels.cpu() == c).flatten()
        if len(idx) < n:
            log.warning(f"class '{data.class_names[c]}' has only {len(idx)} image(s), fewer than --per-class {n}")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(chosen).sort().values
