"""Does the coverage term dull the unlabelled-images GAN's samples, and is that why augmenting them hurts on the
X-rays? A probe on a finished `augmentor bench --unlabeled-rest` (its draws, pseudo-labels, preset and test set).

    cd benchmarks && python coverage_texture.py results/bench-pneumonia-unlabeled-070-seeds01 \
        --data ../../shared/datasets/pneumoniamnist/pneumoniamnist_scarce_normal.npz

Per seed of the bench, U's GAN is fitted again on the same training set (the labelled images and the bench
run's pseudo-labelled ones, read from its pseudo_labels.json), as the bench fits it but for the coverage term
and the length: each ``--variants`` entry is "SPACE:WEIGHT[:STEPS]" (``coverage_space``, ``coverage``, GAN
steps, the bench's preset's by default); "bench" is the bench's own run.
For each generator: per-image contrast (standard deviation in [-1, 1], per class) of 1,000 samples against
its training images, and, paired in this run, the bench's U, U-aug, SELF+U and SELF+U-aug arms on its
held-out test set (primary metric, as the bench reports it).
"""

import argparse
import json
from pathlib import Path

import torch
from common import bench_classifier, mean_spread, probe_bench_settings

from augmentor import Sampler, data, run
from augmentor.augmentation import AugmentedSamples, RealResampler, SharedSource, pipeline_or_preset
from augmentor.bench import carve_validation, choose_training_images, imbalanced, rest_of_pool, scores
from augmentor.classifier import predict, train_classifier
from augmentor.config import TrainConfig
from augmentor.unlabeled import drop_labelled, pseudo_labelled, read_pseudo_labels, with_pseudo_labelled

ARMS = ("U", "U-aug", "SELF+U", "SELF+U-aug")


def contrast(images: torch.Tensor, labels: torch.Tensor, k: int) -> list:
    """Mean per-image standard deviation of each class, images in [-1, 1]."""
    per_image = images.float().flatten(1).std(dim=1)
    return [round(float(per_image[labels == c].mean()), 3) for c in range(k)]


def probe(setting: dict, split, p, bench: Path, variants: list, metric: str, augment) -> dict:
    shot, seed = setting["shot"], setting["seed"]
    pool = split.pool
    chosen = choose_training_images(pool, shot, seed)
    train, _ = carve_validation(pool.subset(chosen), seed)
    unlabeled = drop_labelled(rest_of_pool(pool, chosen), train)
    tag = str(shot).replace("%", "pct")
    bench_run = bench / "runs" / f"unlabeled-shot{tag}-seed{seed}"
    pseudo = read_pseudo_labels(bench_run)
    gan_set = with_pseudo_labelled(train, unlabeled, pseudo)
    by_gan = pseudo_labelled(unlabeled, pseudo, train.class_names)
    k = train.num_classes
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    labels = "balanced" if imbalanced(train) else "match"  # as the bench mixes

    def make_aug():
        return None if setting["augmentation"] == "none" else pipeline_or_preset(augment, train.channels, seed)

    def source(arm: str, gen, aug):
        """What replaces half of each batch in ``arm``, as the bench builds it."""
        synthetic = AugmentedSamples(gen, aug) if arm.endswith("-aug") and aug is not None else gen
        return SharedSource([RealResampler(by_gan, aug), synthetic]) if arm.startswith("SELF+U") else synthetic

    def score(arm: str, gen) -> float:
        aug = make_aug()
        model = bench_classifier(x_train, y_train, k, p, seed, aug, source(arm, gen, aug), labels=labels)
        return 100 * scores(predict(model, x_test), y_test)[metric]

    row = {"shot": shot, "seed": seed, "real contrast": contrast(data.uint8_to_tanh(gan_set.images), gan_set.labels, k)}
    row["recorded"] = {arm: 100 * setting["arms"][name][metric] for arm, name in bench_arm_names(setting).items()}
    for variant in variants:
        if variant == "bench":
            directory = bench_run
        else:
            space, weight, *length = variant.split(":")
            steps = int(length[0]) if length else p.gan_steps
            directory = bench / "runs" / f"probe-{variant.replace(':', '-')}-seed{seed}"
            cfg = TrainConfig(steps=steps, batch_size=p.batch_size, lr=5e-4, seed=seed, coverage=float(weight),
                              coverage_space=space)  # fmt: skip
            run.fit(directory, gan_set, cfg, {"width": p.width}, force=True, progress=False,
                    sample_every=max(1, steps // 4), checkpoint_every=steps)  # fmt: skip
        gen = Sampler(directory, device="cpu")
        y_syn = torch.arange(1000) % k
        result = {"contrast": contrast(gen.sample(1000, y_syn, seed=seed), y_syn, k)}
        x_cas = gen.sample(p.n_synthetic, torch.arange(p.n_synthetic) % k, seed=seed)
        cas = train_classifier(x_cas, torch.arange(p.n_synthetic) % k, k, steps=p.clf_steps, seed=seed)
        result["CAS"] = 100 * scores(predict(cas, x_test), y_test)[metric]
        result.update({arm: score(arm, gen) for arm in ARMS})
        row[variant] = result
    return row


def bench_arm_names(setting: dict) -> dict:
    """The bench's names of the probe's arms (what each arm's figure in results.json is called)."""
    wanted = {"U": "U real+aug", "U-aug": "U-aug", "SELF+U": "SELF+U real+aug", "SELF+U-aug": "SELF+U-aug"}
    return {arm: next(n for n in setting["arms"] if n.startswith(prefix)) for arm, prefix in wanted.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--data", default=None)
    ap.add_argument("--augment", default=None, help="the bench's --augment file, if it had one")
    ap.add_argument("--variants", nargs="+", default=["bench", "pixel:5", "pixel:0", "coarse:5"])
    ap.add_argument("--out", type=Path, default=None, help="JSON of the per-seed rows (default: in the bench folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    metric = json.loads((args.bench / "results.json").read_text())["primary_metric"]
    rows = probe_bench_settings(
        args.bench, args.data, lambda s, split, p: probe(s, split, p, args.bench, args.variants, metric, args.augment)
    )
    for variant in args.variants:
        print(variant, "contrast", [r[variant]["contrast"] for r in rows], "real", [r["real contrast"] for r in rows])
        for arm in ("CAS", *ARMS):
            print(f"  {arm}: {mean_spread([r[variant][arm] for r in rows])}")
    (args.out or args.bench / "coverage_texture.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
