"""Which anomaly score of a trained GAN works, against simple baselines run the same way.

    python benchmarks/anomaly.py --seeds 0 1 2 --threads 1       # MNIST one-class (every digit) + PneumoniaMNIST
    python benchmarks/anomaly.py --tasks "mnist 0" "mnist 1" --out a.json; ... --merge a.json b.json   # in parts

MNIST: for each digit, an unconditional GAN trains on that digit's images in the 5,000-image pool; the
held-out 5,000 test digits are scored (normal = that digit, anomalies = the rest). PneumoniaMNIST: the GAN
trains on the normal X-rays of the train split; the official test split is scored. Every method of
``augmentor.anomaly.METHODS`` (fitted on the same normal training images), one candidate fusion more, and two
baselines on raw pixels: IsolationForest and nearest-neighbour distance. AUROC on held-out images only;
one GAN per seed (the seed of everything in fit), mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import environment, mnist_pool_test, require
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from augmentor import data, run
from augmentor.anomaly.scorer import METHODS, AnomalyScorer, Method
from augmentor.config import ModelConfig, TrainConfig
from augmentor.gan.models import build_discriminator, without_spectral_norm
from augmentor.store.rundir import read_config

HERE = Path(__file__).resolve().parent
CANDIDATES = {**METHODS, "fused_with_residual": Method(("features", "mahalanobis", "residual"), "candidate")}
# on raw pixels, and the sceptic's control for "features": the same score from a discriminator nobody trained
BASELINES = ("pixels_isolation_forest", "pixels_knn", "pixels_knn_cosine", "untrained_d_features")


def cosine_knn(reference: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    unit = lambda t: torch.nn.functional.normalize(t.flatten(1), dim=1)  # noqa: E731
    return (1 - (unit(x) @ unit(reference).T).max(1).values).numpy()


def evaluate(normal: data.ImageSet, test_x: torch.Tensor, is_anomaly: np.ndarray, args, seed: int, workdir: Path) -> dict:
    x_norm = data.uint8_to_tanh(normal.images)
    t0 = time.time()
    train = TrainConfig(steps=args.steps, coverage=0.0, seed=seed)
    run.fit(workdir, normal, train, {"width": args.width}, progress=False, sample_every=args.steps, checkpoint_every=args.steps)
    out = {"gan_seconds": round(time.time() - t0, 1)}
    t0 = time.time()
    scorer = AnomalyScorer(workdir, method="residual").fit(x_norm, encoder_steps=args.encoder_steps)
    out["fit_seconds"] = round(time.time() - t0, 1)
    t0 = time.time()
    for name, scores in scorer.scores(test_x, CANDIDATES).items():
        out[name] = roc_auc_score(is_anomaly, scores)
    out["score_seconds"] = round(time.time() - t0, 1)
    flat_norm, flat_test = x_norm.flatten(1).numpy(), test_x.flatten(1).numpy()
    forest = IsolationForest(random_state=seed).fit(flat_norm)
    out["pixels_isolation_forest"] = roc_auc_score(is_anomaly, -forest.score_samples(flat_test))
    out["pixels_knn"] = roc_auc_score(is_anomaly, torch.cdist(test_x.flatten(1), x_norm.flatten(1)).min(1).values.numpy())
    out["pixels_knn_cosine"] = roc_auc_score(is_anomaly, cosine_knn(x_norm, test_x))
    torch.manual_seed(seed)
    untrained = without_spectral_norm(build_discriminator(ModelConfig.from_dict(read_config(workdir)["model"])))
    with torch.no_grad():
        out["untrained_d_features"] = roc_auc_score(
            is_anomaly, cosine_knn(untrained.features(x_norm, None), untrained.features(test_x, None))
        )
    return out


def tasks():
    """(name, normal training images, test images in [-1, 1], is-anomaly labels) for every one-class task."""
    _, pool, test = mnist_pool_test()
    test_x = data.uint8_to_tanh(test.images)
    for d in range(10):
        normal = pool.subset(torch.nonzero(pool.labels == d).flatten())
        normal = data.ImageSet(normal.images, torch.zeros(len(normal), dtype=torch.long), [str(d)], f"mnist digit {d}")
        yield f"mnist {d}", normal, test_x, (test.labels != d).numpy()
    npz = str(require("pneumoniamnist") / "pneumoniamnist_scarce_normal.npz")
    train, ptest = data.load(npz, size=32, split="train"), data.load(npz, size=32, split="test")
    yield "pneumonia", data.select_classes(train, "0"), data.uint8_to_tanh(ptest.images), (ptest.labels != 0).numpy()


def table(rows: dict, seeds) -> str:
    methods = [*CANDIDATES, *BASELINES]

    def cell(vals):
        return f"{statistics.mean(vals):.3f}" + (f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else "")

    lines = ["| data | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
    for task, per_seed in rows.items():
        lines.append(f"| {task} | " + " | ".join(cell([per_seed[str(s)][m] for s in seeds]) for m in methods) + " |")
    mnist = [r for t, r in rows.items() if t.startswith("mnist")]
    if mnist:  # per seed, the mean over digits; then mean ± std over seeds
        means = {m: [statistics.mean(r[str(s)][m] for r in mnist) for s in seeds] for m in methods}
        lines.append("| **MNIST mean** | " + " | ".join(f"**{cell(means[m])}**" for m in methods) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--encoder-steps", type=int, default=500)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=None, help="e.g. 'mnist 3' pneumonia (default: all)")
    ap.add_argument("--out", default=str(HERE / "results" / "anomaly.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--merge", nargs="+", default=None, help="result files of jobs on different --tasks: one table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        merged = {**parts[0], "rows": {k: v for p in parts for k, v in p["rows"].items()}}
        print(table(merged["rows"], merged["seeds"]))
        Path(args.out).write_text(json.dumps(merged, indent=2))
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, normal, test_x, is_anomaly in tasks():
            if args.tasks and name not in args.tasks:
                continue
            rows[name] = {}
            for seed in args.seeds:
                work = Path(tmp) / f"{name.replace(' ', '')}-{seed}"
                rows[name][str(seed)] = r = evaluate(normal, test_x, is_anomaly, args, seed, work)
                print(f"{name} seed {seed}: " + json.dumps({k: round(v, 4) for k, v in r.items()}), flush=True)
    print("\n" + table(rows, args.seeds))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("steps", "encoder_steps", "width", "seeds")}
    Path(args.out).write_text(json.dumps({"rows": rows, **settings, "env": environment()}, indent=2))


if __name__ == "__main__":
    main()
