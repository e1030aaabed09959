"""Would the two pseudo-labellers do better together? (issue 15: the labels are what limits self-training)

    python labeller_ensemble.py results/bench-mnist-unlabeled-10 --data ../../shared/datasets/mnist-t10k
    python labeller_ensemble.py results/bench-pneumonia-unlabeled \\
        --data ../../shared/datasets/pneumoniamnist/pneumoniamnist_scarce_normal.npz

Per setting of a finished `augmentor bench --unlabeled-rest` (the same labelled draw, validation part, classical
augmentation and unlabelled rest): the classifier and the semi-supervised GAN label the rest as `fit --unlabeled`
does (the bench preset's steps and threshold, the labelled class shares as prior and cap); the ensemble averages
their probabilities. For each labeller (and confidence threshold, `--thresholds 0.9 0.5 0`; the labelling GAN's
steps, `--labeller-steps 6000`): kept, right, and SELF (real + aug, half of each batch pseudo-labelled;
balanced labels on imbalanced data, as the bench), the bench's classifier and steps, on its held-out test set.
"""

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch
from common import bench_classifier, environment

from augmentor import data
from augmentor.augmentation import RealResampler, augment_batch
from augmentor.augmentation import preset as classical
from augmentor.bench import PRESETS, carve_validation, choose_training_images, imbalanced, rest_of_pool, scores, split_data
from augmentor.classifier import predict, train_classifier
from augmentor.semisupervised import label_probabilities, train_labelling_gan
from augmentor.unlabeled import _confident, expected_shares, pseudo_labelled, reweighted

LABELLERS = ("classifier", "gan", "ensemble")


def setting(split, p, chosen_setting: dict, thresholds) -> dict:
    shot, seed = chosen_setting["shot"], chosen_setting["seed"]
    chosen = choose_training_images(split.pool, shot, seed)
    train, _ = carve_validation(split.pool.subset(chosen), seed)
    unlabeled = rest_of_pool(split.pool, chosen)
    k = train.num_classes
    is_imbalanced = imbalanced(train)
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    aug = classical(train.channels, seed)

    # The two labellers, as unlabeled.pseudo_label runs them
    shares = expected_shares(train)
    with torch.random.fork_rng(devices=[]):
        labeller = train_classifier(x_train, y_train, k, steps=p.pseudo_steps, seed=seed, balanced=True,
                                    augment=lambda xb, yb: (augment_batch(aug, xb), yb))  # fmt: skip
        p_classifier = reweighted(torch.from_numpy(predict(labeller, data.uint8_to_tanh(unlabeled.images))), shares)
    start = _confident(p_classifier, shares, p.pseudo_threshold, "classifier")
    gan = train_labelling_gan(train, unlabeled, unlabeled.images[start.index], start.labels, p.labeller_steps, seed)
    p_gan = reweighted(label_probabilities(gan, unlabeled), shares)
    probs = {"classifier": p_classifier, "gan": p_gan, "ensemble": (p_classifier + p_gan) / 2}

    def self_training(pseudo) -> dict:
        use_aug = chosen_setting["augmentation"] != "none"
        extra = RealResampler(
            pseudo_labelled(unlabeled, pseudo, train.class_names), classical(train.channels, seed) if use_aug else None
        )
        aug = classical(train.channels, seed) if use_aug else None
        model = bench_classifier(x_train, y_train, k, p, seed, aug, extra, labels="balanced" if is_imbalanced else "match")
        return scores(predict(model, data.uint8_to_tanh(split.test.images)), split.test.labels.numpy())

    row = {"shot": shot, "seed": seed}
    for name in LABELLERS:
        for threshold in thresholds:
            pseudo = _confident(probs[name], shares, threshold, name)
            right = float((unlabeled.labels[pseudo.index] == pseudo.labels).float().mean())
            test = self_training(pseudo)
            row[f"{name} {threshold:g}"] = {"kept": len(pseudo.index), "right": round(100 * right, 2),
                                            **{m: round(100 * v, 2) for m, v in test.items()}}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="a finished `bench --unlabeled-rest`")
    ap.add_argument("--data", required=True)
    ap.add_argument("--thresholds", type=float, nargs="+", default=None, help="default: the bench preset's")
    ap.add_argument("--out", type=Path, default=None, help="default: BENCH/labeller_ensemble.json")
    ap.add_argument("--labeller-steps", type=int, default=None, help="the semi-supervised GAN's (default: the preset's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="only these settings of the bench")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench = json.loads((args.bench / "results.json").read_text())
    p = PRESETS[bench["preset"]]
    if args.labeller_steps:
        p = dataclasses.replace(p, labeller_steps=args.labeller_steps)
    split = split_data(args.data, bench["size"])
    thresholds = args.thresholds or [p.pseudo_threshold]
    rows = [setting(split, p, s, thresholds) for s in bench["settings"] if args.seeds is None or s["seed"] in args.seeds]
    metric = bench["primary_metric"]
    for name in (f"{labeller} {t:g}" for labeller in LABELLERS for t in thresholds):
        values = [r[name][metric] for r in rows]
        print(f"{name:<15} SELF {metric} {statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f} "
              f"({', '.join(map(str, values))}); kept {[r[name]['kept'] for r in rows]}, right {[r[name]['right'] for r in rows]}")  # fmt: skip
    (args.out or args.bench / "labeller_ensemble.json").write_text(json.dumps({"env": environment(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
