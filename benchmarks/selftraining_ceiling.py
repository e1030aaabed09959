"""How far can self-training with the semi-supervised GAN's labels go at the bench's quick scale? (issue 15's
stretch: 98 % on MNIST at 10 labelled per class, "as good as labelling the whole pool")

    python benchmarks/selftraining_ceiling.py results/bench-mnist-unlabeled-10 --data ../../shared/datasets/mnist-t10k

ceiling  the quick preset's classifier (SmallCNN, 400 steps at batch 64, classical augmentation) on the whole
         7,000-image pool with its true labels, 3 seeds: what labelling everything would give
share    SELF-G's protocol (real + aug, a share of each batch from the GAN-labelled unlabelled images that the
         finished bench's runs stored) at shares 0.5 (the bench's) to 1.0: is the 0.5 share what holds it back?
--oracle SELF-G at share 0.5 twice more, with true labels: for the images the labeller kept (what its wrong
         labels cost), and for every unlabelled image (what the images it was unsure of would add)
"""

import argparse
import json
import statistics
from pathlib import Path

import torch
from common import bench_classifier, environment

from augmentor import data
from augmentor.augmentation import RealResampler, augment_batch, preset
from augmentor.bench import PRESETS, carve_validation, choose_training_images, split_data
from augmentor.classifier import predict, train_classifier
from augmentor.unlabeled import pseudo_labelled, read_pseudo_labels

SEEDS = (0, 1, 2)
SHARES = (0.5, 0.75, 0.9, 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="a finished `bench --unlabeled-rest` on MNIST (its runs hold the labels)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    ap.add_argument("--no-ceiling", action="store_true", help="skip the whole-pool classifier")
    ap.add_argument("--oracle", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench = json.loads((args.bench / "results.json").read_text())
    shot, p = int(bench["settings"][0]["shot"]), PRESETS["quick"]
    split = split_data(args.data, bench["size"])
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()

    def accuracy(model) -> float:
        return round(100 * float((predict(model, x_test).argmax(1) == y_test).mean()), 2)

    rows = {}
    for seed in args.seeds:
        if not args.no_ceiling:
            aug = preset(split.pool.channels, seed)
            model = train_classifier(data.uint8_to_tanh(split.pool.images), split.pool.labels, split.pool.num_classes,
                                     steps=p.clf_steps, batch_size=p.batch_size, seed=seed,
                                     augment=lambda x, y, aug=aug: (augment_batch(aug, x), y))  # fmt: skip
            rows.setdefault("ceiling", []).append(accuracy(model))
        chosen = choose_training_images(split.pool, shot, seed)
        rest = torch.ones(len(split.pool), dtype=torch.bool)
        rest[chosen] = False
        train, _ = carve_validation(split.pool.subset(chosen), seed)
        unlabeled = split.pool.subset(torch.nonzero(rest).flatten())
        labels = read_pseudo_labels(args.bench / "runs" / f"unlabeled-shot{shot}-seed{seed}")
        pseudo = pseudo_labelled(unlabeled, labels, train.class_names)
        x_train, y_train = data.uint8_to_tanh(train.images), train.labels
        extra = {}
        if args.oracle:
            kept = unlabeled.subset(labels.index)  # the same images, their true labels
            extra = {"SELF-G kept, true labels": (0.5, kept), "SELF-G all unlabelled, true labels": (0.5, unlabeled)}
        runs = {f"SELF-G share {share}": (share, pseudo) for share in args.shares}
        for name, (share, images) in {**runs, **extra}.items():  # as the bench's SELF-G arm, with another share
            model = bench_classifier(x_train, y_train, train.num_classes, p, seed, preset(train.channels, seed),
                                     RealResampler(images, preset(train.channels, seed)), share)  # fmt: skip
            rows.setdefault(name, []).append(accuracy(model))
        print(seed, {k: v[-1] for k, v in rows.items()}, flush=True)
    summary = {k: (round(statistics.mean(v), 2), round(statistics.stdev(v), 2) if len(v) > 1 else 0.0) for k, v in rows.items()}
    for k, (mean, std) in summary.items():
        print(f"{k:22s} {mean:.2f} ± {std:.2f}  {rows[k]}")
    if args.out:
        args.out.write_text(
            json.dumps({"bench": str(args.bench), "rows": rows, "summary": summary, "env": environment()}, indent=1)
        )


if __name__ == "__main__":
    main()
