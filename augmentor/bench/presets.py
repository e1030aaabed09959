"""The bench's presets (how much it trains) and --shots."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TrainConfig
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
