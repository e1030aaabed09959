"""How far the bench's classifier gets with every pool image labelled: the ceiling no recipe with unlabelled images
can pass, and what a preset's step count allows.

    python benchmarks/ceiling.py ../shared/datasets/mnist-t10k 32 2000 >> benchmarks/results/ceiling.jsonl

Arguments: data, size, classifier steps. The bench's split (split_data), its SmallCNN and preset augmentation and
batches, trained on the whole pool with its labels on one thread; one JSON line with the held-out test scores and
the wall time.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import torch
from common import environment

from augmentor import data
from augmentor.data import augmentation
from augmentor.gain.options import PRESETS
from augmentor.gain.protocol import scores, split_data, train_protocol_classifier
from augmentor.semi.classifier import predict


def main(source: str, size: int, steps: int) -> None:
    torch.set_num_threads(1)
    split = split_data(source, size)
    preset = replace(PRESETS["quick"], clf_steps=steps)
    x, y = data.uint8_to_tanh(split.pool.images), split.pool.labels
    aug = augmentation.pipeline_or_preset(None, split.pool.channels, 0)
    t = time.time()
    model = train_protocol_classifier(x, y, split.pool.num_classes, preset, seed=0, augment=aug)
    seconds = round(time.time() - t, 1)
    test = scores(predict(model, data.uint8_to_tanh(split.test.images)), split.test.labels.numpy())
    row = {"source": source, "size": size, "steps": steps, "pool": len(split.pool), "seconds": seconds, **test}
    print(json.dumps({**row, "env": environment()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
