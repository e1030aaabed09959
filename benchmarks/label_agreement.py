"""How often a real-digit classifier agrees with the conditioning label of generated MNIST digits.

    python benchmarks/label_agreement.py --per-class 20 --steps 2000

The GAN trains on n images per class from the 5,000-image pool; the judge is a SmallCNN trained on the
whole pool (its accuracy on the 5,000 held-out test images is printed too). Writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import environment, mnist_pool_test

from augmentor import data
from augmentor.config import SHORT_RUN_LR, ModelConfig, TrainConfig
from augmentor.gan.train import Trainer
from augmentor.semi.classifier import predict, train_classifier


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--lr", type=float, default=SHORT_RUN_LR)
    ap.add_argument("--coverage", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)

    _, pool, test = mnist_pool_test()
    train = pool.subset(data.per_class_subset(pool, args.per_class, args.seed))
    judge = train_classifier(data.uint8_to_tanh(pool.images), pool.labels, 10, steps=1000, seed=args.seed)
    judge_acc = float((predict(judge, data.uint8_to_tanh(test.images)).argmax(1) == test.labels.numpy()).mean())

    cfg = ModelConfig(size=32, channels=1, class_names=tuple(pool.class_names), width=args.width)
    tcfg = TrainConfig(steps=args.steps, lr=args.lr, coverage=args.coverage, seed=args.seed)
    t0 = time.time()
    trainer = Trainer(cfg, tcfg, train, args.device).fit()
    wall = time.time() - t0
    y = torch.arange(1000) % 10
    pred = predict(judge, trainer.sample(1000, y, seed=123).cpu()).argmax(1)
    agreement = float((torch.from_numpy(pred) == y).float().mean())
    result = {
        "per_class": args.per_class,
        "steps": args.steps,
        "width": args.width,
        "lr": args.lr,
        "coverage": args.coverage,
        "seed": args.seed,
        "gan_wall_s": round(wall, 1),
        "ms_per_step": round(1000 * wall / args.steps, 1),
        "label_agreement": agreement,
        "judge_test_accuracy": judge_acc,
        "env": environment(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
