"""How far can self-training go at the bench's quick scale? (issue 15's stretch on MNIST: 98 % at 10 labelled
per class, "as good as labelling the whole pool"; its X-ray target: 10 % labelled as good as all of them)

    python benchmarks/selftraining_ceiling.py results/bench-mnist-unlabeled-10 --data ../../shared/datasets/mnist-t10k
    python benchmarks/selftraining_ceiling.py results/bench-pneumonia-unlabeled-070-seeds01 --no-ceiling --oracle \
        --shares 0.5 --data ../../shared/datasets/pneumoniamnist/pneumoniamnist_scarce_normal.npz

The rows use the bench's metric (balanced accuracy on imbalanced data, where the extra images top up the rare
classes as in the bench) and its classical augmentation per seed (preset or none, as its validation chose).

ceiling  the quick preset's classifier (SmallCNN, 400 steps at batch 64, classical augmentation) on the whole
         pool with its true labels, 3 seeds: what labelling everything would give
share    self-training's protocol (real + aug, a share of each batch from the pseudo-labelled unlabelled images)
         at shares 0.5 (the bench's) to 1.0: is the 0.5 share what holds it back? The labels are the GAN's that the
         bench's runs stored (SELF-G) where the runs are still there, else the classifier's, made again (SELF)
--oracle the share-0.5 arm twice more, with true labels: for the images the labeller kept (what its wrong
         labels cost), and for every unlabelled image (what the images it was unsure of would add)
"""

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch
from common import bench_classifier, environment

from augmentor import data
from augmentor.augmentation import RealResampler, augment_batch, preset
from augmentor.bench import PRESETS, carve_validation, choose_training_images, imbalanced, rest_of_pool, scores, split_data
from augmentor.classifier import predict, train_classifier
from augmentor.config import UnlabeledConfig
from augmentor.unlabeled import drop_labelled, pseudo_label, pseudo_labelled, read_pseudo_labels

SEEDS = (0, 1, 2)
SHARES = (0.5, 0.75, 0.9, 1.0)


def classical(channels: int, seed: int, on: bool):
    """A maker of fresh classical pipelines (the preset, or None where the bench's validation chose none)."""
    return lambda: preset(channels, seed) if on else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="a finished `bench --unlabeled-rest` (its runs hold the GAN's labels)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    ap.add_argument("--no-ceiling", action="store_true", help="skip the whole-pool classifier")
    ap.add_argument("--oracle", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench = json.loads((args.bench / "results.json").read_text())
    shot, p = bench["settings"][0]["shot"], PRESETS[bench["preset"]]
    augmentation = {s["seed"]: s.get("augmentation", "preset") for s in bench["settings"]}  # benches before 0.6: preset
    split = split_data(args.data, bench["size"])
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    metric = bench["primary_metric"]

    def score(model) -> float:
        return round(100 * scores(predict(model, x_test), y_test)[metric], 2)

    rows = {}
    for seed in args.seeds:
        aug = classical(split.pool.channels, seed, augmentation.get(seed, "preset") == "preset")
        if not args.no_ceiling:
            pool_aug = aug()
            model = train_classifier(data.uint8_to_tanh(split.pool.images), split.pool.labels, split.pool.num_classes,
                                     steps=p.clf_steps, batch_size=p.batch_size, seed=seed,
                                     augment=None if pool_aug is None else lambda x, y, a=pool_aug: (augment_batch(a, x), y))  # fmt: skip
            rows.setdefault("ceiling", []).append(score(model))
        chosen = choose_training_images(split.pool, shot, seed)
        train, _ = carve_validation(split.pool.subset(chosen), seed)
        unlabeled = drop_labelled(rest_of_pool(split.pool, chosen), train)
        run = args.bench / "runs" / f"unlabeled-shot{str(shot).replace('%', 'pct')}-seed{seed}"
        if run.exists():
            arm, labels = "SELF-G", read_pseudo_labels(run)
        else:  # the bench's SELF labels: its classifier labeller, same options and seed
            options = UnlabeledConfig(pseudo_threshold=p.pseudo_threshold, pseudo_steps=p.pseudo_steps)
            arm, labels = "SELF", pseudo_label(train, unlabeled, replace(options, pseudo_labeller="classifier"), seed=seed)
        pseudo = pseudo_labelled(unlabeled, labels, train.class_names)
        x_train, y_train = data.uint8_to_tanh(train.images), train.labels
        extra = {}
        if args.oracle:
            kept = unlabeled.subset(labels.index)  # the same images, their true labels
            extra = {f"{arm} kept, true labels": (0.5, kept), f"{arm} all unlabelled, true labels": (0.5, unlabeled)}
        runs = {f"{arm} share {share}": (share, pseudo) for share in args.shares}
        top_up = "balanced" if imbalanced(train) else "match"  # as the bench: the extra images top up rare classes
        for name, (share, images) in {**runs, **extra}.items():
            a = aug()  # one pipeline for the real and the extra images, as in the bench
            model = bench_classifier(
                x_train, y_train, train.num_classes, p, seed, a, RealResampler(images, a), share, labels=top_up
            )
            rows.setdefault(name, []).append(score(model))
        print(seed, {k: v[-1] for k, v in rows.items()}, flush=True)
    summary = {k: (round(statistics.mean(v), 2), round(statistics.stdev(v), 2) if len(v) > 1 else 0.0) for k, v in rows.items()}
    for k, (mean, std) in summary.items():
        print(f"{k:36s} {mean:.2f} ± {std:.2f}  {rows[k]}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {"bench": str(args.bench), "metric": metric, "rows": rows, "summary": summary, "env": environment()}, indent=1
            )
        )


if __name__ == "__main__":
    main()
