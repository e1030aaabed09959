"""The bench's options, declared once (the CLI's flags and docs/cli.md derive from them), and its presets: how
much it trains, as data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from ..config import TrainConfig, option
from ..errors import ConfigError


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
    pseudo_steps: int = 1000  # the pseudo-labelling classifier's steps (with unlabelled images)
    labeller_steps: int = 2000  # the semi-supervised GAN's steps, which then gives the pseudo-labels
    pseudo_threshold: float = 0.9

    def gan_recipe(self, seed: int, coverage=None) -> TrainConfig:
        """How the bench's GANs train: fewer steps than fit's default, so the short-run recipe."""
        return TrainConfig.short_run(self.gan_steps, batch_size=self.batch_size, seed=seed, coverage=coverage)


PRESETS = {
    # the protocol at CPU scale
    "quick": Preset(shots=(10,), seeds=(0, 1, 2), gan_steps=800, clf_steps=400, width=32, reference=True),
    # the unlabelled-image recipes compared where the classifier is good enough to tell them apart: with their
    # true labels the unlabelled images take it to the ceiling a recipe can reach
    "standard": Preset(shots=(10,), seeds=(0, 1, 2), gan_steps=800, clf_steps=2000, width=32),
    # for a GPU: the protocol of the README's tables
    "full": Preset(
        shots=(10, 20, 50, 100), seeds=(0, 1, 2), gan_steps=3000, clf_steps=1000, width=64, n_synthetic=5000, reference=True
    ),
    # seconds: a dry run of every step, for tests
    "smoke": Preset(
        shots=(6,),
        seeds=(0, 1),
        gan_steps=3,
        clf_steps=3,
        width=8,
        batch_size=16,
        n_synthetic=60,
        reference=True,
        pseudo_steps=30,
        labeller_steps=30,
        pseudo_threshold=0.2,
    ),
}


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


def parse_seeds(text: str) -> tuple:
    """'0,1,2' → (0, 1, 2), each seed once."""
    try:
        seeds = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--seeds {text}: not a comma-separated list of integers, e.g. '0,1,2'") from None
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"--seeds {text}: a seed given twice would count one result twice")
    return seeds


@dataclass(frozen=True)
class BenchOptions:
    """What `augmentor bench` measures and how. ``seeds`` and ``shots`` also take their command-line text
    ('0,1', '10,10%,all'); fields left None take the preset's value."""

    source: Optional[str] = option(None, "Any --data source of fit (default sklearn:digits).", flag="--data")
    preset: str = option(
        "quick",
        "quick: the protocol at CPU scale (one seed with unlabelled images on one CPU core: about 35 min at 32 px, "
        "about 2 h at 64 px); standard: the quick GANs, classifiers trained 5x longer, to compare the unlabelled-image "
        "recipes (the same: about 95 min at 32 px, about 9 h at 64 px: a GPU's work); full: the whole protocol, for a "
        "GPU; smoke: seconds, a dry run.",
        choices=tuple(PRESETS),
    )
    size: int = option(32, "Image side: 32, 64 or 128.")
    device: str = option("auto", "auto, cpu or cuda[:i].")
    seeds: Optional[tuple] = option(None, "Override the preset's seeds, e.g. '0' or '0,1,2'.")
    shots: Optional[tuple] = option(
        None, "Training sets to draw, e.g. '10,50' per class, '10%' of the data (imbalance kept) or 'all'; default the preset's."
    )
    gan_steps: Optional[int] = option(
        None, "Override the preset's GAN steps (every GAN of the bench); the presets train fewer than fit does."
    )
    coverage: Optional[float] = option(None, "Coverage weight of the GANs (default: fit's, 5 for ≤ 100 images a class).")
    augment: Optional[str] = option(
        None,
        "Your albumentations pipeline, saved with albumentations.save(pipeline, FILE), for the classical arms "
        "(default: the built-in preset, or none where that scores better on the validation images beyond their noise).",
    )
    unlabeled: Optional[str] = option(
        None,
        "Unlabelled images (any --data source): adds the SELF (self-training), SELF-G, FIX (FixMatch), FIX+G, U and SELF+U arms.",
    )
    unlabeled_rest: bool = option(
        False, "Treat the pool images outside each setting's draw as unlabelled (benchmarks on labelled data)."
    )
    unlabeled_shares: Optional[str] = None  # its option is fit's (config.UnlabeledConfig)
    classes: Optional[str] = option(None, "Bench on these classes only (by name or index), e.g. '5,6,7,8,9'.")

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset {self.preset} is not one of {', '.join(PRESETS)}")
        as_text = lambda v: v if isinstance(v, str) else ",".join(map(str, v))  # noqa: E731
        if self.seeds is not None:  # the text, or a tuple: parsed alike, so a library call is checked as the CLI is
            object.__setattr__(self, "seeds", parse_seeds(as_text(self.seeds)))
        if self.shots is not None:
            object.__setattr__(self, "shots", parse_shots(as_text(self.shots)))
        if self.gan_steps is not None and self.gan_steps < 1:
            raise ConfigError(f"--gan-steps {self.gan_steps} must be ≥ 1")
        if self.unlabeled and self.unlabeled_rest:
            raise ConfigError("give --unlabeled SOURCE or --unlabeled-rest, not both")
        if self.unlabeled_shares and not (self.unlabeled or self.unlabeled_rest):
            raise ConfigError("--unlabeled-shares describes unlabelled images: give --unlabeled SOURCE or --unlabeled-rest too")

    def preset_used(self) -> Preset:
        """The preset with this bench's --seeds and --gan-steps."""
        p = PRESETS[self.preset]
        return replace(p, seeds=self.seeds or p.seeds, gan_steps=self.gan_steps or p.gan_steps)
