"""Does synthetic data help a classifier on *your* data? The gain protocol behind `augmentor bench`.

For every shot count and seed:
  1. a held-out real test set (fixed across seeds) never touches GAN training, classifier training or
     any choice; a validation part is carved out of the training images for choosing the mix ratio;
  2. a GAN is trained on that setting's training images only;
  3. the same classifier (SmallCNN, same steps) is trained in each arm:
       A real · B real + classical augmentation · C real + class-balanced sampling (imbalanced data only)
       D real + synthetic through SyntheticMix at ratios 0.25 and 0.5 · E real + classical + synthetic at the
       ratio chosen on validation · F synthetic only (classification accuracy score, CAS);
  4. quality: FID, KID, precision and recall in the feature space of a SmallCNN trained on the real
     training pool, and memorization (nearest-neighbour distances of samples vs held-out test images).
Writes report.md, results.json and PNG plots. When synthetic data does not help, the report says so and
recommends ratio 0.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from . import __version__, data, metrics, run
from .classifier import embed, predict, train_classifier
from .config import TrainConfig
from .errors import ConfigError
from .mix import SyntheticMix
from .sampler import Sampler

log = logging.getLogger("augmentor")

RATIOS = (0.25, 0.5)


@dataclass(frozen=True)
class Preset:
    shots: tuple  # images per class (see parse_shots for the other settings)
    seeds: tuple
    gan_steps: int
    clf_steps: int
    width: int
    batch_size: int = 64
    n_synthetic: int = 2000
    reference: bool = False  # also train the tutorials' plain recipe, to show what our training adds


PRESETS = {
    # ~15 minutes on 2 CPU cores for sklearn:digits
    "quick": Preset(shots=(10,), seeds=(0, 1, 2), gan_steps=800, clf_steps=400, width=32, reference=True),
    # for a GPU: the protocol of the README's tables
    "full": Preset(
        shots=(10, 20, 50, 100), seeds=(0, 1, 2), gan_steps=3000, clf_steps=1000, width=64, n_synthetic=5000, reference=True
    ),
    # seconds: a dry run of every step, for tests
    "smoke": Preset(shots=(6,), seeds=(0, 1), gan_steps=3, clf_steps=3, width=8, batch_size=16, n_synthetic=60, reference=True),
}


@dataclass
class Split:
    pool: data.ImageSet  # every non-test image: n-shot sets are drawn from it
    test: data.ImageSet
    name: str = ""
    notes: list = field(default_factory=list)


def split_data(source: Optional[str], size: int, test_fraction: float = 0.3) -> Split:
    """Held-out test set: the source's own test split when it has one (.npz), else a seeded stratified part."""
    if source and source.endswith(".npz"):
        try:
            test = data.load(source, size=size, split="test")
            pool = data.load(source, size=size, split="train")
            return Split(pool, test, source, ["test set: the file's own test split"])
        except data.DataError:
            pass
    full = data.load(source, size=size)
    pool_idx, test_idx = data.stratified_split(full, test_fraction, seed=12345)
    return Split(
        full.subset(pool_idx),
        full.subset(test_idx),
        full.source,
        [f"test set: a stratified {test_fraction:.0%} of the data (seed 12345)"],
    )


def classical_augmentation(channels: int, seed: int = 0):
    """Domain-appropriate defaults: gray → small affine + brightness/contrast, no flips (digits, X-rays);
    color → flips, rotation and color jitter (leaves, photos)."""
    import albumentations as A

    if channels == 1:
        return A.Compose(
            [
                A.Affine(scale=(0.9, 1.1), translate_percent=(-0.08, 0.08), rotate=(-12, 12), shear=(-8, 8), p=1.0),
                A.RandomBrightnessContrast(0.1, 0.15, p=0.5),
            ],
            seed=seed,  # albumentations draws from its own random state: seed it, or arms are not reproducible
        )
    return A.Compose(
        [
            A.HorizontalFlip(),
            A.VerticalFlip(),
            A.Rotate(limit=30, border_mode=4, p=1.0),  # reflect
            A.ColorJitter(0.2, 0.2, 0.2, 0.02, p=0.8),
        ],
        seed=seed,
    )


