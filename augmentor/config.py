"""Frozen configs for a run: what data, which model, how to train, and the run-time settings. Each maps to
and from a plain dict (config.json, checkpoints), so a run directory or a checkpoint rebuilds everything
from the file alone.

Every user-facing setting is declared once, here, as a field with an ``Option`` in its metadata: its flag,
its help, and what ``--resume`` may do with it. The CLI's options, the resume check and docs/cli.md are all
derived from these declarations, so a new field cannot be forgotten in one of them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

from .data.images import SUPPORTED_SIZES
from .errors import ConfigError

MODES = ("conditional", "per-class", "unconditional")
LOSSES = ("ns", "hinge")
DIFFAUG_OPS = ("color", "translation", "cutout")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("off", "on")
COVERAGE_SPACES = ("pixel", "coarse", "feature")
PSEUDO_LABELLERS = ("gan", "classifier")

# What --resume may do with a setting given again on the command line.
FIXED = "fixed"  # part of the run: a different value is refused
FREE = "free"  # how this process runs (device, intervals): may change on every resume
GROW = "grow"  # may grow, never fall below what the run has done (steps)
MOVE = "move"  # where the run's images are now: the same images (checked by their fingerprint) at a new place

_SAME = object()  # "the CLI default is the field's default"

# The learning rate of runs much shorter than fit's default steps (the bench's, the README's): they get further
# in their few steps with a larger one.
SHORT_RUN_LR = 5e-4


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line."""

    help: str
    flag: Optional[str] = None  # default: --field-name
    on_resume: str = FIXED
    choices: Optional[tuple] = None
    cli_default: Any = _SAME  # e.g. None = "decided from the data" where the field itself has a concrete default
    switch: bool = False  # a boolean shown as --flag/--no-flag (else a plain on-flag)


