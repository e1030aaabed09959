"""Related data, the other way: one conditional GAN fitted on the related classes *and* the new ones together
(DAGAN's setting: the generator learns what digits share from the classes with thousands of images), against
the same GAN from scratch and from `--init` (the finished transfer benches' runs, reused as they are).

    python transfer_joint.py --data ../../shared/datasets/mnist-t10k --shots 10 \\
        --scratch results/transfer-scratch --init results/transfer-digits04 --out results/transfer-joint-10
    (and --shots 20; and --gan-steps 1600 --out results/transfer-joint-1600-10|20: as many steps on the new classes)

With ``--ceiling`` the third GAN learns instead from every pool image of digits 5-9 with its true label (3,403):
what no related data can exceed, the most a warm start could stand in for (`--out results/transfer-ceiling-10`;
and `--gan-steps 3000`; and `--coverage 5`, which fit leaves off for 680 images a class).

Per (shot, seed) of the transfer benches (digits 5-9, the same labelled draw, validation part and classical
augmentation as `bench --classes 5,6,7,8,9 --preset quick` chose): the joint GAN trains on every MNIST image of
digits 0-4 (the `digits04` source's images) plus this setting's labelled 5-9 images, with our fit's defaults at
the quick preset's budget (width 32, 800 steps at batch 64, lr 5e-4; class-balanced batches, so half of each
batch is the new classes; coverage term on, as the new classes have ≤ 100 images). Then, paired in this run for
every generator (samples of classes 5-9 only): E 0.5 (real + aug, half of each batch synthetic), CAS (a
classifier on 2,000 samples alone) and near-copies (`metrics.memorization`, as `nearcopies.py`), and B.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from common import bench_classifier, environment

from augmentor import Sampler, data, run
from augmentor.augmentation import RealResampler
from augmentor.augmentation import preset as classical
from augmentor.bench import PRESETS, carve_validation, choose_training_images, split_data
from augmentor.classifier import predict, train_classifier
from augmentor.config import TrainConfig
from augmentor.metrics import memorization

NEW, RELATED = "5,6,7,8,9", "0,1,2,3,4"


def joint_set(related: data.ImageSet, train: data.ImageSet) -> data.ImageSet:
    """The related classes first (indices 0..r-1), then the new ones (r..r+k-1)."""
    return data.ImageSet(
        torch.cat([related.images, train.images]),
        torch.cat([related.labels, train.labels + related.num_classes]),
        [*related.class_names, *train.class_names],
        f"{related.source} + {train.source}",
    )


def setting(args, split, related, bench: dict, shot: int, seed: int) -> dict:
    p = PRESETS["quick"]
    chosen_aug = next(s["augmentation"] for s in bench["settings"] if s["shot"] == shot and s["seed"] == seed)
    train, _ = carve_validation(split.pool.subset(choose_training_images(split.pool, shot, seed)), seed)
    k = train.num_classes
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    x_near_test = x_test[:2000]

    third = "ceiling" if args.ceiling else "joint"
    directory = args.out / "runs" / f"{third}-shot{shot}-seed{seed}"
    if not (directory / "generator.onnx").exists():
        cfg = TrainConfig(
            steps=args.gan_steps or p.gan_steps, batch_size=p.batch_size, lr=5e-4, seed=seed, coverage=args.coverage
        )  # None: fit decides, as bench
        gan_set = split.pool if args.ceiling else joint_set(related, train)
        run.fit(directory, gan_set, cfg, {"width": p.width}, force=True, progress=False,
                sample_every=p.gan_steps // 4, checkpoint_every=p.gan_steps)  # fmt: skip
    benches = {"scratch": args.scratch / "runs" / f"shot{shot}-seed{seed}", "init": args.init / "runs" / f"shot{shot}-seed{seed}"}
    generators = {  # name → (sampler, index of the first new class in its model); the benches' runs where kept
        name: (Sampler(path, device="cpu"), 0) for name, path in benches.items() if (path / "generator.onnx").exists()
    }
    generators[third] = (Sampler(directory, device="cpu"), 0 if args.ceiling else related.num_classes)

    def classifier(extra=None):
        aug = classical(train.channels, seed) if chosen_aug == "preset" else None
        return bench_classifier(x_train, y_train, k, p, seed, aug, RealResampler(extra) if extra is not None else None)

    def accuracy(model) -> float:
        return round(100 * float((predict(model, x_test).argmax(1) == y_test).mean()), 2)

    row = {"shot": shot, "seed": seed, "augmentation": chosen_aug, "B": accuracy(classifier())}
    y_syn = torch.arange(p.n_synthetic) % k
    for name, (sampler, first) in generators.items():
        x_syn = sampler.sample(p.n_synthetic, y_syn + first, seed=seed)
        bank = data.ImageSet(data.tanh_to_uint8(x_syn), y_syn, list(train.class_names), f"{name} samples")
        row[f"{name} E 0.5"] = accuracy(classifier(bank))
        row[f"{name} CAS"] = accuracy(train_classifier(x_syn, y_syn, k, steps=p.clf_steps, seed=seed))
        row[f"{name} near-copies"] = round(100 * memorization(x_syn, x_train, x_near_test)["near_copy_fraction"], 1)
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--shots", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--scratch", type=Path, required=True, help="the from-scratch transfer bench")
    ap.add_argument("--init", type=Path, required=True, help="the --init runs/digits04 transfer bench")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gan-steps", type=int, default=None, help="the joint GAN's steps (default: the quick preset's, 800)")
    ap.add_argument("--coverage", type=float, default=None, help="the third GAN's coverage weight (default: fit decides)")
    ap.add_argument("--ceiling", action="store_true", help="the third GAN learns from every pool image of 5-9, true labels")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench = json.loads((args.scratch / "results.json").read_text())
    split = split_data(args.data, bench["size"], classes=NEW)
    related = data.select_classes(data.load(args.data, size=bench["size"]), RELATED)
    rows = [setting(args, split, related, bench, shot, seed) for shot in args.shots for seed in args.seeds]
    summary = {}
    for shot in args.shots:
        mine = [r for r in rows if r["shot"] == shot]
        summary[shot] = {
            key: f"{statistics.mean(r[key] for r in mine):.2f} ± {statistics.stdev(r[key] for r in mine) if len(mine) > 1 else 0:.2f}"
            for key in mine[0]
            if key not in ("shot", "seed", "augmentation")
        }
        print(shot, json.dumps(summary[shot], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"env": environment(), "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
