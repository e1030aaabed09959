"""A run: prepare the data, train with callbacks, resume, lock, and leave everything on disk (the layout:
modelfiles.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from . import __version__, augmentation, checkpoint, data, distributed, outputs, transfer
from .callbacks import Checkpointer, DiversityMonitor, NonFiniteGuard, ProgressLog, SampleGrids, ShareMembers, truncate_log
from .config import (
    FIT_CONFIGS,
    FIXED,
    MOVE,
    SECTIONS,
    DataConfig,
    InitConfig,
    ModelConfig,
    RunOptions,
    TrainConfig,
    UnlabeledConfig,
    declared,
)
from .errors import ConfigError, DataError, Interrupted, ModelFileError, RunDirError, TrainingDiverged, cannot_write
from .modelfiles import (
    CHECKPOINTS,
    CONFIG,
    DIVERSITY_PLOT,
    HOLDOUT,
    LOCK,
    LOG,
    LOSSES_PLOT,
    PROGRESS_GIF,
    PSEUDO_LABELS,
    RUN_LAYOUT,
    RUN_SECTIONS,
    SAMPLES,
    adopt_run_files,
    is_run,
    remove_run_files,
    run_files,
    run_files_in_the_way,
    sample_grids,
)
from .plots import plot_diversity, plot_losses
from .train import Trainer, resolve_precision
from .unlabeled import (
    drop_labelled,
    expected_shares,
    kept_summary,
    load_unlabeled,
    pseudo_label,
    pseudo_labelled,
    read_pseudo_labels,
    with_pseudo_labelled,
)

log = logging.getLogger("augmentor")

# Scarce data gets the coverage term by default (see README, "Diversity"): measured on MNIST 10-shot.
SCARCE_PER_CLASS = 100
DEFAULT_COVERAGE = 5.0


def resolve_device(device: str = "auto", world: distributed.World = distributed.World()) -> torch.device:
    """Under torchrun, "cuda" and "auto" mean this process's own GPU (LOCAL_RANK)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is visible here; use --device cpu or auto")
        return torch.device("cuda", world.local_rank) if world.distributed else torch.device(device)
    raise ConfigError(f"--device {device} is not one of auto, cpu, cuda")


