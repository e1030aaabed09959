"""Does the coverage term fix within-class collapse on tiny MNIST, and does it make mixing pay?

    python benchmarks/diversity.py --shots 10 20 --seeds 0 1 2 --jobs 2      # the study in README
    python benchmarks/diversity.py --report results/diversity.jsonl            # table from saved rows

For each n-shot training set (drawn from the 5,000-image MNIST pool; the other 5,000 digits are the
test set, never used for anything but the final number) and each generator recipe, it trains the GAN,
then measures:
- CAS: a SmallCNN trained on 5,000 synthetic images only, tested on real test digits;
- real + aug + syn vs real + aug: the same SmallCNN and steps, classical augmentation (albumentations
  affine + elastic, as in the findings), half of each batch replaced by synthetic images in the first;
- diversity ratio, recall and nearest-real ratio (augmentor.metrics, 200 samples per class), the
  fraction of samples nearer to a training image than the median train-to-train distance, ms per step.
Each finished job is one JSON line, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = {  # name → TrainConfig overrides (and "precision", the Trainer's; default auto)
    "adv": {},
    "cov5": {"coverage": 5.0, "coverage_k": 8},
    "cov5-fp32": {"coverage": 5.0, "coverage_k": 8, "precision": "fp32"},
    "cov20": {"coverage": 20.0, "coverage_k": 8},
    "cov5-feat": {"coverage": 5.0, "coverage_k": 8, "coverage_space": "feature"},
}
HERE = Path(__file__).resolve().parent


def digit_augment():
    import albumentations as A

    return A.Compose(
        [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.08, 0.08), rotate=(-12, 12), shear=(-8, 8), p=1.0),
            A.ElasticTransform(alpha=34, sigma=4, p=0.5),
        ]
    )


def run_job(shot: int, seed: int, variant: str, steps: int, clf_steps: int, width: int, workdir: Path) -> dict:
    from common import environment, mnist_pool_test

    from augmentor import Sampler, data, fit
    from augmentor.config import TrainConfig
    from augmentor.gain.options import PRESETS
    from augmentor.gain.protocol import train_protocol_classifier
    from augmentor.gan.metrics import ClassReference, memorization
    from augmentor.semi.classifier import predict, train_classifier

    torch.set_num_threads(1)  # two jobs share 2 cores: one thread each (two 2-thread jobs thrash)
    _, pool, test = mnist_pool_test()
    train = pool.subset(data.per_class_subset(pool, shot, seed))
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(test.images), test.labels.numpy()
    aug = digit_augment()

    def accuracy(model):
        return float((predict(model, x_test).argmax(1) == y_test).mean())

    row = {
        "shot": shot,
        "seed": seed,
        "variant": variant,
        "steps": steps,
        "width": width,
        "code": code_version(),
        "env": environment(),
    }
    protocol = dataclasses.replace(PRESETS["quick"], clf_steps=clf_steps)  # the bench's classifier, these steps
    if variant == "real+aug":
        return {**row, "accuracy": accuracy(train_protocol_classifier(x_train, y_train, 10, protocol, seed, augment=aug))}

    options = dict(VARIANTS[variant])
    precision = options.pop("precision", "auto")
    tcfg = TrainConfig(steps=steps, seed=seed, **options)
    run_dir = workdir / f"{variant}-{shot}shot-seed{seed}"
    fit(run_dir, train, tcfg, {"width": width}, precision=precision, force=True, progress=False, checkpoint_every=steps)
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    row["precision"] = precision  # as asked; "auto" is bf16 on CPUs with native bf16
    row["ms_per_step"] = round(1000 * log[-1]["time"] / steps, 1)  # the training loop only (the log's clock)

    sampler = Sampler(run_dir, device="cpu")  # the exported generator, as a user would sample it
    y_syn = torch.arange(5000) % 10
    x_syn = sampler.sample(5000, y_syn, seed=10_000 + seed)
    row["cas"] = accuracy(train_classifier(x_syn, y_syn, 10, steps=clf_steps, seed=seed))

    # real + aug, then half of each batch replaced by synthetic images (not augmented): the bench's arm E 0.5
    row["real_aug_syn"] = accuracy(
        train_protocol_classifier(x_train, y_train, 10, protocol, seed, augment=aug, extra=sampler, ratio=0.5)
    )

    ref = ClassReference(x_train, y_train, 10)
    per = [ref.compare(x_syn[y_syn == c][:200], c) for c in range(10)]
    for key in ("diversity", "recall", "nearest_real"):
        row[key] = round(statistics.mean(p[key] for p in per), 4)
    # memorization: samples nearer to a training image than the median train-to-train NN distance
    row["frac_nearer_than_median_train_nn"] = memorization(x_syn[:2000], x_train, x_test[:2000])["near_copy_fraction"]
    return row


def code_version() -> str:
    """The commit the study ran on, so rows of different code versions are never mixed up."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def report(rows: list) -> str:
    by = {}
    for r in rows:
        by.setdefault((r["shot"], r["variant"]), []).append(r)

    def ms(key, rs):
        v = [r[key] for r in rs if key in r]
        if not v:
            return "—"
        scale = 100 if key in ("accuracy", "cas", "real_aug_syn", "frac_nearer_than_median_train_nn") else 1
        mean = statistics.mean(v) * scale
        sd = statistics.stdev(v) * scale if len(v) > 1 else 0.0
        return f"{mean:.1f} ± {sd:.1f}" if scale == 100 else f"{mean:.2f} ± {sd:.2f}"

    lines = [
        "| shots | recipe | seeds | CAS % | real+aug+syn % | real+aug % (paired) | diversity | recall | nearest-real | near-copies % | ms/step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shot in sorted({k[0] for k in by}):
        base = by.get((shot, "real+aug"), [])
        for variant in [v for v in VARIANTS if (shot, v) in by]:
            rs = by[(shot, variant)]
            lines.append(
                f"| {shot} | {variant} | {len(rs)} | {ms('cas', rs)} | {ms('real_aug_syn', rs)} | {ms('accuracy', base)} | "
                f"{ms('diversity', rs)} | {ms('recall', rs)} | {ms('nearest_real', rs)} | "
                f"{ms('frac_nearer_than_median_train_nn', rs)} | {ms('ms_per_step', rs)} |"
            )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--clf-steps", type=int, default=1000)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=1, help="parallel worker processes (one torch thread each)")
    ap.add_argument("--out", default=str(HERE / "results" / "diversity.jsonl"))
    ap.add_argument("--report", default=None, help="only print the table of a saved .jsonl")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.report:
        print(report([json.loads(x) for x in Path(args.report).read_text().splitlines() if x.strip()]))
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(s, seed, v) for s in args.shots for seed in args.seeds for v in ["real+aug", *args.variants]]
    done = set()
    if out.exists():
        done = {(r["shot"], r["seed"], r["variant"]) for r in map(json.loads, out.read_text().splitlines()) if r}
    todo = [j for j in jobs if j not in done]
    if args.worker is None and args.jobs > 1:  # fan out: worker i takes every jobs-th job
        cmd = [sys.executable, __file__, *sys.argv[1:]]
        procs = [
            subprocess.Popen([*cmd, "--worker", str(i)], env={**os.environ, "OMP_NUM_THREADS": "1"}) for i in range(args.jobs)
        ]
        for p in procs:
            p.wait()
    else:
        mine = todo if args.worker is None else todo[args.worker :: args.jobs]
        for i, (shot, seed, variant) in enumerate(mine):
            t0 = time.time()
            with tempfile.TemporaryDirectory() as workdir:
                row = run_job(shot, seed, variant, args.steps, args.clf_steps, args.width, Path(workdir))
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"[{i + 1}/{len(mine)}] {shot}-shot seed {seed} {variant}: {time.time() - t0:.0f}s "
                + json.dumps({k: v for k, v in row.items() if k != "env"}),
                flush=True,
            )
    if args.worker is None:
        print(report([json.loads(x) for x in out.read_text().splitlines() if x.strip()]))


if __name__ == "__main__":
    main()
