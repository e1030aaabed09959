"""`fit --resume`: continue a run from its newest good checkpoint."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Optional

from .. import data
from ..config import FIT_CONFIGS, FIXED, MOVE, SECTIONS, InitConfig, ModelConfig, RunOptions, TrainConfig, declared
from ..errors import ConfigError, DataError, ModelFileError, RunDirError
from ..gan import distributed, transfer
from ..gan.callbacks import truncate_log
from ..gan.train import Trainer, resolve_precision
from ..store import checkpoint, legacy, outputs
from ..store.rundir import (
    CHECKPOINTS,
    CONFIG,
    LOG,
    SAMPLES,
    adopt_run_files,
    locked,
    read_config,
    run_files,
    run_files_in_the_way,
    sample_grids,
)
from .fit import train_run
from .prepare import rebuild_gan_set, resolve_device, start_from

log = logging.getLogger("augmentor")


def resume(
    out,
    given: Optional[dict] = None,
    *,
    images: Optional[data.ImageSet] = None,
    unlabeled: Optional[data.ImageSet] = None,
    progress: bool = True,
    world: Optional[distributed.World] = None,
) -> Path:
    """Continue the run in ``out`` from its newest good checkpoint. ``given``: the options the user gave
    explicitly (field name → value, as declared in config.py). Run-time options (RunOptions) apply to this
    process; ``steps`` may grow the run; any other option that contradicts the stored run is refused.
    ``images`` / ``unlabeled``: for a run fit() trained on images in memory, which a run does not keep, the same
    images again (checked). ``world``: as fit's."""
    out = Path(out)
    given = dict(given or {})
    options = {d.name: d for d in declared(*FIT_CONFIGS)}
    unknown = set(given) - set(options)
    if unknown:
        raise ConfigError(f"resume: unknown option(s) {', '.join(sorted(unknown))}")
    w = world or distributed.world()
    opts = RunOptions(**{k: v for k, v in given.items() if options[k].owner is RunOptions})
    dev = resolve_device(opts.device, w)
    precision = resolve_precision(opts.precision, dev)  # bad flags fail before anything is written
    config = read_config(out)
    _check_in_memory(out, config, images, unlabeled)
    moved = {}  # config section → the flag that moved its images (the fingerprints check they are the same)
    for name in [n for n in given if options[n].option.on_resume == MOVE and given[n] is not None]:
        d, value = options[name], given.pop(name)
        section = SECTIONS[d.owner]
        if not (config.get(section) or {}).get(name):
            raise ConfigError(f"{d.flag} {value} contradicts the run in {out} (it has none); drop the flag or start a new --out")
        if data.is_missing(value):
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
        gan_set = rebuild_gan_set(out, config, moved, images, unlabeled)
        trainer = Trainer(model_cfg, train_cfg, gan_set, dev, precision, w, compile=opts.compile)
        stored = legacy.section(config, "init", {})
        init = InitConfig.from_dict({k: v for k, v in stored.items() if k != "source"})
        start = stored.get("source") and found is None  # else the run's own checkpoint holds the start
        source = transfer.load_source(stored["source"]["checkpoint"]) if start else None
        start_from(trainer, source, init.freeze_d)
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
        train_run(out, trainer, config, opts, progress)
    return out


def _check_in_memory(out: Path, config: dict, images, unlabeled) -> None:
    """Images from Python exactly where the run was trained on images passed from Python."""
    given = {
        "data": ("images", images, "--data", "training images"),
        "unlabeled": ("unlabeled", unlabeled, "--unlabeled", "unlabelled images"),
    }
    for section, (name, value, flag, what) in given.items():
        stored = legacy.section(config, section, None) or {}
        if stored.get("in_memory") and value is None:
            raise ConfigError(
                f"{out}: was trained on {what} passed from Python, not a {flag} source; resume it from Python with the "
                f"same images: augmentor.resume(out, {name}=...)"
            )
        if value is not None and not stored.get("in_memory"):
            where = stored.get("source" if section == "data" else "unlabeled")
            had = f"come from {where}, not from Python" if where else "are none"
            raise ConfigError(f"{out}: its {what} {had}; resume it without {name}=")


def _check_unchanged(out: Path, config: dict, option, value) -> None:
    """Refuse a value that contradicts the stored run. A setting stored as None ("detect" / "decide") is
    compared with what the run resolved it to (e.g. --channels with the model's channels)."""
    section = legacy.section(config, SECTIONS[option.owner], None)
    have = section.get(option.name) if section is not None else option.default
    if have is None:
        have = config["model"].get(option.name, config["train"].get(option.name))
    have = tuple(have) if isinstance(have, list) else have
    if value is None or value == have:
        return
    typed = (option.flag if value else f"--no-{option.flag[2:]}") if isinstance(value, bool) else f"{option.flag} {value}"
    raise ConfigError(f"{typed} contradicts the run in {out} (it has {have}); drop the flag or start a new --out")
