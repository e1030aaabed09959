"""Shared by the studies: where the real datasets are, the seeded MNIST pool/test split, environment facts."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from augmentor import SyntheticMix, data
from augmentor.bench.presets import PRESETS
from augmentor.bench.protocol import environment as run_environment
from augmentor.bench.protocol import split_data
from augmentor.data.augmentation import AugmentedBatches
from augmentor.semi.classifier import train_classifier

DATASETS = Path(os.environ.get("AUGMENTOR_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def require(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        sys.exit(f"error: {path} not found; set AUGMENTOR_DATASETS to the folder holding the shared datasets")
    return path


def mnist_pool_test(size: int = 32, seed: int = 0):
    """MNIST test set split 5,000 pool / 5,000 test, stratified and seeded (the findings' protocol)."""
    full = data.load(str(require("mnist-t10k")), size=size)
    pool, test = data.stratified_split(full, 0.5, seed)
    return full, full.subset(pool), full.subset(test)


def bench_classifier(
    x_train, y_train, num_classes: int, p, seed: int, aug=None, extra=None, ratio=0.5, labels="match", transform=data.unit_to_tanh
):
    """The bench's classifier protocol (preset ``p``): ``p.clf_steps`` batches of real images drawn with
    replacement, classical augmentation ``aug`` (a pipeline, or None), and, with ``extra`` (a Sampler,
    RealResampler or SharedSource), a share ``ratio`` of each batch from it (``labels`` and ``transform`` as
    SyntheticMix's)."""
    ds = TensorDataset(x_train, y_train)
    draw = WeightedRandomSampler(torch.ones(len(ds)), p.clf_steps * p.batch_size, generator=torch.Generator().manual_seed(seed))
    batches = DataLoader(ds, batch_size=p.batch_size, sampler=draw)
    if aug is not None:
        batches = AugmentedBatches(batches, aug)
    if extra is not None:
        batches = SyntheticMix(batches, extra, ratio=ratio, labels=labels, transform=transform, seed=seed)
    return train_classifier(x_train, y_train, num_classes, steps=p.clf_steps, batch_size=p.batch_size, seed=seed,
                            batches=iter(batches))  # fmt: skip


def probe_bench_settings(bench: Path, data_source, probe) -> list:
    """For a probe on a finished `augmentor bench` (folder ``bench``): ``probe(setting, split, preset)`` per
    (shot, seed) setting, on the bench's own split and preset; each row is printed as it comes."""
    res = json.loads((bench / "results.json").read_text())
    split = split_data(data_source, res["size"])
    rows = []
    for setting in res["settings"]:
        rows.append(probe(setting, split, PRESETS[res["preset"]]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def mean_spread(values) -> str:
    """'mean ± std (each value)' of per-seed figures, two decimals: how the probes print an arm."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def environment() -> dict:
    return {**run_environment(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
