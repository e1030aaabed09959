"""What the class shares the labellers expect do to their labels (fit / bench --unlabeled-shares), on the
bench's own draws: an even n-per-class draw tells nothing about how the unlabelled images are split, and a
labeller trained on balanced batches over-calls the class that is rarer among them.

    cd benchmarks && python unlabeled_shares.py --data ../../shared/datasets/plantvillage-strawberry --size 64 \\
        --shares none healthy=0.2,leaf_scorch=0.8 healthy=0.3,leaf_scorch=0.7 healthy=0.4,leaf_scorch=0.6

Per seed (the bench's draw of ``--shot`` labelled images a class, the rest of the pool unlabelled, its labels
used only to count): the classifier labeller is trained once (quick preset), then its labels are kept as
pseudo_label keeps them under each stated shares ("none": the default). Prints kept, kept per class, % right.
"""

import argparse
import json
from pathlib import Path

import torch
from common import environment

from augmentor.bench import PRESETS, carve_validation, choose_training_images, rest_of_pool, split_data
from augmentor.config import UnlabeledConfig
from augmentor.unlabeled import _confident, classifier_probabilities, drop_labelled, expected_shares, reweighted


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--shot", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shares", nargs="+", default=["none"], help="'none' or CLASS=SHARE,... as --unlabeled-shares")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = PRESETS["quick"]
    cfg = UnlabeledConfig(pseudo_threshold=p.pseudo_threshold, pseudo_steps=p.pseudo_steps, pseudo_labeller="classifier")
    split = split_data(args.data, args.size)
    rows = []
    for seed in args.seeds:
        chosen = choose_training_images(split.pool, args.shot, seed)
        train, _ = carve_validation(split.pool.subset(chosen), seed)
        unlabeled = drop_labelled(rest_of_pool(split.pool, chosen), train)
        probs = classifier_probabilities(train, unlabeled, cfg, seed)
        row = {"seed": seed, "unlabeled_per_class": torch.bincount(unlabeled.labels, minlength=train.num_classes).tolist()}
        for stated in args.shares:
            shares = expected_shares(train, None if stated == "none" else stated)
            kept = _confident(reweighted(probs, shares), shares, cfg.pseudo_threshold, "classifier")
            right = float((unlabeled.labels[kept.index] == kept.labels).float().mean())
            row[stated] = {
                "kept": len(kept.index),
                "kept_per_class": kept.per_class(train.num_classes),
                "right": round(100 * right, 1),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"data": args.data, "shot": args.shot, "rows": rows, "env": environment()}, indent=1))


if __name__ == "__main__":
    main()
