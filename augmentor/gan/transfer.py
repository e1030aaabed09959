"""Start from a GAN fitted on related data (``fit --init RUN``), as Transfer GAN (Wang et al. 2018) does,
optionally with the discriminator's first blocks frozen (FreezeD, Mo et al. 2020).

G, D and the EMA generator are copied from the source run's newest good checkpoint. Classes are matched by
name: a class the source knew keeps its embedding bit for bit, a new class starts from the mean of the
known ones (a point among the shapes the generator already draws, rather than noise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError, ModelFileError
from ..store import checkpoint
from ..store.rundir import CHECKPOINTS

SHARED = ("width", "nz", "spectral_norm")  # model options the target takes from the source unless given


@dataclass(frozen=True)
class Source:
    given: str  # what the user named: a run directory or a checkpoint
    path: Path  # the checkpoint
    state: dict
    model: ModelConfig

    def record(self) -> dict:
        """What config.json and the exported files say about where the run started."""
        return {
            "checkpoint": str(self.path.resolve()),
            "step": int(self.state["step"]),
            "data_fingerprint": self.state.get("data_fingerprint", ""),
            "class_names": list(self.model.class_names),
        }


def load_source(init) -> Source:
    """The newest good checkpoint of a run directory (or a checkpoint file itself)."""
    path = Path(init)
    if path.is_file():
        found = (path, checkpoint.load(path))
    elif path.is_dir():
        found = checkpoint.latest_good(path / CHECKPOINTS)
    else:
        raise ConfigError(f"--init {init}: no such run directory")
    if found is None:
        raise ModelFileError(f"--init {init}: no usable checkpoint there (give a run directory that fit wrote)")
    return Source(str(init), found[0], found[1], ModelConfig.from_dict(found[1]["model_config"]))


def model_options(source: Source, given: dict) -> dict:
    """The target's model options: the source's width, nz and spectral norm unless given."""
    return {**{k: getattr(source.model, k) for k in SHARED}, **given}


def check_compatible(source: Source, target: ModelConfig, freeze_d: int) -> None:
    """Refuse, in one line, what cannot be warm-started."""
    src, where = source.model, f"--init {source.given}"
    if (src.size, src.channels) != (target.size, target.channels):
        raise ConfigError(
            f"{where}: was trained on {src.size} px images with {src.channels} channel(s), these are {target.size} px "
            f"with {target.channels}; give --size {src.size} (and --channels {src.channels}) or another --init"
        )
    for name in SHARED:
        if getattr(src, name) != getattr(target, name):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{where}: has {flag} {getattr(src, name)}, not {getattr(target, name)}; drop {flag} to use the run's"
            )
    if src.mode != target.mode:
        hint = (
            "a per-class run has no shared model to carry over; fit the source with --mode conditional"
            if src.mode == "per-class"
            else f"the models differ in shape; use --mode {src.mode}"
        )
        raise ConfigError(f"{where}: is a {src.mode} run and this one {target.mode}: {hint}")
    if target.mode == "per-class":
        new = [c for c in target.class_names if c not in src.class_names]
        if new:
            raise ConfigError(
                f"{where}: knows no class {new[0]!r}, and per-class models share nothing a new class could start from; "
                "use --mode conditional"
            )
    blocks = target.n_upsamplings
    if freeze_d > blocks:
        raise ConfigError(f"--freeze-d {freeze_d}: D has {blocks} blocks at {target.size} px")


def warm_start(trainer, source: Source) -> None:
    """Copy the source's G, D and EMA generator into a new trainer (whose configs passed check_compatible)."""
    names = trainer.model_cfg.class_names
    for module, key in ((trainer.G, "G"), (trainer.D, "D"), (trainer.G_ema, "G_ema")):
        state = _match_classes(source.state[key], source.model, names)
        module.load_state_dict(state)


def _match_classes(state: dict, src: ModelConfig, names) -> dict:
    """A state dict laid out for the target's classes: rows of class embeddings (conditional) or members
    (per-class) taken by class name; a new class's embedding is the mean of the known ones."""
    known = [src.class_names.index(c) if c in src.class_names else None for c in names]
    if src.mode == "conditional":
        out = dict(state)
        for key, table in state.items():
            if key.endswith("embed.weight"):
                mean = table.mean(0)
                out[key] = torch.stack([table[i] if i is not None else mean for i in known])
        return out
    if src.mode == "per-class":
        member = re.compile(r"^members\.(\d+)\.")
        out = {}
        for j, i in enumerate(known):
            for key, value in state.items():
                m = member.match(key)
                if m and int(m.group(1)) == i:
                    out[member.sub(f"members.{j}.", key)] = value
        return out
    return state


def freeze_d(D: nn.Module, n: int) -> None:
    """Keep the first ``n`` blocks of D (each member's, per class) fixed: no gradients reach their weights.
    (Spectral norm's power iteration still refines its estimate of the fixed weights' norm.)"""
    if n <= 0:
        return
    for d in getattr(D, "members", [D]):
        convs = [i for i, m in enumerate(d.body) if isinstance(m, nn.Conv2d)]
        last = convs[n] if n < len(convs) else len(d.body)  # up to the next block's convolution
        d.body[:last].requires_grad_(False)
