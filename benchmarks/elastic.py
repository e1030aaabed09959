"""Is the classical baseline strong enough? The gray preset alone, then with smooth distortions of three kinds.

transfer_warps.py found that bending half of each batch's labelled digits by random smooth fields lifts the
real + augmentation arm by ~2 points on MNIST 5-9 (10 per class), whether the fields were learnt from related
digits or drawn at random: an elastic augmentation (Simard et al. 2003) that the gray preset lacks. This
checks it as an augmentation of every batch, on other draws, beside two of albumentations' (GridDistortion,
5 steps, limit 0.3, and ThinPlateSpline, 4×4 points moved 8-12 %: mean pixel change 0.074 and 0.076 against
the random fields' 0.081):

    cd benchmarks && python elastic.py --data ../../shared/datasets/mnist-t10k --shots 10 --seeds 0 1 2 \\
        --out results/elastic-mnist10.json      # also --classes 5,6,7,8,9; the X-rays with --shots 10%

Per seed, the bench's own draw (its validation part carved off) and held-out test set; SmallCNN with the quick
preset's steps. B: the preset. Then, after the preset, on half of the images: B+grid albumentations'
GridDistortion; B+tps its ThinPlateSpline; B+warp a random field (transfer_warps.warp, each control point drawn
with the spread of fields registered between same-class pairs of the pool; never the test images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import albumentations as A
import torch
from common import bench_classifier, mean_spread
from transfer_warps import register, same_class_pairs, warp

from augmentor import data
from augmentor.augmentation import preset
from augmentor.bench import PRESETS, carve_validation, choose_training_images, parse_shots, scores, split_data
from augmentor.classifier import predict


def with_grid_distortion(channels: int, seed: int):
    """The gray preset, then a smooth grid distortion on half of the images."""
    return A.Compose([*preset(channels, seed).transforms, A.GridDistortion(num_steps=5, distort_limit=0.3, p=0.5)], seed=seed)


def with_thin_plate_spline(channels: int, seed: int):
    """The gray preset, then albumentations' thin-plate-spline bend on half of the images: 4×4 control points
    moved by 8-12 % of the side, its mean pixel change (0.076) matched to the random fields' (0.081)."""
    spline = A.ThinPlateSpline(scale_range=(0.08, 0.12), num_control_points=4, p=0.5)
    return A.Compose([*preset(channels, seed).transforms, spline], seed=seed)


class RandomWarp:
    """The probe's random smooth fields (transfer_warps.py) as an albumentations-style per-image transform, after
    the preset and on half of the images: each control point drawn with ``spread`` (2×GRID×GRID)."""

    def __init__(self, channels: int, spread: torch.Tensor, seed: int):
        self.preset, self.spread = preset(channels, seed), spread
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, image):
        image = self.preset(image=image)["image"]
        if torch.rand(1, generator=self.g).item() < 0.5:
            return {"image": image}
        x = data.uint8_to_tanh(torch.from_numpy(image).permute(2, 0, 1)[None])
        field = torch.randn(1, *self.spread.shape, generator=self.g) * self.spread
        return {"image": data.tanh_to_uint8(warp(x, field))[0].permute(1, 2, 0).numpy()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../../shared/datasets/mnist-t10k")
    ap.add_argument("--classes", default=None)
    ap.add_argument("--shots", default="10")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = split_data(args.data, 32, classes=args.classes)
    (shot,) = parse_shots(args.shots)
    p = PRESETS["quick"]
    # the random fields' spread, from same-class pairs of the pool (never the test images)
    spread = register(*same_class_pairs(split.pool, 2000, seed=0))[0].std(0)
    rows = []
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    for seed in args.seeds:
        train, _ = carve_validation(split.pool.subset(choose_training_images(split.pool, shot, seed)), seed)
        x, y = data.uint8_to_tanh(train.images), train.labels
        row = {"seed": seed, "train_images": len(train)}
        arms = {
            "B": preset(train.channels, seed),
            "B+grid": with_grid_distortion(train.channels, seed),
            "B+warp": RandomWarp(train.channels, spread, seed),
            "B+tps": with_thin_plate_spline(train.channels, seed),
        }
        for arm, aug in arms.items():
            model = bench_classifier(x, y, train.num_classes, p, seed, aug)
            row[arm] = scores(predict(model, x_test), y_test)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for arm in arms:
        for metric in ("accuracy", "balanced_accuracy"):
            v = [100 * r[arm][metric] for r in rows]
            print(f"{arm} {metric}: {mean_spread(v)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": args.data, "classes": args.classes, "shots": args.shots, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
