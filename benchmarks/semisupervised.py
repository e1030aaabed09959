"""Who labels the unlabelled images better: the classifier alone, or the semi-supervised GAN that starts from
it? And is it the GAN — its generator's samples — that makes the difference?

    python benchmarks/semisupervised.py --data ../shared/datasets/mnist-t10k --shots 10 --seeds 0 1 2

Per seed, the bench's protocol (`bench --unlabeled-rest`): the same labelled draw (less its validation part),
the rest of the pool unlabelled, the same held-out test set. The labellers, each judged by how many of the
unlabelled images it keeps at confidence ≥ 0.9 and how many of those it labels right (their true labels are
used for nothing else), and by its own accuracy on the test set:
  classifier  the SmallCNN trained on the labelled images (classical augmentation): self-training's labels
  gan         the semi-supervised GAN (augmentor/semi/semisupervised.py), started from the classifier's labels
  no-samples  the same training as "gan" without the generator (no "generated = no class" term): the control
  no-consistency  "gan" without the consistency term (the labeller of augmentor 0.4-0.5); consistency-1 and
              consistency-10 weigh it 1 and 10 instead of 3 (--labellers picks which run)
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import environment
from sklearn.metrics import balanced_accuracy_score

from augmentor import data
from augmentor.config import UnlabeledConfig
from augmentor.gain.options import PRESETS
from augmentor.gain.protocol import choose_training_images, rest_of_pool, split_data
from augmentor.semi.classifier import predict, train_classifier
from augmentor.semi.semisupervised import label_probabilities, train_labelling_gan
from augmentor.semi.shares import expected_shares, reweighted
from augmentor.semi.unlabeled import keep_confident, pseudo_label

LABELLERS = {  # train_labelling_gan's options
    "gan": {},
    "no-samples": {"without_generator": True},
    "no-consistency": {"consistency": 0.0},  # augmentor 0.4-0.5
    "consistency-1": {"consistency": 1.0},
    "consistency-10": {"consistency": 10.0},
}


def judge(probs: torch.Tensor, truth: torch.Tensor, threshold: float, labelled) -> dict:
    """What the library keeps (threshold, and the class quotas where the labelled classes are unequal)."""
    kept = keep_confident(probs, expected_shares(labelled), threshold, "judged")
    return {
        "kept": len(kept.index),
        "kept_right": round(float((kept.labels == truth[kept.index]).float().mean()), 4),
        "all_right": round(float((probs.argmax(1) == truth).float().mean()), 4),
    }


def one_seed(split, shot, seed: int, steps: int, cfg: UnlabeledConfig, labellers) -> dict:
    chosen = choose_training_images(split.pool, shot, seed)
    train, _ = data.carve_validation(split.pool.subset(chosen), seed)
    unlabeled = rest_of_pool(split.pool, chosen)
    test_x, test_y = split.test, split.test.labels
    out = {"seed": seed, "labelled": len(train), "unlabelled": len(unlabeled)}

    t0 = time.time()
    from augmentor.data import augmentation

    aug = augmentation.preset(train.channels, seed)
    clf = train_classifier(data.uint8_to_tanh(train.images), train.labels, train.num_classes, steps=cfg.pseudo_steps,
                           seed=seed, balanced=True, augment=lambda x, y: (augmentation.augment_batch(aug, x), y))  # fmt: skip
    probs = reweighted(torch.from_numpy(predict(clf, data.uint8_to_tanh(unlabeled.images))), expected_shares(train))
    out["classifier"] = judge(probs, unlabeled.labels, cfg.pseudo_threshold, train)
    out["classifier"]["test"] = round(
        float((predict(clf, data.uint8_to_tanh(test_x.images)).argmax(1) == test_y.numpy()).mean()), 4
    )
    out["classifier"]["seconds"] = round(time.time() - t0, 1)
    # the library's path, to check it gives the classifier's labels this study starts from
    start = pseudo_label(train, unlabeled, UnlabeledConfig(pseudo_labeller="classifier"), seed=seed)
    assert len(start.index) == out["classifier"]["kept"]

    for name in labellers:
        t0 = time.time()
        model = train_labelling_gan(train, unlabeled, unlabeled.images[start.index], start.labels, steps, seed,
                                    **LABELLERS[name])  # fmt: skip
        probs = reweighted(label_probabilities(model, unlabeled.images), expected_shares(train))
        out[name] = judge(probs, unlabeled.labels, cfg.pseudo_threshold, train)
        test_guess = reweighted(label_probabilities(model, test_x.images), expected_shares(train)).argmax(1)
        out[name]["test"] = round(float((test_guess == test_y).float().mean()), 4)
        out[name]["test_balanced"] = round(float(balanced_accuracy_score(test_y, test_guess)), 4)
        out[name]["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--shots", default="10", help="labelled images per class, or a share such as 10%%")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=PRESETS["quick"].labeller_steps)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--labellers", nargs="+", choices=list(LABELLERS), default=["gan", "no-consistency", "no-samples"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shot = args.shots if args.shots.endswith("%") else int(args.shots)
    split = split_data(args.data, args.size)
    p = PRESETS["quick"]
    cfg = UnlabeledConfig(pseudo_threshold=p.pseudo_threshold, pseudo_steps=p.pseudo_steps)
    rows = [one_seed(split, shot, s, args.steps, cfg, args.labellers) for s in args.seeds]
    summary = {}
    for name in ("classifier", *args.labellers):
        summary[name] = {
            k: (
                round(statistics.mean(r[name][k] for r in rows), 4),
                round(statistics.stdev([r[name][k] for r in rows]), 4) if len(rows) > 1 else 0.0,
            )
            for k in ("kept", "kept_right", "all_right", "test")
        }
        print(name, summary[name])
    if args.out:
        args.out.write_text(json.dumps({"data": args.data, "shots": args.shots, "steps": args.steps, "rows": rows,
                                        "summary": summary, "env": environment()}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
