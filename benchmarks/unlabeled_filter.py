"""Does keeping only the synthetic images a self-trained classifier agrees with make the unlabelled-images GAN
add to self-training? A probe on a finished `augmentor bench --unlabeled-rest` (it reuses its GAN runs).

    python benchmarks/unlabeled_filter.py results/bench-mnist-unlabeled-10 --data ../../shared/datasets/mnist-t10k

Per seed of the bench: the same labelled draw, unlabelled rest and pseudo-labels as the bench; a judge = SELF's
classifier (labelled + pseudo-labelled images); 20,000 samples of the U generator, kept where the judge gives
their conditioning label with confidence ≥ 0.9; then, paired in this run (same classifier seed and steps as the
bench): SELF, SELF+U, SELF+U-filtered. Accuracy on the bench's held-out test set.
"""

import argparse
import json
from pathlib import Path

import torch
from common import bench_classifier, mean_spread, probe_bench_settings

from augmentor import Sampler, data
from augmentor.augmentation import RealResampler, SharedSource, preset
from augmentor.bench import carve_validation, choose_training_images, rest_of_pool
from augmentor.classifier import predict
from augmentor.unlabeled import pseudo_labelled, read_pseudo_labels


def probe(setting: dict, split, p, bench: Path, threshold: float) -> dict:
    shot, seed = setting["shot"], setting["seed"]
    chosen = choose_training_images(split.pool, shot, seed)
    train, _ = carve_validation(split.pool.subset(chosen), seed)
    run = bench / "runs" / f"unlabeled-shot{str(shot).replace('%', 'pct')}-seed{seed}"
    unlabeled = rest_of_pool(split.pool, chosen)
    pseudo = pseudo_labelled(unlabeled, read_pseudo_labels(run), train.class_names)
    k = train.num_classes
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()

    def fit(extra: list):
        """Real + aug, half of each batch from the pseudo-labelled images and the extra sources, in equal shares."""
        sources = [RealResampler(pseudo, preset(train.channels, seed)), *extra]
        extra_source = SharedSource(sources) if len(sources) > 1 else sources[0]
        return bench_classifier(x_train, y_train, k, p, seed, preset(train.channels, seed), extra_source)

    def accuracy(model):
        return float((predict(model, x_test).argmax(1) == y_test).mean())

    self_model = fit([])
    generator = Sampler(run, device="cpu")
    y_syn = torch.arange(20_000) % k
    x_syn = generator.sample(20_000, y_syn, seed=seed)
    probs = torch.from_numpy(predict(self_model, x_syn))
    keep = (probs.argmax(1) == y_syn) & (probs.max(1).values >= threshold)
    kept = data.ImageSet(data.tanh_to_uint8(x_syn[keep]), y_syn[keep], list(train.class_names), "filtered synthetic")
    return {
        "shot": shot,
        "seed": seed,
        "kept": int(keep.sum()),
        "SELF": accuracy(self_model),
        "SELF+U": accuracy(fit([generator])),
        "SELF+U-filtered": accuracy(fit([RealResampler(kept)])),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = probe_bench_settings(
        args.bench, args.data, lambda setting, split, p: probe(setting, split, p, args.bench, args.threshold)
    )
    for arm in ("SELF", "SELF+U", "SELF+U-filtered"):
        print(f"{arm}: {mean_spread([100 * r[arm] for r in rows])}")
    (args.bench / "filter_probe.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
