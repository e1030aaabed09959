"""Does synthetic data help a classifier on *your* data? The gain protocol behind `augmentor bench`.

For every shot count and seed:
  1. a held-out real test set (fixed across seeds) never touches GAN training, classifier training or
     any choice; a validation part is carved out of the training images for choosing the classical
     augmentation (preset or none) and the mix ratio;
  2. the GANs are trained on that setting's training images only (with unlabelled images: one more GAN that
     also learns from them through pseudo-labels);
  3. the same classifier (SmallCNN, same steps) is trained in each arm of ``ARMS`` (records: which use
     synthetic images, augmentation, balancing, and what replaces a share of each batch), and arm E at the
     ratio chosen on validation;
  4. quality: FID, KID, precision and recall in the feature space of a SmallCNN trained on the real
     training pool, and memorization (nearest-neighbour distances of samples vs held-out test images).
This module runs the command: it checks every input, runs the settings (setting.py) and writes report.md,
results.json and PNG plots (report.py, pictures.py). When synthetic data does not beat the
best arm without it, the report says so and recommends ratio 0.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Optional

import torch

from .. import data, run
from ..config import InitConfig, TrainConfig
from ..data import augmentation as augmentation_
from ..errors import ConfigError, Interrupted, writable_folder
from ..gan import distributed, metrics, transfer
from ..semi.classifier import embed, train_classifier
from ..semi.shares import expected_shares
from ..semi.unlabeled import load_unlabeled
from ..store import outputs
from ..store.rundir import SAMPLES, sample_grids
from . import report
from .arms import ARM_BY_NAME, ARMS, CHOSEN
from .options import BenchOptions, Preset
from .pictures import plot_gain, plot_neighbours
from .protocol import UNLABELED_REST, Split, environment, imbalanced, split_data
from .report import REPORT, RESULTS
from .resume import drop_settings, record_start, started_with
from .setting import run_setting


def quality(split: Split, results: list, samples: list, preset: Preset, seed: int = 0) -> dict:
    """Feature-space measures for the first seed of each shot, against a judge trained on the whole pool."""
    pool = split.pool
    judge = train_classifier(
        data.uint8_to_tanh(pool.images), pool.labels, pool.num_classes, steps=preset.clf_steps, seed=seed,
        progress="sample quality: the feature classifier",
    )  # fmt: skip
    f_pool = embed(judge, data.uint8_to_tanh(pool.images[:5000]))

    def measures(x_syn: torch.Tensor, train: data.ImageSet) -> dict:
        f_syn = embed(judge, x_syn)
        precision, recall = metrics.precision_recall(f_pool[:2000], f_syn[:2000])
        memorization = metrics.memorization(
            x_syn[:2000], data.uint8_to_tanh(train.images), data.uint8_to_tanh(split.test.images[:2000])
        )
        return {"fid": metrics.fid(f_pool, f_syn), "kid": metrics.kid(f_pool, f_syn), "precision": precision,
                "recall": recall, "memorization": memorization}  # fmt: skip

    out = {}
    for r, s in zip(results, samples):
        if r.seed == results[0].seed:
            out[str(r.shot)] = measures(s.synthetic["gan"], s.train)
            if "unlabeled" in s.synthetic:  # near-copies of the *labelled* images, as for the GAN above
                out[str(r.shot)]["unlabeled_gan"] = measures(s.synthetic["unlabeled"], s.train)
    return out


def recommend_ratio(results: list) -> float:
    """The ratio of arm E with the best mean validation score over all settings (a ratio that was trained)."""
    ratios = sorted({float(r) for res in results for r in res.val_balanced_accuracy})
    mean = {r: statistics.mean(res.val_balanced_accuracy[str(r)] for res in results) for r in ratios}
    return max(ratios, key=lambda r: (mean[r], -r))


def bench(
    out,
    options: Optional[BenchOptions] = None,
    init: InitConfig | str | None = None,
    progress: bool = True,
    resume: bool = False,
    **fields,
) -> dict:
    """Run the bench into ``out``, a new (or empty) folder. ``options``: a BenchOptions, or its fields by keyword
    (``bench("b", source="leaves/", preset="smoke")``). ``init``: a run our GANs start from (fit --init), e.g. one
    fitted on related data; an InitConfig to freeze D's first blocks too. ``resume``: continue the interrupted
    bench in ``out`` with the options it started with (give no others). Returns what results.json holds."""
    out = Path(out)
    if resume:
        if options is not None or fields or init:
            raise ConfigError("--resume continues the bench with the options it started with; give --out only")
        opts, init = started_with(out)
    else:
        opts = options if options is not None else BenchOptions(**fields)
        check_new_out(out)
    source, preset, size, shots = opts.source, opts.preset, opts.size, opts.shots
    p = opts.preset_used()
    augment_file = Path(opts.augment) if opts.augment else None
    if augment_file is not None:
        augmentation_.load_pipeline(augment_file)  # a bad file fails now, before hours of training
    split = split_data(source, size, classes=opts.classes)  # before anything is written: bad data leaves no trace
    if split.pool.num_classes < 2:
        raise ConfigError(
            f"{source or 'sklearn:digits'}: one class only; bench trains classifiers, so give labelled images of 2+ classes"
        )
    fit_steps = TrainConfig().steps
    if p.gan_steps < fit_steps:  # a short-trained GAN makes poorer training data than the user's own fit
        split.notes.append(
            f"the GANs train {p.gan_steps} steps, fewer than fit's {fit_steps}: the arms with their images may "
            "understate a generator you fit yourself (--gan-steps trains them longer)"
        )
    init = InitConfig.of(init)
    if resume:
        split.notes.append(
            "resumed after an interruption: the wall time is the last call's; each GAN's and arm's is what its own training took"
        )
    if init.init:
        start = transfer.load_source(init.init)
        frozen = f", D's first {init.freeze_d} blocks fixed" if init.freeze_d else ""
        split.notes.append(f"our GANs start from {start.path} (step {start.state['step']}; fit --init{frozen})")
    else:
        init = None
    unlabeled_images = UNLABELED_REST if opts.unlabeled_rest else None
    if opts.unlabeled:
        unlabeled_images = load_unlabeled(opts.unlabeled, split.pool)
        split.notes.append(f"unlabelled images: {opts.unlabeled} ({len(unlabeled_images)})")
    elif opts.unlabeled_rest:
        split.notes.append("unlabelled images: the pool images outside each setting's draw, their labels unused")
    if opts.unlabeled_shares:
        shares = expected_shares(split.pool, opts.unlabeled_shares)  # a malformed or mismatched value fails now
        stated = ", ".join(f"{name} {share:.2f}" for name, share in zip(split.pool.class_names, shares.tolist()))
        split.notes.append(f"the labellers expect these class shares among the unlabelled images: {stated}")
    counts = split.pool.class_counts()
    asked = bool(shots)
    if not shots:
        shots = p.shots
        if imbalanced(split.pool):  # n-shot subsets would erase the imbalance the user has
            shots = ("all",)
            split.notes.append("imbalanced data: all training images used as given, with class-balanced arms")
    for shot in shots:
        if isinstance(shot, int) and shot > min(counts):
            name = split.pool.class_names[counts.index(min(counts))]
            whose = "" if asked else f" (the {preset} preset's)"
            raise ConfigError(
                f"--shots {shot}{whose}: class '{name}' has {min(counts)} images outside the held-out test set; "
                "give --shots at most that, or --shots all"
            )
    w = distributed.world()  # under torchrun: one setting per process in turn, one report from rank 0
    train_device = str(run.resolve_device(opts.device, w))
    t0 = time.time()
    settings = [(shot, seed) for shot in shots for seed in p.seeds]
    distributed.start(w, torch.device("cpu"))  # gloo: only results travel between the processes
    distributed.gather(w, None)  # every process has checked --out before any writes in it
    writable_folder(out)
    if w.main and not resume:
        record_start(out, opts, init)
    try:
        mine = {
            i: run_setting(
                split,
                shot,
                seed,
                p,
                out,
                train_device,
                progress,
                opts.coverage,
                augment_file,
                unlabeled_images,
                init,
                opts.unlabeled_shares,
                resume,
            )
            for i, (shot, seed) in enumerate(settings)
            if i % w.size == w.rank
        }
    except (Interrupted, KeyboardInterrupt):  # Ctrl-C in a GAN's training (its checkpoint saved) or a classifier's
        raise Interrupted(
            f"interrupted; what the bench finished is kept. Resume with: augmentor bench --resume --out {out}"
        ) from None
    merged = {i: d for part in distributed.gather(w, mine) for i, d in part.items()}
    done = [merged[i] for i in range(len(settings))]
    if not w.main:
        distributed.stop(w)
        return {}
    results, samples = [r for r, _ in done], [s for _, s in done]
    summary = report.summarize(results)
    metric = "balanced_accuracy" if any(r.imbalanced for r in results) else "accuracy"
    helped, lines = report.verdict(summary, metric, ARM_BY_NAME, CHOSEN.name)
    results_json = {
        "source": split.name,
        "preset": preset,
        "size": size,
        "test_images": len(split.test),
        "pool_images": len(split.pool),
        "class_names": list(split.pool.class_names),
        "primary_metric": metric,
        "recommended_ratio": recommend_ratio(results) if helped else 0.0,
        "chosen_ratio_per_seed": [r.chosen_ratio for r in results],
        "augmentation_per_seed": [r.augmentation for r in results],
        "synthetic_helped": helped,
        "arms": {a.name: dataclasses.asdict(a) for a in (*ARMS, CHOSEN)},
        "summary": summary,
        "quality": quality(split, results, samples, p),
        "notes": split.notes,
        "settings": [dataclasses.asdict(r) for r in results],
        "wall_seconds": round(time.time() - t0, 1),
        "env": {
            **environment(),
            "device": opts.device,
            "preset": p.__dict__,
        },
    }
    plot_neighbours(samples[0].synthetic["gan"], data.uint8_to_tanh(samples[0].train.images), out / "nearest_neighbours.png")
    write_report(out, results_json, lines, copy_sample_grids(results, out))
    drop_settings(out)  # what a resume would need: the report holds the figures now
    distributed.stop(w)
    return results_json


def check_new_out(out: Path) -> None:
    """--out must be a new or empty folder: a bench's report, plots and GAN runs never land among the user's files."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; choose a new --out folder")
    if out.is_dir() and any(out.iterdir()):
        what = "holds a bench already" if (out / RESULTS).exists() else "is not empty"
        raise ConfigError(f"{out}: {what}; choose a new --out folder")
    outputs.check_writable(out, "--out")


def write_report(out: Path, results_json: dict, lines: list, sample_grids: dict) -> None:
    """results.json, gain.png and report.md (the results written first: a report never outlives its figures)."""
    outputs.write(out / RESULTS, lambda f: f.write(json.dumps(results_json, indent=2, default=str).encode()))
    plot_gain(results_json["summary"], results_json["primary_metric"], out / "gain.png")
    results_json["sample_grids"] = sample_grids
    text = report.render(results_json, lines)
    outputs.write(out / REPORT, lambda f: f.write(text.encode()))


def copy_sample_grids(results: list, out: Path) -> dict:
    """The last sample grid of each shot setting's first GAN, beside the report (the runs may not be kept)."""
    grids = {}
    for r in results:
        name = report.grid_name(r.shot)
        found = sample_grids(Path(r.gan_run) / SAMPLES)
        if found and str(r.shot) not in grids:
            outputs.write(out / name, lambda f, grid=found[-1][1]: f.write(grid.read_bytes()))
            grids[str(r.shot)] = name
    return grids
