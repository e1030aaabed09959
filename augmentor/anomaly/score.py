"""`augmentor score`: every image of a data source scored into a CSV, with AUROC and heat maps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from .. import data
from ..errors import ConfigError, cannot_write, writable_folder
from ..store import outputs
from ..store.rundir import ANOMALY, MODEL_FILES, run_files
from .pictures import heatmap_names, plot_roc, write_heatmaps
from .scorer import DEFAULT_METHOD, SCORED_SPLIT, AnomalyScorer

log = logging.getLogger("augmentor")


def training_images(run_dir: Path) -> data.ImageSet:
    """The normal images a run was trained on, rebuilt from its config (for method="features")."""
    from ..run.prepare import stored_training_images
    from ..store.rundir import read_config

    cfg = read_config(run_dir)
    if cfg["data"].get("in_memory"):
        raise ConfigError(f"{run_dir}: was trained on in-memory images; use the Python API and AnomalyScorer.fit")
    return stored_training_images(Path(run_dir), cfg)[1]


def score_dataset(
    model,
    source: str,
    out: Path,
    method: str = DEFAULT_METHOD,
    split: str = SCORED_SPLIT,
    normal_classes: Optional[str] = None,
    heatmaps: Optional[Path] = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Score every image of a data source into a CSV (path or index, label, score). With ``normal_classes``,
    also AUROC / AUPRC (anomaly = any other class), a per-class table and an ROC plot beside the CSV
    (OUT.roc.png); with ``heatmaps``, one picture per image (image, reconstruction, residual), most anomalous
    first. Every input and every file it writes is checked before the first write; ``force`` replaces the CSV
    and its ROC plot, and heat maps an earlier score wrote, never other files."""
    import csv
    import io

    out = Path(out)
    roc_path = out.with_suffix(".roc.png")
    heatmaps = Path(heatmaps) if heatmaps is not None else None
    for path in (out, roc_path) if normal_classes else (out,):
        if path.exists() and not force:
            raise ConfigError(f"{path}: exists; choose another --out (or --force to replace it)")
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; give --out a file name (e.g. scores.csv)")
    if heatmaps is not None and heatmaps.is_dir() and any(heatmaps.iterdir()) and not force:
        raise ConfigError(f"{heatmaps}: not empty; choose a new --heatmaps folder (or --force to write beside what is there)")
    data.check_split(source, split, SCORED_SPLIT)
    scorer = AnomalyScorer(model, method)
    image_folders = {"--data": source, **_run_image_sources(scorer.run_dir)}
    for flag, path in (("--out", out), ("--heatmaps", heatmaps)):
        for what, folder in image_folders.items():
            if path is not None and folder not in (None, data.BUILTIN_DIGITS) and outputs.is_within(path, folder):
                raise ConfigError(
                    f"{flag} {path} is inside {what} {folder}: it would write among your images; choose another {flag}"
                )
    outputs.check_writable(out.parent, "--out")  # before the scoring, which can take minutes
    if heatmaps is not None:
        outputs.check_writable(heatmaps, "--heatmaps")
    ds = _load_matching(source, split, scorer)
    normal = _normal_classes(ds, normal_classes, source) if normal_classes else None
    if not scorer.ready or (heatmaps is not None and scorer._encoder is None):
        if scorer.run_dir is None:
            raise ConfigError(
                f"--method {method} needs the run directory (it computes the normal images' references once): "
                "give --model the folder fit wrote (an export made after one such score carries them), or --method discriminator"
            )
        in_the_way = outputs.in_the_way(scorer.run_dir, (ANOMALY, MODEL_FILES["encoder"]), ours=run_files(scorer.run_dir)["."])
        if in_the_way:
            raise ConfigError(
                f"{in_the_way[0]}: a file augmentor did not write, where score keeps the run's references; move it away"
            )
        train = training_images(scorer.run_dir)
        log.info("computing what scores compare with from the %d training images (once; kept in %s)", len(train), scorer.run_dir)
        scorer.fit(data.uint8_to_tanh(train.images), train.labels, encoder=heatmaps is not None or None, progress=progress)
        scorer.save()
    x = data.uint8_to_tanh(ds.images)
    scores = scorer.score(x)
    files = None
    if heatmaps is not None:  # every heat map's name is known now: check them all before writing any
        names = [Path(p).stem if ds.paths else str(i) for i, p in enumerate(ds.paths or [None] * len(ds))]
        files = heatmap_names(scores, names, [ds.class_names[lab] for lab in ds.labels.tolist()])
        in_the_way = outputs.in_the_way(heatmaps, [name for _, name in files])
        if in_the_way:
            raise ConfigError(
                f"{in_the_way[0]}: a file augmentor did not write, where a heat map goes; choose a new --heatmaps folder"
            )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "label", "score"])
    for i, (lab, sc) in enumerate(zip(ds.labels.tolist(), scores.tolist())):
        writer.writerow([ds.paths[i] if ds.paths else i, ds.class_names[lab], f"{sc:.6g}"])
    try:
        writable_folder(out.parent)
        outputs.write(out, lambda f: f.write(buf.getvalue().encode()))
    except OSError as e:
        raise cannot_write(out, e) from None
    result = {"csv": out, "n": len(scores)}
    if normal is not None:
        result.update(_separation(ds, scores, normal))
        result["roc_plot"] = roc_path
        plot_roc(result["is_anomaly"], scores, result["auroc"], roc_path)
        del result["is_anomaly"]
    if heatmaps is not None:
        recon, maps = scorer.heatmaps(x)
        outputs.remove_listed(heatmaps)  # an earlier score's heat maps (only with --force: the folder was empty otherwise)
        result["heatmaps"] = write_heatmaps(ds.images, data.tanh_to_uint8(recon), maps, files, heatmaps)
    return result