def augment_batch(aug, x: torch.Tensor) -> torch.Tensor:
    """albumentations on each image of a [-1, 1] float batch, through uint8 HWC as a user's pipeline would."""
    u8 = data.tanh_to_uint8(x).permute(0, 2, 3, 1).numpy()
    out = np.stack([aug(image=im)["image"] for im in u8])
    out = out[..., None] if out.ndim == 3 else out
    return data.uint8_to_tanh(torch.from_numpy(out).permute(0, 3, 1, 2))


class AugmentedBatches:
    """A DataLoader's batches with classical augmentation applied: what SyntheticMix wraps in arm E."""

    def __init__(self, loader, aug):
        self.loader, self.aug = loader, aug

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield augment_batch(self.aug, x), y


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    pred = probs.argmax(1)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
    }
    if probs.shape[1] == 2 and len(np.unique(y)) == 2:
        out["auroc"] = float(roc_auc_score(y, probs[:, 1]))
    return out


def carve_validation(train: data.ImageSet, seed: int) -> tuple:
    """20 % of each class (at least one image of a class that has ≥ 3) for choosing the ratio."""
    kept, val = data.stratified_split(train, 0.2, seed)
    return train.subset(kept), train.subset(val)


def parse_shots(text: str) -> tuple:
    """'10,20' → images per class; '10%' → a stratified 10 % of the training images (imbalance kept); 'all'."""
    shots = []
    for item in text.split(","):
        item = item.strip()
        try:
            if item == "all":
                shots.append("all")
            elif item.endswith("%") and 0 < float(item[:-1]) < 100:
                shots.append(f"{float(item[:-1]):g}%")
            elif int(item) >= 1:
                shots.append(int(item))
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--shots: '{item}' is not a count per class (10), a share of the data (10%) or 'all'") from None
    return tuple(shots)


def describe(shot) -> str:
    """A shot setting (or its key in results.json) in words."""
    shot = str(shot)
    if shot == "all":
        return "all training images"
    if shot.endswith("%"):
        return f"{shot} of the training images"
    return f"{shot} images per class"


def choose_training_images(pool: data.ImageSet, shot, seed: int) -> torch.Tensor:
    if shot == "all":
        return torch.arange(len(pool))
    if isinstance(shot, str):  # "10%": the same share of every class, so the imbalance stays as it was
        return data.stratified_split(pool, float(shot[:-1]) / 100, seed)[1].sort().values
    return data.per_class_subset(pool, shot, seed)


