"""What a run trains on: the device, the data after --classes/--holdout/--per-class, the model and coverage it gets."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .. import data
from ..config import DataConfig, ModelConfig, TrainConfig
from ..errors import ConfigError, DataError
from ..gan import distributed, transfer
from ..gan.train import Trainer
from ..semi.unlabeled import drop_labelled, load_unlabeled, read_pseudo_labels, with_pseudo_labelled
from ..store import legacy

log = logging.getLogger("augmentor")

# Scarce data gets the coverage term by default: without it, a small class collapses to a few shapes.
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
    data.check_split(cfg.source, cfg.split, DataConfig().split)
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


def rebuild_gan_set(
    out: Path,
    config: dict,
    moved: Optional[dict] = None,
    images: Optional[data.ImageSet] = None,
    unlabeled: Optional[data.ImageSet] = None,
) -> data.ImageSet:
    """The GAN's training set rebuilt from a run's config.json (for --resume and torchrun's other ranks).
    ``moved``: {config section: the flag that gave its images' new place}, for the refusal's wording.
    ``images``, ``unlabeled``: a run trained on images in memory gets them again, checked to be the same."""
    moved = moved or {}
    if images is not None:
        data_cfg, labelled = None, same_images(out, images, config["data_fingerprint"], "training images")
    else:
        data_cfg, labelled = stored_training_images(out, config, moved.get("data"))
    if not legacy.section(config, "unlabeled", {}).get("unlabeled"):
        return labelled
    if unlabeled is not None:  # pseudo_labels.json indexes the images fit kept: those not also labelled
        kept = same_images(out, drop_labelled(unlabeled, labelled), config["pseudo_labels"]["fingerprint"], "unlabelled images")
        return with_pseudo_labelled(labelled, kept, read_pseudo_labels(out))
    return with_pseudo_labelled(labelled, *stored_unlabeled(out, config, labelled, data_cfg, moved.get("unlabeled")))


def same_images(out: Path, images: data.ImageSet, fingerprint: str, what: str) -> data.ImageSet:
    """``images`` (given from Python for a run trained on images in memory), refused unless they are the run's."""
    if images.fingerprint() != fingerprint:
        raise ConfigError(f"{out}: the {what} given are not the ones this run learnt from; give those, or start a new run")
    return images


def stored_training_images(out: Path, config: dict, moved_by: Optional[str] = None) -> tuple:
    """(DataConfig, the training images) of a run, from where config.json says they are, checked unchanged."""
    data_cfg = DataConfig.from_dict(config["data"])
    source = data_cfg.source
    if data.is_missing(source):
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


def start_from(trainer: Trainer, source: Optional[transfer.Source], freeze_d: int) -> None:
    if source is not None:
        transfer.warm_start(trainer, source)
        log.info(
            f"starting from {source.path} (step {source.state['step']})"
            + (f", D's first {freeze_d} blocks fixed" if freeze_d else "")
        )
    transfer.freeze_d(trainer.D, freeze_d)


def stored_unlabeled(out: Path, config: dict, labelled: data.ImageSet, data_cfg: DataConfig, moved_by=None) -> tuple:
    """(the unlabelled images, their stored PseudoLabels) of a run that learnt from unlabelled images; refused
    when the images changed since."""
    section = config["unlabeled"]
    if section.get("in_memory"):
        raise ConfigError(
            f"{out}: learnt from unlabelled images passed from Python, which a run does not keep (pseudo_labels.json indexes them)"
        )
    source = section["unlabeled"]
    if data.is_missing(source):
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
