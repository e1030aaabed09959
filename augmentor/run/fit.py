"""A new run: every input checked, then the run directory written (its layout: store/rundir.py) and the GAN
trained with its callbacks."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

from .. import __version__, data
from ..config import DataConfig, InitConfig, ModelConfig, RunOptions, TrainConfig, UnlabeledConfig
from ..data import augmentation
from ..errors import ConfigError, Interrupted, TrainingDiverged
from ..gan import distributed, transfer
from ..gan.callbacks import Checkpointer, DiversityMonitor, NonFiniteGuard, ProgressLog, SampleGrids, ShareMembers
from ..gan.pictures import plot_diversity, plot_losses
from ..gan.train import Trainer, resolve_precision
from ..semi.calibration import MIN_VALIDATION, unchecked_warning
from ..semi.shares import expected_shares
from ..semi.unlabeled import drop_labelled, kept_summary, load_unlabeled, pseudo_label, with_pseudo_labelled
from ..store import legacy, outputs
from ..store.rundir import (
    CHECKPOINTS,
    CONFIG,
    DIVERSITY_PLOT,
    HOLDOUT,
    LOCK,
    LOG,
    LOSSES_PLOT,
    PROGRESS_GIF,
    PSEUDO_LABELS,
    SAMPLES,
    check_new_run_dir,
    check_outside_sources,
    check_run_dir_writable,
    locked,
    read_config,
    remove_run_files,
)
from .prepare import PreparedData, model_config_for, prepare_data, rebuild_gan_set, resolve_coverage, resolve_device, start_from

log = logging.getLogger("augmentor")


def fit(
    out,
    data_cfg: DataConfig | data.ImageSet,
    train_cfg: TrainConfig,
    model_options: Optional[dict] = None,
    *,
    unlabeled: UnlabeledConfig | data.ImageSet | None = None,
    pseudo_options: Optional[UnlabeledConfig] = None,
    labeller_validation: Optional[data.ImageSet] = None,
    init: InitConfig | str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    world: Optional[distributed.World] = None,
    **run_options,
) -> Path:
    """Train a new run into ``out`` on a data source (DataConfig) or on images in memory (an ImageSet, e.g. a
    split you made yourself; such a run resumes from Python only: resume(out, images=the same images)).
    ``unlabeled``: unlabelled images the generator also learns from, through pseudo-labels (an UnlabeledConfig naming a source, or an ImageSet whose
    labels are ignored, with ``pseudo_options`` for the pseudo-labeller's threshold and steps);
    ``labeller_validation``: labelled images outside ``data_cfg`` to check the pseudo-labels on (default: a fifth
    of each class of the labelled images, which the labellers then do not learn from). ``init``: a run
    to warm-start from (a path, or an InitConfig with ``freeze_d``; transfer.py). ``model_options``:
    ModelConfig fields (mode, nz, width, spectral_norm); ``run_options``: RunOptions fields (device, precision,
    checkpoint_every, sample_every, keep_checkpoints, export). ``world``: this process's place in a torchrun job
    (default: what torchrun says; ``World()`` trains in this process alone). Returns the run directory."""
    out = Path(out)
    w = world or distributed.world()
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
    check_outside_sources(out, data_cfg, unlabeled)
    created = [p for p in (out, *out.parents) if not p.exists()] if w.main else []  # deepest first
    if w.main:
        check_run_dir_writable(out)
    distributed.start(w, dev)
    with locked(out) if w.main else contextlib.nullcontext():
        if w.main:  # rank 0 writes the run directory; the others read what it wrote
            with distributed.RankZeroSetup(w), _removed_if_refused(out, created):
                unlabelled = (unlabeled, pseudo_options, labeller_validation)
                model_cfg, train_cfg, gan_set, config = _new_run(
                    out, data_cfg, train_cfg, model_options, unlabelled, init, source, force, dev
                )
        else:
            distributed.RankZeroSetup(w).wait()
            config = read_config(out)
            model_cfg, train_cfg = ModelConfig.from_dict(config["model"]), TrainConfig.from_dict(config["train"])
            gan_set = data_cfg if isinstance(data_cfg, data.ImageSet) else rebuild_gan_set(out, config)
        distributed.check(w, train_cfg.batch_size, str(dev), model_cfg.mode, model_cfg.spectral_norm, model_cfg.num_classes)
        trainer = Trainer(model_cfg, train_cfg, gan_set, dev, precision, w, compile=opts.compile)
        start_from(trainer, source, init.freeze_d)
        train_run(out, trainer, config, opts, progress)
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


def _new_run(out: Path, data_cfg, train_cfg, model_options, unlabelled, init, source, force, device) -> tuple:
    """Check every input, then replace what an earlier run wrote in ``out`` (``force``) and write config.json,
    holdout.json (and pseudo-labels): the run before step 0. A refusal at any check leaves ``out`` as it was.
    ``unlabelled``: fit's (unlabeled, pseudo_options, labeller_validation). Returns (ModelConfig, TrainConfig, the
    GAN's training set, config)."""
    ours = check_new_run_dir(out, force)
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
    gan_set, unlabeled_section, pseudo = _with_unlabeled(prepared.train, data_cfg, *unlabelled, train_cfg.seed, device)
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


def _with_unlabeled(labelled: data.ImageSet, data_cfg, unlabeled, pseudo_options, validation, seed: int, device) -> tuple:
    """The GAN's training set: the labelled images, plus the pseudo-labelled unlabelled ones when there are any.
    The labellers are checked on ``validation`` (None: a fifth of each class, which they then do not learn from,
    where that is enough to check on; the GAN still learns from every labelled image). Writes nothing. Returns
    (training set, config.json's "unlabeled" section, (PseudoLabels, images) or None)."""
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
    learn_from = labelled
    if validation is None:
        learn_from, validation = data.carve_validation(labelled, seed)
        if len(validation) < MIN_VALIDATION:  # too few to check anything on: the labellers learn from them all
            learn_from, validation = labelled, None
    pseudo = pseudo_label(learn_from, images, cfg, seed=seed, device=device, validation=validation)
    log.info(kept_summary(pseudo, labelled, cfg.unlabeled_shares))
    warning = pseudo.check.warning("pseudo-labels") if pseudo.check else unchecked_warning(len(labelled))
    if warning:
        log.warning(warning)
    return with_pseudo_labelled(labelled, images, pseudo), section, (pseudo, images)


def train_run(out: Path, trainer: Trainer, config: dict, opts: RunOptions, progress: bool) -> None:
    pseudo = config.get("pseudo_labels") or {}
    source = legacy.section(config, "init", {}).get("source")
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
        + (", compiled (the first steps wait for torch.compile)" if trainer.compiled else "")
        + (f", {world.size} processes × {trainer.batch_size} images a step" if world.distributed else "")
    )
    with _stop_on_sigint(trainer):
        trainer.fit(callbacks=callbacks)
    if trainer.step < trainer.train_cfg.steps:  # stopped by Ctrl-C between two steps
        trainer.share_members()
        ckpt.save(trainer)
        distributed.stop(world)  # leave the process group together, or gloo may hang the exit
        # images passed from Python are not kept by the run: only Python can give them again
        sections = {"images": "data", "unlabeled": "unlabeled"}  # resume()'s argument → its config.json section
        given = [f"{arg}=..." for arg, section in sections.items() if (config.get(section) or {}).get("in_memory")]
        again = f"augmentor.resume('{out}', {', '.join(given)})" if given else f"augmentor fit --out {out} --resume"
        raise Interrupted(f"interrupted at step {trainer.step}; checkpoint saved. Resume with: {again}")
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
            from ..onnx.export import export_run

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
