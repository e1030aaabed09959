"""Can the unlabelled images' class shares be estimated when the labelled draw is even? (--unlabeled-shares)

An n-per-class draw says nothing about how the unlabelled images are split, and a labeller trained on balanced
batches over-calls the class that is rarer among them (strawberry seed 1: 534 of 1,075 called healthy, 309 are).
Told the shares, the kept labels are right far more often (unlabeled_shares.py). This probe asks whether the
labelled and unlabelled images alone give them, on the bench's own draws (the pool's labels only score):

- ``em``: Saerens et al. 2002, EM on the labeller's probabilities (the prior that explains them best);
- ``bbse`` / ``bbse-soft``: black-box shift estimation (Lipton et al. 2018): k-fold labellers on the labelled
  images give a confusion matrix on their held-out part; the same labellers' calls on the unlabelled images,
  corrected by it, give the shares (hard calls, or mean probabilities);
- ``em-ts``: EM on probabilities calibrated by a temperature fitted on the held-out folds (Alexandari et al.
  2020: calibration is what EM needs).

    cd benchmarks && python share_estimate.py --data ../../shared/datasets/plantvillage-strawberry --size 64 \\
        --out results/share-estimate-strawberry64.json
"""

import argparse
import json
import time
from pathlib import Path

import torch
from common import environment

from augmentor import data
from augmentor.bench import PRESETS, carve_validation, choose_training_images, rest_of_pool, split_data
from augmentor.config import UnlabeledConfig
from augmentor.unlabeled import classifier_probabilities, drop_labelled


def em_prior(probs: torch.Tensor, iters: int = 200) -> torch.Tensor:
    """The class prior that best explains ``probs`` (made under an even prior)."""
    q = torch.full((probs.shape[1],), 1.0 / probs.shape[1], dtype=torch.float64)
    p = probs.double()
    for _ in range(iters):
        post = p * q
        post = post / post.sum(1, keepdim=True)
        q = post.mean(0)
    return q


def solve_shares(confusion: torch.Tensor, called: torch.Tensor) -> torch.Tensor:
    """q with confusion @ q = called (confusion[i, j] = P(call i | class j)), clipped to ≥ 0 and normalised."""
    q = torch.linalg.lstsq(confusion.double(), called.double().unsqueeze(1)).solution.flatten()
    q = q.clamp(min=0)
    return q / q.sum()


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the held-out negative log-likelihood (grid: 1 to 100)."""
    grid = torch.logspace(0, 2, 60)
    nll = [float(torch.nn.functional.cross_entropy(log_probs / t, labels)) for t in grid]
    return float(grid[int(torch.tensor(nll).argmin())])


def folds(labels: torch.Tensor, k: int, seed: int) -> list:
    """k stratified folds of the labelled images (indices)."""
    g = torch.Generator().manual_seed(seed)
    parts = [[] for _ in range(k)]
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        for j, i in enumerate(idx.tolist()):
            parts[j % k].append(i)
    return [torch.tensor(p) for p in parts]


def estimates(train, unlabeled, cfg, seed: int, k: int) -> dict:
    n_cls = train.num_classes
    held_probs, held_labels, unl_probs = [], [], []
    for fold in folds(train.labels, k, seed):
        held_out = set(fold.tolist())
        rest = torch.tensor([i for i in range(len(train)) if i not in held_out])
        both = data.ImageSet(torch.cat([train.images[fold], unlabeled.images]), torch.cat([train.labels[fold], unlabeled.labels]),
                             list(train.class_names), "held-out + unlabelled")  # fmt: skip
        probs = classifier_probabilities(train.subset(rest), both, cfg, seed)
        held_probs.append(probs[: len(fold)])
        held_labels.append(train.labels[fold])
        unl_probs.append(probs[len(fold) :])
    held, held_y = torch.cat(held_probs), torch.cat(held_labels)
    unl = torch.stack(unl_probs)  # (k, N, C)
    eye = torch.eye(n_cls)
    hard_conf = torch.stack([eye[held.argmax(1)][held_y == c].mean(0) for c in range(n_cls)], 1)
    soft_conf = torch.stack([held[held_y == c].mean(0) for c in range(n_cls)], 1)
    called_hard = eye[unl.argmax(2)].mean((0, 1))
    called_soft = unl.mean((0, 1))
    log_held = held.clamp_min(1e-12).log()
    t = fit_temperature(log_held, held_y)
    calibrated = torch.softmax(unl.clamp_min(1e-12).log() / t, 2).mean(0)
    full = classifier_probabilities(train, unlabeled, cfg, seed)
    return {
        "held_out_right": round(float((held.argmax(1) == held_y).float().mean()), 3),
        "temperature": round(t, 2),
        "called (full labeller)": eye[full.argmax(1)].mean(0),
        "em": em_prior(full),
        "em (fold labellers)": em_prior(unl.mean(0)),
        "bbse": solve_shares(hard_conf, called_hard),
        "bbse-soft": solve_shares(soft_conf, called_soft),
        "em-ts": em_prior(calibrated),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--shot", type=int, default=10)
    ap.add_argument("--classes", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = PRESETS["quick"]
    cfg = UnlabeledConfig(pseudo_threshold=p.pseudo_threshold, pseudo_steps=p.pseudo_steps, pseudo_labeller="classifier")
    split = split_data(args.data, args.size, classes=args.classes)
    rows = []
    for seed in args.seeds:
        start = time.time()
        chosen = choose_training_images(split.pool, args.shot, seed)
        train, _ = carve_validation(split.pool.subset(chosen), seed)
        unlabeled = drop_labelled(rest_of_pool(split.pool, chosen), train)
        true = torch.bincount(unlabeled.labels, minlength=train.num_classes).double() / len(unlabeled)
        est = estimates(train, unlabeled, cfg, seed, args.folds)
        row = {"seed": seed, "classes": list(train.class_names), "true": [round(float(v), 3) for v in true]}
        for name, value in est.items():
            if isinstance(value, torch.Tensor):
                row[name] = [round(float(v), 3) for v in value]
                row[name + " L1 error"] = round(float((value.double() - true).abs().sum()), 3)
            else:
                row[name] = value
        row["seconds"] = round(time.time() - start)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(
            json.dumps({"data": args.data, "shot": args.shot, "folds": args.folds, "rows": rows, "env": environment()}, indent=1)
        )


if __name__ == "__main__":
    main()
