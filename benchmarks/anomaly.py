"""Is the discriminator a usable anomaly detector? Against simple baselines run the same way.

    python benchmarks/anomaly.py --steps 600              # MNIST one-class (every digit) + PneumoniaMNIST

MNIST: for each digit, an unconditional GAN trains on that digit's images in the 5,000-image pool; the
held-out 5,000 test digits are scored (normal = that digit, anomalies = the rest). PneumoniaMNIST: the GAN
trains on the normal X-rays of the train split; the official test split is scored. Methods: the
discriminator's logit, the distance of D's features to the nearest training features, and two baselines
on raw pixels: IsolationForest and nearest-neighbour distance. AUROC on held-out images only.
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
from augmentor.anomaly import AnomalyScorer
from augmentor.config import TrainConfig

HERE = Path(__file__).resolve().parent


def evaluate(normal: data.ImageSet, test_x: torch.Tensor, is_anomaly: np.ndarray, steps: int, width: int, workdir: Path) -> dict:
    x_norm = data.uint8_to_tanh(normal.images)
    t0 = time.time()
    run.fit(
        workdir,
        normal,
        TrainConfig(steps=steps, lr=2e-4, coverage=0.0),
        {"width": width},
        progress=False,
        sample_every=steps,
        checkpoint_every=steps,
    )
    out = {"gan_seconds": round(time.time() - t0, 1)}
    out["discriminator"] = roc_auc_score(is_anomaly, AnomalyScorer(workdir).score(test_x))
    out["d_features_knn"] = roc_auc_score(is_anomaly, AnomalyScorer(workdir, method="features").fit(x_norm).score(test_x))
    flat_norm, flat_test = x_norm.flatten(1).numpy(), test_x.flatten(1).numpy()
    forest = IsolationForest(random_state=0).fit(flat_norm)
    out["pixels_isolation_forest"] = roc_auc_score(is_anomaly, -forest.score_samples(flat_test))
    out["pixels_knn"] = roc_auc_score(is_anomaly, torch.cdist(test_x.flatten(1), x_norm.flatten(1)).min(1).values.numpy())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--out", default=str(HERE / "results" / "anomaly.json"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        _, pool, test = mnist_pool_test()
        test_x = data.uint8_to_tanh(test.images)
        for d in args.digits:
            normal = pool.subset(torch.nonzero(pool.labels == d).flatten())
            normal = data.ImageSet(normal.images, torch.zeros(len(normal), dtype=torch.long), [str(d)], f"mnist digit {d}")
            rows[f"mnist {d}"] = evaluate(normal, test_x, (test.labels != d).numpy(), args.steps, args.width, Path(tmp) / f"d{d}")
            print(f"mnist {d}: " + json.dumps({k: round(v, 4) for k, v in rows[f"mnist {d}"].items()}), flush=True)
        npz = str(require("pneumoniamnist") / "pneumoniamnist_scarce_normal.npz")
        train, ptest = data.load(npz, size=32, split="train"), data.load(npz, size=32, split="test")
        normal = data.select_classes(train, "0")
        rows["pneumonia"] = evaluate(
            normal, data.uint8_to_tanh(ptest.images), (ptest.labels != 0).numpy(), args.steps, args.width, Path(tmp) / "pn"
        )
        print("pneumonia: " + json.dumps({k: round(v, 4) for k, v in rows["pneumonia"].items()}), flush=True)

    methods = ["discriminator", "d_features_knn", "pixels_isolation_forest", "pixels_knn"]
    mnist = [r for k, r in rows.items() if k.startswith("mnist")]
    print("\n| data | " + " | ".join(methods) + " |\n| --- |" + " --- |" * len(methods))
    for k, r in rows.items():
        print(f"| {k} | " + " | ".join(f"{r[m]:.3f}" for m in methods) + " |")
    if mnist:
        print("| **MNIST mean** | " + " | ".join(f"**{statistics.mean(r[m] for r in mnist):.3f}**" for m in methods) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"rows": rows, "steps": args.steps, "width": args.width, "env": environment()}, indent=2)
    )


if __name__ == "__main__":
    main()