def run_setting(
    split: Split,
    shot,
    seed: int,
    preset: Preset,
    out: Path,
    device: str,
    progress: bool,
    coverage: Optional[float] = None,
) -> dict:
    pool = split.pool
    chosen = choose_training_images(pool, shot, seed)
    train, val = carve_validation(pool.subset(chosen), seed)
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    x_val, y_val = data.uint8_to_tanh(val.images), val.labels.numpy()
    k = pool.num_classes
    aug = classical_augmentation(pool.channels, seed)
    counts = train.class_counts()
    imbalanced = max(counts) > 1.5 * max(1, min(counts))

    # The GANs see this setting's training images only.
    def train_gan(name: str, train_cfg: TrainConfig, options: dict) -> Sampler:
        directory = out / "runs" / f"{name}shot{str(shot).replace('%', 'pct')}-seed{seed}"
        run.fit(
            directory,
            train,
            train_cfg,
            {"width": preset.width, **options},
            device=device,
            force=True,
            progress=progress,
            sample_every=max(1, preset.gan_steps // 4),
            checkpoint_every=preset.gan_steps,
        )
        return Sampler(directory, device="cpu")

    t0 = time.time()
    sampler = train_gan(
        "", TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, lr=5e-4, seed=seed, coverage=coverage), {}
    )
    gan_seconds = time.time() - t0

    def loader():
        ds = TensorDataset(x_train, y_train)
        sampler_ = RandomSampler(
            ds, replacement=True, num_samples=preset.clf_steps * preset.batch_size, generator=torch.Generator().manual_seed(seed)
        )
        return DataLoader(ds, batch_size=preset.batch_size, sampler=sampler_)

    def fit_clf(**kw):
        return train_classifier(x_train, y_train, k, steps=preset.clf_steps, batch_size=preset.batch_size, seed=seed, **kw)

    def mixed(ratio, classical, source=sampler):
        base = AugmentedBatches(loader(), aug) if classical else loader()
        labels = "balanced" if imbalanced else "match"  # imbalanced data: synthetic images top up the rare classes
        return iter(SyntheticMix(base, source, ratio=ratio, labels=labels, transform=data.unit_to_tanh, seed=seed))

    def evaluate(model, xs=x_test, ys=y_test):
        return scores(predict(model, xs), ys)

    arms = {}
    arms["A real"] = evaluate(fit_clf())
    classical = lambda x, y: (augment_batch(aug, x), y)  # noqa: E731
    models_e = {0.0: fit_clf(augment=classical)}  # ratio 0 of arm E is arm B
    arms["B real+aug"] = evaluate(models_e[0.0])
    if imbalanced:
        arms["C real+balanced"] = evaluate(fit_clf(balanced=True))
        arms["C' real+aug+balanced"] = evaluate(fit_clf(augment=classical, balanced=True))
    for r in RATIOS:
        arms[f"D real+syn {r}"] = evaluate(fit_clf(batches=mixed(r, classical=False)))
        models_e[r] = fit_clf(batches=mixed(r, classical=True))

    # E: the ratio is chosen on the validation images (ties go to the smaller ratio); the test set plays no part.
    val_scores = {r: evaluate(m, x_val, y_val)["balanced_accuracy"] for r, m in models_e.items()}
    best = max(val_scores, key=lambda r: (val_scores[r], -r))
    arms["E real+aug+syn (chosen)"] = evaluate(models_e[best])
    for r in RATIOS:
        arms[f"E real+aug+syn {r}"] = evaluate(models_e[r])

    y_syn = torch.arange(preset.n_synthetic) % k
    x_syn = sampler.sample(preset.n_synthetic, y_syn, seed=seed)
    arms["F synthetic only (CAS)"] = evaluate(train_classifier(x_syn, y_syn, k, steps=preset.clf_steps, seed=seed))

    if preset.reference:  # the tutorials' recipe, same budget: per-class DCGANs, BCE, no DiffAugment, EMA or spectral norm
        plain = train_gan(
            "plain-",
            TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, seed=seed, diffaug="", ema_decay=0.0, coverage=0.0),
            {"mode": "per-class" if k >= 2 else "unconditional", "spectral_norm": False},
        )
        arms["R plain GAN: real+aug+syn 0.5"] = evaluate(fit_clf(batches=mixed(0.5, classical=True, source=plain)))
        x_plain = plain.sample(preset.n_synthetic, y_syn, seed=seed)
        arms["R plain GAN: synthetic only (CAS)"] = evaluate(
            train_classifier(x_plain, y_syn, k, steps=preset.clf_steps, seed=seed)
        )

    return {
        "shot": shot,
        "seed": seed,
        "train_images": len(train),
        "val_images": len(val),
        "imbalanced": imbalanced,
        "gan_seconds": round(gan_seconds, 1),
        "arms": arms,
        "val_balanced_accuracy": {str(r): v for r, v in val_scores.items()},
        "chosen_ratio": best,
        "gan_run": str(sampler.path.parent),  # the directory train_gan named
        "x_syn": x_syn,
        "train": train,
    }


def quality(split: Split, results: list, preset: Preset, seed: int = 0) -> dict:
    """Feature-space measures for the first seed of each shot, against a judge trained on the whole pool."""
    pool = split.pool
    judge = train_classifier(data.uint8_to_tanh(pool.images), pool.labels, pool.num_classes, steps=preset.clf_steps, seed=seed)
    f_pool = embed(judge, data.uint8_to_tanh(pool.images[:5000]))
    out = {}
    for r in results:
        if r["seed"] != results[0]["seed"]:
            continue
        f_syn = embed(judge, r["x_syn"])
        precision, recall = metrics.precision_recall(f_pool[:2000], f_syn[:2000])
        out[str(r["shot"])] = {
            "fid": metrics.fid(f_pool, f_syn),
            "kid": metrics.kid(f_pool, f_syn),
            "precision": precision,
            "recall": recall,
            "memorization": metrics.memorization(
                r["x_syn"][:2000], data.uint8_to_tanh(r["train"].images), data.uint8_to_tanh(split.test.images[:2000])
            ),
        }
    return out


def summarize(results: list) -> dict:
    """mean ± std over seeds, per shot and arm and metric."""
    table = {}
    for r in results:
        for arm, sc in r["arms"].items():
            for metric, v in sc.items():
                table.setdefault(str(r["shot"]), {}).setdefault(arm, {}).setdefault(metric, []).append(v)
    return {
        shot: {
            arm: {
                m: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "values": v}
                for m, v in ms.items()
            }
            for arm, ms in arms.items()
        }
        for shot, arms in table.items()
    }


