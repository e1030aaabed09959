"""Should synthetic images get the same classical augmentation as the real ones? A probe on a finished
`augmentor bench --unlabeled-rest` (it reuses its GAN runs). It led to the bench's U-aug and SELF+U-aug arms;
its E and U feed synthetic images unaugmented.

    cd benchmarks && python synthetic_augment.py results/bench-mnist-unlabeled-10 --data ../../shared/datasets/mnist-t10k

Per seed of the bench, paired in this run (its labelled draw, classifier seed and steps): B real + aug; E and U
(half of each batch from the labelled-only / the unlabelled-images GAN) as the bench runs them, and again with
the bench's augmentation applied to the synthetic half (SyntheticMix's ``transform``, as a user would with
albumentations). Accuracy on the bench's held-out test set.
"""

import argparse
import json
from pathlib import Path

import torch
from common import bench_classifier, mean_spread, probe_bench_settings

from augmentor import Sampler, data
from augmentor.augmentation import augment_batch, load_pipeline, preset
from augmentor.bench import carve_validation, choose_training_images
from augmentor.classifier import predict


def probe(setting: dict, split, p, bench: Path, augment) -> dict:
    shot, seed = setting["shot"], setting["seed"]
    train, _ = carve_validation(split.pool.subset(choose_training_images(split.pool, shot, seed)), seed)
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    make_aug = (lambda: load_pipeline(augment, seed)) if augment else (lambda: preset(train.channels, seed))
    tag = str(shot).replace("%", "pct")

    def accuracy(extra=None, augmented=False) -> float:
        aug = make_aug()
        transform = (lambda x: augment_batch(aug, data.unit_to_tanh(x))) if augmented else data.unit_to_tanh
        model = bench_classifier(x_train, y_train, train.num_classes, p, seed, aug, extra, transform=transform)
        return 100 * float((predict(model, x_test).argmax(1) == y_test).mean())

    row = {"shot": shot, "seed": seed, "B": accuracy()}
    for arm, run in (("E", f"shot{tag}-seed{seed}"), ("U", f"unlabeled-shot{tag}-seed{seed}")):
        generator = Sampler(bench / "runs" / run, device="cpu")
        row[arm] = accuracy(generator)
        row[f"{arm} aug"] = accuracy(generator, augmented=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--data", default=None)
    ap.add_argument("--augment", default=None, help="the bench's --augment file, if it had one")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the per-seed rows (default: in the bench folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = probe_bench_settings(
        args.bench, args.data, lambda setting, split, p: probe(setting, split, p, args.bench, args.augment)
    )
    for arm in ("B", "E", "E aug", "U", "U aug"):
        print(f"{arm}: {mean_spread([r[arm] for r in rows])}")
    (args.out or args.bench / "synthetic_augment.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