def _run_image_sources(run_dir: Optional[Path]) -> dict:
    """The folders of images the run learnt from (a later fit would take a heat map written there for an image)."""
    if run_dir is None:
        return {}
    from ..store.rundir import read_config

    cfg = read_config(run_dir)
    sources = {"the training images": cfg["data"].get("source")}
    if cfg.get("unlabeled", {}).get("unlabeled"):
        sources["the unlabelled images"] = cfg["unlabeled"]["unlabeled"]
    return {what: str(folder) for what, folder in sources.items() if folder}


def _normal_classes(ds: data.ImageSet, normal_classes: str, source: str) -> list:
    """The classes named normal, checked before anything is scored or written: both normal and other images needed."""
    normal = data.select_classes(ds, normal_classes, flag="--normal-classes").class_names
    present = {ds.class_names[lab] for lab in ds.labels.unique().tolist()}
    if not (present & set(normal)) or not (present - set(normal)):
        raise ConfigError(
            f"--normal-classes {normal_classes}: need both normal and other images in {source} to compute AUROC "
            f"(it has {', '.join(sorted(present))})"
        )
    return normal


def _load_matching(source: str, split: str, scorer: AnomalyScorer) -> data.ImageSet:
    """The images to score, at the model's size; gray images are repeated into color, color ones refused."""
    ds = data.load(source, size=scorer.meta["size"], split=split)
    if ds.channels == scorer.meta["channels"]:
        return ds
    if ds.channels == 1:
        return data.load(source, size=scorer.meta["size"], split=split, channels=scorer.meta["channels"])
    raise ConfigError(
        f"{source}: color images, but {scorer.source} was trained on gray ones; score gray images or train on color"
    )


def _separation(ds: data.ImageSet, scores: np.ndarray, normal) -> dict:
    """AUROC and AUPRC of normal against every other image, and per class: its mean score and its AUROC
    against the normal images."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    names = [ds.class_names[lab] for lab in ds.labels.tolist()]
    y = np.array([n not in normal for n in names])
    per_class = []
    for name in ds.class_names:
        mine = np.array([n == name for n in names])
        if not mine.any():
            continue
        row = {"class": name, "normal": name in normal, "n": int(mine.sum()), "mean_score": float(scores[mine].mean())}
        if name not in normal:
            both = mine | ~y
            row["auroc"] = float(roc_auc_score(y[both], scores[both]))
        per_class.append(row)
    return {
        "auroc": float(roc_auc_score(y, scores)),
        "auprc": float(average_precision_score(y, scores)),
        "per_class": per_class,
        "is_anomaly": y,
    }