def verdict(summary: dict, metric: str) -> tuple:
    """(did synthetic data help, sentences). The synthetic side is arm E at the ratio chosen on validation
    (what a user would deploy, chosen without the test set); it counts as a gain only when it beats the best
    arm without synthetic data by more than the larger of the two seed spreads."""
    lines, helped = [], False
    chosen = "E real+aug+syn (chosen)"
    for shot, arms in summary.items():
        real_arms = {a: v[metric] for a, v in arms.items() if "syn" not in a and "CAS" not in a}
        best_real = max(real_arms, key=lambda a: real_arms[a]["mean"])
        gain = 100 * (arms[chosen][metric]["mean"] - real_arms[best_real]["mean"])
        noise = 100 * max(arms[chosen][metric]["std"], real_arms[best_real]["std"])
        if len(arms[chosen][metric]["values"]) < 2:
            lines.append(
                f"- {describe(shot)}: {chosen} vs the best arm without it ({best_real}): {gain:+.1f} points ({metric}); "
                "one seed only, so no spread to judge a gain by: run more seeds before relying on it."
            )
            continue
        if gain > noise:
            helped = True
            lines.append(
                f"- {describe(shot)}: **synthetic data helped**: {chosen} beat {best_real} by {gain:+.1f} points ({metric}; seed spread {noise:.1f})."
            )
        else:
            lines.append(
                f"- {describe(shot)}: **synthetic data did not help**: {chosen} vs the best arm without it ({best_real}): "
                f"{gain:+.1f} points ({metric}), not more than the seed spread of {noise:.1f}."
            )
    return helped, lines


def bench(
    source: Optional[str],
    out,
    preset: str = "quick",
    size: int = 32,
    device: str = "auto",
    progress: bool = True,
    seeds: Optional[tuple] = None,
    coverage: Optional[float] = None,
    shots: Optional[tuple] = None,
) -> dict:
    """``shots``: the training sets to draw (see parse_shots); default the preset's n per class, or all
    images when the data are imbalanced (n-shot sets would erase the imbalance)."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset} is not one of {', '.join(PRESETS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; choose a new --out folder")
    if (out / "results.json").exists():
        raise ConfigError(f"{out}: holds a bench already; choose a new --out")
    p = PRESETS[preset]
    if seeds:
        p = dataclasses.replace(p, seeds=tuple(seeds))
    split = split_data(source, size)  # before anything is written: bad data leaves no trace
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot write here ({e.strerror or e})") from None
    counts = split.pool.class_counts()
    if not shots:
        shots = p.shots
        if max(counts) > 1.5 * max(1, min(counts)):  # n-shot subsets would erase the imbalance the user has
            shots = ("all",)
            split.notes.append("imbalanced data: all training images used as given, with class-balanced arms")
    t0 = time.time()
    results = [run_setting(split, shot, seed, p, out, device, progress, coverage) for shot in shots for seed in p.seeds]
    qual = quality(split, results, p)
    summary = summarize(results)
    metric = "balanced_accuracy" if any(r["imbalanced"] for r in results) else "accuracy"
    helped, lines = verdict(summary, metric)
    ratios = [r["chosen_ratio"] for r in results]
    recommended = statistics.median(ratios) if helped else 0.0
    report = {
        "source": split.name,
        "preset": preset,
        "size": size,
        "test_images": len(split.test),
        "pool_images": len(split.pool),
        "primary_metric": metric,
        "recommended_ratio": recommended,
        "chosen_ratio_per_seed": ratios,
        "synthetic_helped": helped,
        "summary": summary,
        "quality": qual,
        "notes": split.notes,
        "settings": [{k: v for k, v in r.items() if k not in ("x_syn", "train")} for r in results],
        "wall_seconds": round(time.time() - t0, 1),
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "augmentor": __version__,
            "threads": torch.get_num_threads(),
            "device": device,
            "preset": p.__dict__,
        },
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    plot_gain(summary, metric, out / "gain.png")
    plot_neighbours(results[0], out / "nearest_neighbours.png")
    report["sample_grids"] = copy_sample_grids(results, out)
    (out / "report.md").write_text(render(report, lines))
    return report


def copy_sample_grids(results: list, out: Path) -> dict:
    """The last sample grid of each shot setting's first GAN, beside the report (the runs may not be kept)."""
    grids = {}
    for r in results:
        name = f"samples_{str(r['shot']).replace('%', 'pct')}.png"
        found = sorted((Path(r["gan_run"]) / "samples").glob("step_*.png"))
        if found and str(r["shot"]) not in grids:
            shutil.copyfile(found[-1], out / name)
            grids[str(r["shot"])] = name
    return grids