def option(default, help: str, **kw):
    """A dataclass field declared with its command-line option."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **kw)})


@dataclass(frozen=True)
class Declared:
    """One declared option: the config class and field it sets, and how it is shown."""

    owner: type
    field: dataclasses.Field
    option: Option

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.name.replace("_", "-")

    @property
    def default(self):
        return self.field.default if self.option.cli_default is _SAME else self.option.cli_default


def declared(*classes) -> list:
    """The declared options of these config classes, in declaration order."""
    return [Declared(cls, f, f.metadata["option"]) for cls in classes for f in dataclasses.fields(cls) if "option" in f.metadata]


class _Dict:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))} (file from a newer augmentor?)")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True)
class DataConfig(_Dict):
    """Where the training images come from and which of them are used."""

    source: str = option(
        "sklearn:digits",
        "Folder of class subfolders (or a flat folder: one class), MedMNIST-style .npz, folder of MNIST IDX files, or sklearn:digits.",
        flag="--data",
        cli_default=None,
        on_resume=MOVE,
    )
    split: str = option("train", "Split of an .npz / IDX source.")
    size: int = option(32, "Image side: 32, 64 or 128.", choices=SUPPORTED_SIZES)
    channels: Optional[int] = option(None, "1 or 3 (default: detected from the images).", choices=(1, 3))
    classes: Optional[str] = option(None, "Subset of classes by name or index, e.g. 'healthy,leaf_scorch'.")
    per_class: Optional[int] = option(None, "Seeded n-shot subset: N images per class.")
    holdout: float = option(0.0, "Seeded stratified fraction kept out of training (recorded in holdout.json).")
    strict: bool = option(False, "Stop on the first unreadable image instead of skipping it.")
    seed: int = 0  # of the n-shot draw and the holdout split; the CLI sets it from --seed (TrainConfig.seed)

    def __post_init__(self):
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"--per-class {self.per_class} must be at least 1")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout {self.holdout} must be in [0, 1)")


@dataclass(frozen=True)
class ModelConfig(_Dict):
    """A DCGAN pair. ``size``, ``channels`` and ``class_names`` come from the data; ``class_names`` fixes the
    number of classes and names them in exports."""

    size: int
    channels: int
    class_names: tuple
    mode: str = option(
        "conditional", "Default: conditional with ≥ 2 classes, unconditional with one.", choices=MODES, cli_default=None
    )
    nz: int = option(128, "Noise dimension.")
    width: int = option(64, "Base channels of G and D (DCGAN's ngf = ndf).")
    spectral_norm: bool = option(True, "Spectral norm in D (else batch norm).", switch=True)

    def __post_init__(self):
        if self.size not in SUPPORTED_SIZES:
            raise ConfigError(f"size {self.size} is not supported; choose one of {SUPPORTED_SIZES}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels {self.channels} must be 1 or 3")
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode} is not one of {', '.join(MODES)}")
        if self.mode != "unconditional" and len(self.class_names) < 2:
            raise ConfigError(
                f"--mode {self.mode} needs at least 2 classes (the data has {len(self.class_names)}); use --mode unconditional"
            )
        for name, v in (("--nz", self.nz), ("--width", self.width)):
            if v < 1:
                raise ConfigError(f"{name} must be positive (got {v})")

    @classmethod
    def from_dict(cls, d: dict):
        from .store import legacy

        d = legacy.model_config(d)
        d_width = d.pop("_d_width", None)
        if d_width not in (None, d.get("width")):
            raise ConfigError(
                f"this run has generator width {d['width']} and discriminator width {d_width}; augmentor ≥ 0.2 needs them equal"
            )
        return super().from_dict(d)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_upsamplings(self) -> int:
        """Stride-2 layers between the 4×4 base and the image: 3 for 32 px, 4 for 64, 5 for 128."""
        return int(math.log2(self.size)) - 2


@dataclass(frozen=True)
class TrainConfig(_Dict):
    steps: int = option(3000, "Total training steps (on --resume: may grow the run).", on_resume=GROW)
    batch_size: int = option(64, "Images per step.")
    lr: float = option(2e-4, "Adam learning rate (β = 0.5, 0.999 as in the DCGAN paper).")
    betas: tuple = (0.5, 0.999)
    loss: str = option("ns", "Non-saturating or hinge loss.", choices=LOSSES)
    diffaug: str = option("color,translation,cutout", "DiffAugment ops on real and fake images; '' for none.")
    ema_decay: float = option(0.999, "EMA decay of the generator used for sampling.", flag="--ema")
    coverage: Optional[float] = option(
        0.0,
        "Weight of the coverage term against within-class collapse (default: 5 when a class has ≤ 100 images, else 0).",
        cli_default=None,  # None: run.fit decides from the data
    )
    coverage_k: int = option(8, "Samples per real image in the coverage term.")
    coverage_space: str = option(
        "pixel",
        "Distance of the coverage term: pixels, pixels averaged over 4×4 blocks, or D's features.",
        choices=COVERAGE_SPACES,
    )
    seed: int = option(0, "Seed of everything random: model init, batches, noise, the n-shot draw and holdout split.")

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"--steps {self.steps} must be at least 1")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 2")
        if not self.lr > 0:
            raise ConfigError(f"--lr {self.lr} must be positive")
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss {self.loss} is not one of {', '.join(LOSSES)}")
        bad = [op for op in self.diffaug_ops if op not in DIFFAUG_OPS]
        if bad:
            raise ConfigError(f"--diffaug: unknown op(s) {', '.join(bad)}; choose from {', '.join(DIFFAUG_OPS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema {self.ema_decay} must be in [0, 1)")
        if (self.coverage is not None and self.coverage < 0) or self.coverage_k < 1:
            raise ConfigError("--coverage must be ≥ 0 and --coverage-k ≥ 1")
        if self.coverage_space not in COVERAGE_SPACES:
            raise ConfigError(f"--coverage-space {self.coverage_space} must be one of {', '.join(COVERAGE_SPACES)}")

    @classmethod
    def short_run(cls, steps: int, **overrides) -> TrainConfig:
        """The recipe for a run of a few hundred to ~1,500 steps: fit's defaults with the short-run learning rate."""
        return cls(steps=steps, lr=SHORT_RUN_LR, **overrides)

    @property
    def diffaug_ops(self) -> tuple:
        return tuple(op.strip() for op in self.diffaug.split(",") if op.strip())


@dataclass(frozen=True)
class RunOptions(_Dict):
    """How this process runs a fit: where, in what precision, how often it writes. Not part of the run, so
    each may change on every --resume; not stored in config.json."""

    device: str = option("auto", "auto, cpu or cuda[:i].", on_resume=FREE)
    precision: str = option(
        "auto",
        "Training math: auto (bf16 autocast on CPUs with native bf16, else fp32), fp32 or bf16; weights stay fp32.",
        choices=PRECISIONS,
        on_resume=FREE,
    )
    compile: str = option(
        "off",
        "'on': torch.compile G and D (fused kernels; on a GPU also CUDA graphs, so far fewer launches a step) after a "
        "minute or two of compiling; 'off': eager, for debugging and on the CPU.",
        choices=COMPILE_MODES,
        on_resume=FREE,
    )
    checkpoint_every: int = option(500, "Steps between checkpoints.", on_resume=FREE)
    sample_every: int = option(250, "Steps between sample grids and diversity checks (0: only at the end).", on_resume=FREE)
    keep_checkpoints: int = option(3, "How many of the newest checkpoints to keep.", on_resume=FREE)
    export: bool = option(True, "Export generator.onnx and discriminator.onnx at the end.", switch=True, on_resume=FREE)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision} is not one of {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"--compile {self.compile} is not one of {', '.join(COMPILE_MODES)}")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1 or self.sample_every < 0:
            raise ConfigError("--checkpoint-every and --keep-checkpoints must be ≥ 1, --sample-every ≥ 0")


