"""Does the label check see how many pseudo-labels are right? The bench's split and draw, the labellers trained on the
draw's training part and checked on its validation part (as `bench --unlabeled-rest` does), the rest of the pool
unlabelled; the estimate beside the true share right.

    python benchmarks/label_check.py ../shared/datasets/plantvillage-strawberry 50 1 64 >> benchmarks/results/label-check.jsonl

Arguments: data, shot, seed[, size[, labellers]]. One JSON line per labeller (default: classifier, then the
semi-supervised GAN, e.g. 'classifier' for the first alone), one thread.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from common import environment

from augmentor import data
from augmentor.config import UnlabeledConfig
from augmentor.gain.protocol import choose_training_images, rest_of_pool, split_data
from augmentor.semi.unlabeled import pseudo_label


def main(source: str, shot: str, seed: int, size: int = 32, labellers: str = "classifier,gan") -> None:
    torch.set_num_threads(1)
    shot = shot if shot.endswith("%") or shot == "all" else int(shot)
    split = split_data(source, size)
    chosen = choose_training_images(split.pool, shot, seed)
    train, val = data.carve_validation(split.pool.subset(chosen), seed)
    rest = rest_of_pool(split.pool, chosen)
    for labeller in labellers.split(","):
        t = time.time()
        pseudo = pseudo_label(train, rest, UnlabeledConfig(pseudo_labeller=labeller), seed=seed, validation=val)
        right = float((rest.labels[pseudo.index] == pseudo.labels).float().mean())
        row = {"source": source, "shot": str(shot), "seed": seed, "size": size, "labeller": labeller}
        row.update(pseudo.record(train.class_names), right=round(right, 4), seconds=round(time.time() - t, 1))
        print(json.dumps({**row, "env": environment()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]), *sys.argv[5:6])
