"""Does the bench's FIX arm reach the FixMatch reference of ../shared/findings/README.md on the same draws?

    python benchmarks/fixmatch_check.py ../shared/datasets/mnist-t10k 10 0 >> benchmarks/results/fixmatch-check.jsonl
    python benchmarks/fixmatch_check.py ../shared/datasets/plantvillage-strawberry 10 1 64 >> ...
    python benchmarks/fixmatch_check.py ../shared/datasets/pneumoniamnist/pneumoniamnist_scarce_normal.npz 10% 0 >> ...

Arguments: data, shot, seed[, size[, preset]]. The preset's (default quick) split, draw, validation carve-out and classifier, as
`augmentor bench --unlabeled-rest` makes them; B (real + the preset's augmentation) and FIX at μ 3 and 1, each with
its wall time on one thread; the strong view's STRENGTH; the share of the unlabelled pool the final classifier is ≥ 0.95 sure of, and how much
of that is right. One JSON line (printed after each μ; the last is complete), no GAN trained.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from common import environment

from augmentor import data
from augmentor.gain.arms import ARM_BY_ID
from augmentor.gain.options import PRESETS
from augmentor.gain.protocol import choose_training_images, rest_of_pool, scores, split_data
from augmentor.gain.setting import ArmTraining
from augmentor.semi.classifier import predict
from augmentor.semi.fixmatch import MU_CHOICES, STRENGTH, THRESHOLD


def main(source: str, shot: str, seed: int, size: int = 32, preset: str = "quick") -> None:
    torch.set_num_threads(1)  # two checks side by side on 2 cores
    shot = shot if shot.endswith("%") or shot == "all" else int(shot)
    split = split_data(source, size)
    chosen = choose_training_images(split.pool, shot, seed)
    train, _ = data.carve_validation(split.pool.subset(chosen), seed)
    rest = rest_of_pool(split.pool, chosen)
    arms = ArmTraining(train, PRESETS[preset], seed, None, {"unlabeled-images": rest})
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    row = {"source": source, "shot": str(shot), "seed": seed, "size": size, "unlabeled": len(rest), "strength": STRENGTH}
    row["preset"] = preset
    row["env"] = environment()
    t = time.time()
    row["B"] = scores(predict(arms.classifier(ARM_BY_ID["B"], "preset"), x_test), y_test)
    row["B_seconds"] = round(time.time() - t, 1)
    for mu in sorted(MU_CHOICES, reverse=True):
        t = time.time()
        model, _ = arms.fixmatch(ARM_BY_ID["FIX"], "preset", mu)
        row[f"FIX_mu{mu}_seconds"] = round(time.time() - t, 1)
        row[f"FIX_mu{mu}"] = scores(predict(model, x_test), y_test)
        probs = predict(model, data.uint8_to_tanh(rest.images))
        kept = probs.max(1) >= THRESHOLD
        row[f"FIX_mu{mu}_kept"] = round(float(kept.mean()), 4)
        row[f"FIX_mu{mu}_kept_right"] = round(float((probs.argmax(1)[kept] == rest.labels.numpy()[kept]).mean()), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]), *sys.argv[5:6])