@dataclass(frozen=True)
class UnlabeledConfig(_Dict):
    """Unlabelled images the generator also learns from, through pseudo-labels (unlabeled.py)."""

    unlabeled: Optional[str] = option(  # a field name unique among the fit options: it is the click parameter's
        None,
        "Unlabelled images of the same kind (any --data source; a flat folder is the common case): pseudo-labelled "
        "(see --pseudo-labeller), the confident ones join the GAN's training set.",
        on_resume=MOVE,
    )
    pseudo_labeller: str = option(
        "gan",
        "Who gives the pseudo-labels: 'gan', a semi-supervised GAN whose discriminator is also a classifier and learns "
        "from every unlabelled image (a few minutes on a CPU; `bench "
        "--unlabeled` tells which labels serve your data better), or 'classifier', the SmallCNN alone.",
        choices=PSEUDO_LABELLERS,
    )
    pseudo_threshold: float = option(0.9, "Keep an unlabelled image when the pseudo-labeller's confidence is at least this.")
    pseudo_steps: int = option(1000, "Training steps of the pseudo-labelling classifier (SmallCNN, classical augmentation).")
    labeller_steps: int = option(2000, "Training steps of the semi-supervised GAN (--pseudo-labeller gan).")
    pseudo_augment: Optional[str] = option(
        None,
        "Classical augmentation the pseudo-labellers train with: an albumentations pipeline saved with A.save (json "
        "or yaml); default: the built-in preset for gray or colour images. `bench --augment FILE` passes its FILE.",
    )
    unlabeled_shares: Optional[str] = option(
        None,
        "Each class's share of the unlabelled images, if you know it roughly, e.g. 'healthy=0.3,leaf_scorch=0.7'. The "
        "labellers learn from as many images of each class, so they over-call a class that is rarer among the "
        "unlabelled images; given the shares, each class keeps at most its share, most confident first. Default: the "
        "labelled images' shares where they differ, else none assumed.",
    )

    def __post_init__(self):
        if self.unlabeled_shares is not None:
            parse_shares(self.unlabeled_shares)
        if not 0.0 < self.pseudo_threshold < 1.0:
            raise ConfigError(f"--pseudo-threshold {self.pseudo_threshold} must be in (0, 1)")
        if self.pseudo_labeller not in PSEUDO_LABELLERS:
            raise ConfigError(f"--pseudo-labeller {self.pseudo_labeller} is not one of {', '.join(PSEUDO_LABELLERS)}")
        for name in ("pseudo_steps", "labeller_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} must be at least 1")


def parse_shares(text: str) -> dict:
    """'healthy=0.3,leaf_scorch=0.7' → {class name: share}, normalised to sum 1 (so counts work too)."""
    shares = {}
    for item in text.split(","):
        name, _, value = (part.strip() for part in item.partition("="))
        try:
            share = float(value)
        except ValueError:
            share = math.nan
        if not name or name in shares or not 0 < share < math.inf:
            raise ConfigError(f"--unlabeled-shares {text}: '{item}' is not CLASS=SHARE with a positive share, once per class")
        shares[name] = share
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()}


@dataclass(frozen=True)
class InitConfig(_Dict):
    """Start from a generator fitted on related data (transfer.py)."""

    init: Optional[str] = option(
        None,
        "Warm-start G, D and the EMA generator from this run (same size and channels; classes it knew keep their "
        "embeddings, new ones start from their mean). Width, nz and spectral norm default to the run's.",
    )
    freeze_d: int = option(0, "With --init: keep D's first N blocks fixed (FreezeD, Mo et al. 2020).")

    @classmethod
    def of(cls, init) -> InitConfig:
        """From what fit and bench accept: a run's path, an InitConfig, or None (no warm start)."""
        return cls(init=str(init)) if isinstance(init, (str, os.PathLike)) else init or cls()

    def __post_init__(self):
        if self.freeze_d < 0:
            raise ConfigError(f"--freeze-d {self.freeze_d} must be ≥ 0")
        if self.freeze_d and not self.init:
            raise ConfigError("--freeze-d keeps layers of a warm-started D fixed: give --init RUN too")


FIT_CONFIGS = (DataConfig, UnlabeledConfig, InitConfig, ModelConfig, TrainConfig, RunOptions)
# Where each config lives in config.json (run-time options are not stored).
SECTIONS = {DataConfig: "data", UnlabeledConfig: "unlabeled", InitConfig: "init", ModelConfig: "model", TrainConfig: "train"}