@dataclass
class PreparedData:
    full: data.ImageSet  # everything loaded (after --classes)
    train: data.ImageSet  # what the GAN sees
    train_index: torch.Tensor
    holdout_index: torch.Tensor


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Load, then --classes, then the seeded stratified --holdout, then the seeded --per-class subset."""
    full = data.load(cfg.source, cfg.size, cfg.channels, cfg.split, cfg.strict)
    if cfg.classes:
        full = data.select_classes(full, cfg.classes)
    kept, held = data.stratified_split(full, cfg.holdout, cfg.seed)
    if cfg.per_class is not None:
        kept = kept[data.per_class_subset(full.subset(kept), cfg.per_class, cfg.seed)]
    train = full.subset(kept)
    if len(train) < 2:
        raise data.DataError(f"{cfg.source}: only {len(train)} training image(s) left after --classes/--holdout/--per-class")
    return PreparedData(full, train, kept, held)


def resolve_coverage(train_cfg: TrainConfig, train: data.ImageSet) -> TrainConfig:
    """coverage=None means "decide": on (DEFAULT_COVERAGE) when the smallest class has ≤ SCARCE_PER_CLASS images."""
    if train_cfg.coverage is not None:
        return train_cfg
    scarce = min(c for c in train.class_counts() if c > 0) <= SCARCE_PER_CLASS
    if scarce:
        log.info(f"scarce data (≤ {SCARCE_PER_CLASS} images in a class): coverage term on, weight {DEFAULT_COVERAGE}")
    return dataclasses.replace(train_cfg, coverage=DEFAULT_COVERAGE if scarce else 0.0)


def model_config_for(train: data.ImageSet, mode: Optional[str] = None, **options) -> ModelConfig:
    """Mode defaults to conditional with ≥ 2 classes, unconditional with one."""
    mode = mode or ("conditional" if train.num_classes >= 2 else "unconditional")
    return ModelConfig(size=train.size, channels=train.channels, class_names=tuple(train.class_names), mode=mode, **options)


# ----------------------------------------------------------------------------------------- run dir


@contextmanager
def locked(out: Path):
    """Hold ``out/.lock`` while a fit writes the run; a live holder refuses, a dead one's lock is taken over.
    A .lock that holds no process id is not ours, and stays."""
    lock = out / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip())
            except (OSError, ValueError):
                raise RunDirError(f"{lock}: not a lock augmentor wrote; move it away or choose another --out") from None
            if _alive(pid):
                raise RunDirError(
                    f"{out}: another fit (pid {pid}) is writing this run; wait for it or choose another --out"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its owner died
        except OSError as e:
            raise cannot_write(out, e, RunDirError) from None
    else:
        raise RunDirError(f"{out}: could not take the run lock")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is a file, not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(out, e, RunDirError) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"{out}: cannot write here (permission denied)")


def _check_outside_sources(out: Path, data_cfg, unlabeled) -> None:
    """Refuse an --out inside the images it learns from: its files would join them (and --force could remove them)."""
    sources = [("--data", data_cfg.source if isinstance(data_cfg, DataConfig) else None)]
    sources.append(("--unlabeled", unlabeled.unlabeled if isinstance(unlabeled, UnlabeledConfig) else None))
    run = Path(os.path.realpath(out))
    for flag, source in sources:
        if source and source != data.BUILTIN_DIGITS and os.path.isdir(source):
            folder = Path(os.path.realpath(source))
            if run == folder or folder in run.parents:
                raise RunDirError(
                    f"--out {out} is inside {flag} {source}: the run's files would mix with your images; choose another --out"
                )


def _check_new_run_dir(out: Path, force: bool) -> dict:
    """Refuse, before anything is written, an --out that holds a run (without --force), a folder of the user's
    (without --force), or files a run would write over that augmentor did not write. Returns the run files
    that --force replaces (modelfiles.run_files)."""
    if (out / CONFIG).exists() and not is_run(out):
        raise RunDirError(f"{out}: its config.json is not an augmentor run's; choose another --out")
    if is_run(out) and not force:
        raise RunDirError(f"{out}: holds a run already; pass --resume to continue it or --force to replace it")
    if not force and any(p.name != LOCK for p in out.iterdir()):
        raise RunDirError(
            f"{out}: is not empty and holds no augmentor run; choose another --out (or --force to write beside your files)"
        )
    ours = run_files(out) if force else {sub: set() for sub in RUN_LAYOUT}
    in_the_way = run_files_in_the_way(out, ours)
    if in_the_way:
        raise RunDirError(
            f"{in_the_way[0]}: a file augmentor did not write, where a run writes its own; move it away or choose another --out"
        )
    return ours


def read_config(out: Path) -> dict:
    path = Path(out) / CONFIG
    if not path.exists():
        raise ModelFileError(f"{out}: no config.json; not an augmentor run directory")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: unreadable ({e})") from None
    if not is_run(out):
        raise ModelFileError(f"{path}: not an augmentor run's config (it lacks {', '.join(RUN_SECTIONS)})")
    return config


# ----------------------------------------------------------------------------------------- fit


def fit(
    out,
    data_cfg: DataConfig | data.ImageSet,
    train_cfg: TrainConfig,
    model_options: Optional[dict] = None,
    *,
    unlabeled: UnlabeledConfig | data.ImageSet | None = None,
    pseudo_options: Optional[UnlabeledConfig] = None,
    init: InitConfig | str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    **run_options,
) -> Path:
    """Train a new run into ``out`` on a data source (DataConfig) or on images in memory (an ImageSet, e.g. a
    split you made yourself; such a run cannot be resumed from the CLI). ``unlabeled``: unlabelled images the
    generator also learns from, through pseudo-labels (an UnlabeledConfig naming a source, or an ImageSet whose
    labels are ignored, with ``pseudo_options`` for the pseudo-labeller's threshold and steps). ``init``: a run
    to warm-start from (a path, or an InitConfig with ``freeze_d``; transfer.py). ``model_options``:
    ModelConfig fields (mode, nz, width, spectral_norm); ``run_options``: RunOptions fields (device, precision,
    checkpoint_every, sample_every, keep_checkpoints, export). Returns the run directory."""
    out = Path(out)
    w = distributed.world()
    opts = RunOptions(**run_options)
    dev = resolve_device(opts.device, w)
    precision = resolve_precision(opts.precision, dev)  # bad flags fail before anything is written
    init = InitConfig.of(init)
    source = transfer.load_source(init.init) if init.init else None
    labeller_options = unlabeled if isinstance(unlabeled, UnlabeledConfig) else pseudo_options
    if isinstance(unlabeled, UnlabeledConfig) and unlabeled.unlabeled is None and unlabeled.unlabeled_shares:
        raise ConfigError("--unlabeled-shares describes unlabelled images: give --unlabeled SOURCE too")
    if labeller_options is not None and labeller_options.pseudo_augment:  # a bad file fails before any training
        augmentation.load_pipeline(labeller_options.pseudo_augment, flag="--pseudo-augment")
    given = model_options or {}
    distributed.check(w, train_cfg.batch_size, str(dev), given.get("mode") or "conditional", given.get("spectral_norm", True))
    if w.distributed and isinstance(data_cfg, data.ImageSet) and unlabeled is not None:
        raise ConfigError("images in memory with unlabelled images do not run under torchrun; give data sources")
    _check_outside_sources(out, data_cfg, unlabeled)
    created = [p for p in (out, *out.parents) if not p.exists()] if w.main else []  # deepest first
    if w.main:
        _check_writable(out)
    distributed.start(w, dev)
    with locked(out) if w.main else contextlib.nullcontext():
        if w.main:  # rank 0 writes the run directory; the others read what it wrote
            with distributed.RankZeroSetup(w), _removed_if_refused(out, created):
                model_cfg, train_cfg, gan_set, config = _new_run(
                    out, data_cfg, train_cfg, model_options, unlabeled, pseudo_options, init, source, force, dev
                )
        else:
            distributed.RankZeroSetup(w).wait()
            config = read_config(out)
            model_cfg, train_cfg = ModelConfig.from_dict(config["model"]), TrainConfig.from_dict(config["train"])
            gan_set = data_cfg if isinstance(data_cfg, data.ImageSet) else _gan_set(out, config)
        distributed.check(w, train_cfg.batch_size, str(dev), model_cfg.mode, model_cfg.spectral_norm, model_cfg.num_classes)
        trainer = Trainer(model_cfg, train_cfg, gan_set, dev, precision, w)
        _start_from(trainer, source, init.freeze_d)
        _train(out, trainer, config, opts, progress)
    return out


@contextmanager
def _removed_if_refused(out: Path, created: list):
    """A fit refused before step 0 (bad data, an incompatible --init) takes back the folders it created for
    --out: nothing but its lock is in them then."""
    try:
        yield
    except BaseException:
        if created and all(p.name == LOCK for p in out.iterdir()):
            (out / LOCK).unlink(missing_ok=True)
            for folder in created:
                outputs.remove_empty(folder)
        raise


def _new_run(out: Path, data_cfg, train_cfg, model_options, unlabeled, pseudo_options, init, source, force, device) -> tuple:
    """Check every input, then replace what an earlier run wrote in ``out`` (``force``) and write config.json,
    holdout.json (and pseudo-labels): the run before step 0. A refusal at any check leaves ``out`` as it was.
    Returns (ModelConfig, TrainConfig, the GAN's training set, config)."""
    ours = _check_new_run_dir(out, force)
    if isinstance(data_cfg, data.ImageSet):
        n = len(data_cfg)
        prepared = PreparedData(data_cfg, data_cfg, torch.arange(n), torch.arange(0))
        data_record = {"source": data_cfg.source, "in_memory": True, "size": data_cfg.size, "channels": data_cfg.channels}
    else:
        prepared = prepare_data(data_cfg)
        data_record = {**data_cfg.to_dict(), "source": data.absolute_source(data_cfg.source)}  # found from anywhere
    options = dict(model_options or {})
    if source is not None:
        options = transfer.model_options(source, options)
    model_cfg = model_config_for(prepared.train, options.pop("mode", None), **options)
    if source is not None:
        transfer.check_compatible(source, model_cfg, init.freeze_d)
    train_cfg = resolve_coverage(train_cfg, prepared.train)  # decided by the labelled images
    gan_set, unlabeled_section, pseudo = _with_unlabeled(
        prepared.train, data_cfg, unlabeled, pseudo_options, train_cfg.seed, device
    )
    remove_run_files(out, ours)  # every check passed: only now does the earlier run go
    config = {
        "augmentor_version": __version__,
        "data": data_record,
        "model": model_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        "data_fingerprint": prepared.train.fingerprint(),
        "num_images": len(prepared.train),
        "class_counts": prepared.train.class_counts(),
        "skipped_files": len(prepared.full.skipped),
    }
    pseudo_record = None
    if pseudo is not None:
        labels, images = pseudo
        pseudo_record = {"fingerprint": images.fingerprint(), "labeller": unlabeled_section["pseudo_labeller"]}
        pseudo_record.update(labels.record(prepared.train.class_names))
        outputs.write(out / PSEUDO_LABELS, lambda f: f.write(labels.to_json().encode()), own=True)
        outputs.claim(out / LOG)
        with open(out / LOG, "a") as f:  # the pseudo-labels, as the first row of the training log
            f.write(json.dumps({"step": 0, "pseudo_labels": pseudo_record}) + "\n")
    config.update(unlabeled=unlabeled_section, pseudo_labels=pseudo_record)
    config["init"] = {**init.to_dict(), "source": source.record() if source else None}
    outputs.write(out / CONFIG, lambda f: f.write(json.dumps(config, indent=2).encode()), own=True)
    holdout = {
        "holdout_index": prepared.holdout_index.tolist(),
        "train_index": prepared.train_index.tolist(),
        "holdout_paths": [prepared.full.paths[i] for i in prepared.holdout_index.tolist()] if prepared.full.paths else None,
    }
    outputs.write(out / HOLDOUT, lambda f: f.write(json.dumps(holdout).encode()), own=True)
    return model_cfg, train_cfg, gan_set, config


def _gan_set(out: Path, config: dict, moved: Optional[dict] = None) -> data.ImageSet:
    """The GAN's training set rebuilt from a run's config.json (for --resume and torchrun's other ranks).
    ``moved``: {config section: the flag that gave its images' new place}, for the refusal's wording."""
    moved = moved or {}
    data_cfg, labelled = stored_training_images(out, config, moved.get("data"))
    if config.get("unlabeled", {}).get("unlabeled"):  # the same unlabelled images, pseudo-labelled as at the start
        return with_pseudo_labelled(labelled, *_stored_unlabeled(out, config, labelled, data_cfg, moved.get("unlabeled")))
    return labelled


def stored_training_images(out: Path, config: dict, moved_by: Optional[str] = None) -> tuple:
    """(DataConfig, the training images) of a run, from where config.json says they are, checked unchanged."""
    data_cfg = DataConfig.from_dict(config["data"])
    source = data_cfg.source
    if source and source != data.BUILTIN_DIGITS and not os.path.lexists(source):
        raise DataError(
            f"{out}: its training data is no longer at {source}; put it back, or tell the run where it is now: "
            f"augmentor fit --out {out} --resume --data NEW_PLACE"
        )
    train = prepare_data(data_cfg).train
    if train.fingerprint() != config["data_fingerprint"]:
        if moved_by:
            raise ConfigError(f"{moved_by} contradicts the run in {out}: not the images it was trained on")
        raise ConfigError(f"{out}: the training data changed since this run started ({source}); start a new --out")
    return data_cfg, train


def _start_from(trainer: Trainer, source: Optional[transfer.Source], freeze_d: int) -> None:
    if source is not None:
        transfer.warm_start(trainer, source)
        log.info(
            f"starting from {source.path} (step {source.state['step']})"
            + (f", D's first {freeze_d} blocks fixed" if freeze_d else "")
        )
    transfer.freeze_d(trainer.D, freeze_d)


def _with_unlabeled(labelled: data.ImageSet, data_cfg, unlabeled, pseudo_options, seed: int, device) -> tuple:
    """The GAN's training set: the labelled images, plus the pseudo-labelled unlabelled ones when there are any.
    Writes nothing. Returns (training set, config.json's "unlabeled" section, (PseudoLabels, images) or None)."""
    if isinstance(unlabeled, UnlabeledConfig) and unlabeled.unlabeled is None:
        unlabeled = None  # the CLI's default: no unlabelled images
    if unlabeled is None:
        return labelled, UnlabeledConfig().to_dict(), None
    if isinstance(unlabeled, data.ImageSet):
        cfg, images = pseudo_options or UnlabeledConfig(), drop_labelled(unlabeled, labelled)
        section = {**cfg.to_dict(), "unlabeled": unlabeled.source, "in_memory": True}
    else:
        split, strict = (data_cfg.split, data_cfg.strict) if isinstance(data_cfg, DataConfig) else ("train", False)
        cfg, images = unlabeled, load_unlabeled(unlabeled.unlabeled, labelled, split, strict)
        section = {**unlabeled.to_dict(), "unlabeled": data.absolute_source(unlabeled.unlabeled)}
    if cfg.unlabeled_shares:
        expected_shares(labelled, cfg.unlabeled_shares)  # a malformed value fails before minutes of labelling
    gan_steps = f", then {cfg.labeller_steps} semi-supervised GAN steps" if cfg.pseudo_labeller == "gan" else ""
    log.info(f"pseudo-labelling {len(images)} unlabelled images ({cfg.pseudo_steps} classifier steps{gan_steps})")
    pseudo = pseudo_label(labelled, images, cfg, seed=seed, device=device)
    log.info(kept_summary(pseudo, labelled, cfg.unlabeled_shares))
    return with_pseudo_labelled(labelled, images, pseudo), section, (pseudo, images)


def resume(out, given: Optional[dict] = None, *, progress: bool = True) -> Path:
    """Continue the run in ``out`` from its newest good checkpoint. ``given``: the options the user gave
    explicitly (field name → value, as declared in config.py). Run-time options (RunOptions) apply to this
    process; ``steps`` may grow the run; any other option that contradicts the stored run is refused."""
    out = Path(out)
    given = dict(given or {})
    options = {d.name: d for d in declared(*FIT_CONFIGS)}
    unknown = set(given) - set(options)
    if unknown:
        raise ConfigError(f"resume: unknown option(s) {', '.join(sorted(unknown))}")
    w = distributed.world()
    opts = RunOptions(**{k: v for k, v in given.items() if options[k].owner is RunOptions})
    dev = resolve_device(opts.device, w)
    precision = resolve_precision(opts.precision, dev)  # bad flags fail before anything is written
    config = read_config(out)
    if config["data"].get("in_memory"):
        raise ConfigError(f"{out}: was trained on images passed from Python, not a --data source; resume it from Python")
    moved = {}  # config section → the flag that moved its images (the fingerprints check they are the same)
    for name in [n for n in given if options[n].option.on_resume == MOVE and given[n] is not None]:
        d, value = options[name], given.pop(name)
        section = SECTIONS[d.owner]
        if not (config.get(section) or {}).get(name):
            raise ConfigError(f"{d.flag} {value} contradicts the run in {out} (it has none); drop the flag or start a new --out")
        if value != data.BUILTIN_DIGITS and not os.path.lexists(value):
            raise DataError(f"{d.flag} {value}: no such file or directory")
        config[section][name] = data.absolute_source(value)
        moved[section] = f"{d.flag} {value}"
    for name, value in given.items():
        if options[name].option.on_resume == FIXED:
            _check_unchanged(out, config, options[name], value)
    train_cfg = TrainConfig.from_dict({**config["train"], "steps": given.get("steps", config["train"]["steps"])})
    model_cfg = ModelConfig.from_dict(config["model"])
    distributed.check(w, train_cfg.batch_size, str(dev), model_cfg.mode, model_cfg.spectral_norm, model_cfg.num_classes)
    distributed.start(w, dev)
    with locked(out) if w.main else contextlib.nullcontext():
        ours = run_files(out)
        in_the_way = run_files_in_the_way(out, ours)
        if in_the_way:
            raise RunDirError(f"{in_the_way[0]}: a file augmentor did not write, among the run's own; move it away, then resume")
        found = checkpoint.latest_good(out / CHECKPOINTS, map_location=dev)
        if found is not None and ModelConfig.from_dict(found[1]["model_config"]) != model_cfg:
            raise ModelFileError(f"{found[0]}: its model differs from {out / 'config.json'}; the run directory was altered")
        done = int(found[1]["step"]) if found is not None else 0
        if train_cfg.steps < done:
            raise ConfigError(f"--steps {train_cfg.steps} is below the {done} steps this run has done; give --steps ≥ {done}")
        gan_set = _gan_set(out, config, moved)
        trainer = Trainer(model_cfg, train_cfg, gan_set, dev, precision, w)
        stored = config.get("init") or {}
        init = InitConfig.from_dict({k: v for k, v in stored.items() if k != "source"})
        start = stored.get("source") and found is None  # else the run's own checkpoint holds the start
        source = transfer.load_source(stored["source"]["checkpoint"]) if start else None
        _start_from(trainer, source, init.freeze_d)
        if found is None:
            log.warning(f"{out}: no usable checkpoint; starting from step 0")
        else:
            path, state = found
            trainer.load_state_dict(state)
            log.info(f"resuming {out} from {path.name} (step {trainer.step} of {train_cfg.steps})")
        if w.main:
            adopt_run_files(out, ours)  # a run from before the manifests lists its files now
            for sub, names in ours.items():  # a process killed mid-write left these
                outputs.remove_temporaries(out / sub, names)
            truncate_log(out / LOG, trainer.step)
            for step, stale in sample_grids(out / SAMPLES):
                if step > trainer.step and stale.name in ours[SAMPLES]:
                    stale.unlink()
            config["train"] = train_cfg.to_dict()
            outputs.write(out / CONFIG, lambda f: f.write(json.dumps(config, indent=2).encode()), own=True)
        _train(out, trainer, config, opts, progress)
    return out


def _stored_unlabeled(out: Path, config: dict, labelled: data.ImageSet, data_cfg: DataConfig, moved_by=None) -> tuple:
    """(the unlabelled images, their stored PseudoLabels) of a run that learnt from unlabelled images; refused
    when the images changed since."""
    section = config["unlabeled"]
    if section.get("in_memory"):
        raise ConfigError(
            f"{out}: learnt from unlabelled images passed from Python, which a run does not keep (pseudo_labels.json indexes them)"
        )
    source = section["unlabeled"]
    if source != data.BUILTIN_DIGITS and not os.path.lexists(source):
        raise DataError(
            f"{out}: its unlabelled images are no longer at {source}; put them back, or tell the run where they are "
            f"now: augmentor fit --out {out} --resume --unlabeled NEW_PLACE"
        )
    images = load_unlabeled(source, labelled, data_cfg.split, data_cfg.strict)
    if images.fingerprint() != config["pseudo_labels"]["fingerprint"]:
        if moved_by:
            raise ConfigError(f"{moved_by} contradicts the run in {out}: not the unlabelled images it learnt from")
        raise ConfigError(
            f"{out}: the unlabelled images ({section['unlabeled']}) changed since this run started; start a new --out"
        )
    return images, read_pseudo_labels(out)


def _kept_unlabeled(run_dir) -> tuple:
    """(the unlabelled images, their stored PseudoLabels, the class names) of a `fit --unlabeled` run."""
    out = Path(run_dir)
    config = read_config(out)
    if not config.get("unlabeled", {}).get("unlabeled"):
        raise ConfigError(f"{out}: did not learn from unlabelled images (fit it with --unlabeled SOURCE)")
    data_cfg, labelled = stored_training_images(out, config)
    return (*_stored_unlabeled(out, config, labelled, data_cfg), labelled.class_names)


def pseudo_labelled_images(run_dir) -> data.ImageSet:
    """The unlabelled images a `fit --unlabeled` run kept, with their pseudo-labels: self-training data, which
    `augmentor bench` found to help a classifier more than synthetic images (docs/results.md). Mix them into
    your training batches as you would more labelled images."""
    images, pseudo, names = _kept_unlabeled(run_dir)
    return pseudo_labelled(images, pseudo, names)


def pseudo_labels_table(run_dir) -> list:
    """The unlabelled images a run kept, as rows (file path or index in the source, class name, confidence):
    what `augmentor pseudo-labels` writes."""
    images, pseudo, names = _kept_unlabeled(run_dir)
    return [
        (images.paths[i] if images.paths else i, names[label], round(confidence, 5))
        for i, label, confidence in zip(pseudo.index.tolist(), pseudo.labels.tolist(), pseudo.confidence.tolist())
    ]


def _check_unchanged(out: Path, config: dict, option, value) -> None:
    """Refuse a value that contradicts the stored run. A setting stored as None ("detect" / "decide") is
    compared with what the run resolved it to (e.g. --channels with the model's channels)."""
    section = config.get(SECTIONS[option.owner])
    have = section.get(option.name) if section is not None else option.default  # runs older than the section
    if have is None:
        have = config["model"].get(option.name, config["train"].get(option.name))
    have = tuple(have) if isinstance(have, list) else have
    if value is None or value == have:
        return
    typed = (option.flag if value else f"--no-{option.flag[2:]}") if isinstance(value, bool) else f"{option.flag} {value}"
    raise ConfigError(f"{typed} contradicts the run in {out} (it has {have}); drop the flag or start a new --out")


def _train(out: Path, trainer: Trainer, config: dict, opts: RunOptions, progress: bool) -> None:
    pseudo = config.get("pseudo_labels") or {}
    source = (config.get("init") or {}).get("source")
    extra = {
        "data_fingerprint": config["data_fingerprint"],
        "unlabeled_images": pseudo.get("kept", 0),
        "init": f"{source['checkpoint']} (step {source['step']}, data {source['data_fingerprint']})" if source else "",
    }
    main = trainer.world.main
    ckpt = Checkpointer(out / CHECKPOINTS, opts.checkpoint_every, opts.keep_checkpoints, extra=extra, write=main)
    callbacks = [  # checkpoints and the NaN guard on every rank (they exchange RNG states), the rest on rank 0
        ShareMembers(opts.sample_every, opts.checkpoint_every),  # first: a sharded bank is whole before the others
        *(
            [
                DiversityMonitor(opts.sample_every),
                ProgressLog(out / LOG, every=max(1, min(10, opts.checkpoint_every)), progress=progress),
                SampleGrids(out / SAMPLES, opts.sample_every, gif=out / PROGRESS_GIF),
            ]
            if main
            else []
        ),
        ckpt,
        NonFiniteGuard(out / CHECKPOINTS, out / LOG if main else None),
    ]
    world = trainer.world
    log.info(
        f"training on {trainer.device}, {trainer.precision} math"
        + (f", {world.size} processes × {trainer.batch_size} images a step" if world.distributed else "")
    )
    with _stop_on_sigint(trainer):
        trainer.fit(callbacks=callbacks)
    if trainer.step < trainer.train_cfg.steps:  # stopped by Ctrl-C between two steps
        trainer.share_members()
        ckpt.save(trainer)
        distributed.stop(world)  # leave the process group together, or gloo may hang the exit
        raise Interrupted(
            f"interrupted at step {trainer.step}; checkpoint saved. Resume with: augmentor fit --out {out} --resume"
        )
    if world.distributed:  # DDP keeps the copies equal; check it once, cheaply, rather than trust it
        digests = distributed.gather(world, distributed.digest(trainer.G, trainer.D, trainer.G_ema))
        if len(set(digests)) > 1:
            raise TrainingDiverged(f"the {world.size} processes ended with different weights; please report this")
        log.info(f"{world.size} processes ended with identical weights")
    if main:
        for plot, name in ((plot_losses, LOSSES_PLOT), (plot_diversity, DIVERSITY_PLOT)):
            outputs.claim(out / name)
            plot(out / LOG, out / name)
        if opts.export:
            from .export import export_run

            export_run(out)
    distributed.stop(world)  # every rank returns with the run complete


@contextmanager
def _stop_on_sigint(trainer: Trainer):
    """First Ctrl-C (or SIGTERM): finish the current step, then stop (a checkpoint follows). A second one aborts.
    Under torchrun the ranks agree on stopping at each step (Trainer.train_step), so all stop at the same one."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}  # torchrun stops with SIGTERM
    for sig in previous:  # restart system calls the signal interrupts: gloo's socket I/O does not retry on EINTR
        signal.siginterrupt(sig, False)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