def render(report: dict, lines: list) -> str:
    m = report["primary_metric"]
    md = [
        f"# augmentor bench: {report['source']}",
        "",
        f"Preset `{report['preset']}`, {report['size']} px, {report['pool_images']} pool images, {report['test_images']} held-out "
        f"test images ({'; '.join(report['notes'])}). Seeds {report['env']['preset']['seeds']}; mean ± std over seeds. "
        f"Primary metric: {m.replace('_', ' ')}.",
        "",
        "## Verdict",
        "",
        *lines,
        "",
        f"Recommended mix ratio: **{report['recommended_ratio']}**"
        + (
            " (synthetic data did not help here, so: none)."
            if not report["synthetic_helped"]
            else " (median of the ratios chosen on validation)."
        ),
        "",
        "## Classifier arms (held-out test set)",
        "",
    ]
    for shot, arms in report["summary"].items():
        metric_names = list(next(iter(arms.values())))
        md += [
            f"### {describe(shot)}",
            "",
            "| arm | " + " | ".join(metric_names) + " |",
            "| --- |" + " --- |" * len(metric_names),
        ]
        for arm, ms in arms.items():
            md.append(
                f"| {arm} | " + " | ".join(f"{100 * ms[k]['mean']:.1f} ± {100 * ms[k]['std']:.1f}" for k in metric_names) + " |"
            )
        md.append("")
    md += [
        "## Sample quality (first seed; features of a SmallCNN trained on the real pool)",
        "",
        "| shots | FID | KID | precision | recall | near-copies | median NN distance: synthetic→train / test→train |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shot, q in report["quality"].items():
        mem = q["memorization"]
        md.append(
            f"| {shot} | {q['fid']:.2f} | {q['kid']:.4f} | {q['precision']:.2f} | {q['recall']:.2f} | {100 * mem['near_copy_fraction']:.1f} % | "
            f"{mem['syn_to_train_median']:.3f} / {mem['test_to_train_median']:.3f} |"
        )
    md += [
        "",
        "Near-copies: synthetic images nearer to a training image than the median train-to-train nearest-neighbour distance.",
        "",
        "![gain](gain.png)",
        "",
        "![nearest neighbours](nearest_neighbours.png)",
        "",
    ]
    for shot, name in report["sample_grids"].items():
        md += [f"Samples, {describe(shot)} (first seed; one row per class):", "", f"![samples]({name})", ""]
    md += [
        f"GAN runs (checkpoints, all sample grids, logs): `runs/`. Wall time {report['wall_seconds']:.0f} s; "
        f"torch {report['env']['torch']}, augmentor {report['env']['augmentor']}, {report['env']['threads']} thread(s).",
        "",
    ]
    return "\n".join(md)


def plot_gain(summary: dict, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = list(summary)
    arms = list(summary[shots[0]])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(arms) * len(shots)), 4))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        means = [100 * summary[s][arm][metric]["mean"] if arm in summary[s] else np.nan for s in shots]
        stds = [100 * summary[s][arm][metric]["std"] if arm in summary[s] else 0 for s in shots]
        ax.bar(np.arange(len(shots)) + i * width, means, width, yerr=stds, capsize=3, label=arm)
    ax.set_xticks(np.arange(len(shots)) + 0.4 - width / 2, [describe(s) for s in shots])
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    low = min(100 * summary[s][a][metric]["mean"] for s in shots for a in summary[s])
    ax.set_ylim(max(0, low - 10), 100)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_neighbours(result: dict, path: Path, n: int = 8) -> None:
    """Top row: synthetic images; bottom row: the nearest training image to each (pixel features)."""
    from .plots import grid_image

    syn = result["x_syn"][:n]  # labels cycle through the classes, so these are n different classes
    train = data.uint8_to_tanh(result["train"].images)
    nn = torch.cdist(metrics.pixel_features(syn), metrics.pixel_features(train)).argmin(1)
    grid_image(torch.cat([syn, train[nn]]), rows=2).save(path)
