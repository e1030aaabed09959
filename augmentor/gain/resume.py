"""`bench --resume`: a bench takes hours on a CPU, so what it finished survives an interruption.

A bench writes the options it started with (STARTED) before training anything; each setting keeps its finished
classifiers, the checkpoints of the one in training and its classifier's pseudo-labels in ``settings/``
(SettingStore) and its GANs in ``runs/``. Resumed, the bench runs every setting again with the same options,
loading what is there instead of training it, and an interrupted classifier or GAN continues from its last
checkpoint; the wall times reported are those of the first training (an interrupted one's: up to its last
checkpoint, then after the resume). When the report is written, ``settings/`` goes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import InitConfig, TrainConfig
from ..errors import ConfigError
from ..semi.classifier import Checkpoints, SmallCNN
from ..semi.unlabeled import PseudoLabels
from ..store import outputs
from ..store.rundir import CONFIG, MODEL_FILES
from .options import BenchOptions
from .report import RESULTS

STARTED = "bench.json"  # the options a bench started with: --resume continues with them
SETTINGS = "settings"  # each setting's finished classifiers and labels, until the report is written
PARTIAL = ".partial.pt"  # beside a classifier's name: the checkpoint of its training, until it finishes


def record_start(out: Path, options: BenchOptions, init: InitConfig | None) -> None:
    started = {"options": dataclasses.asdict(options), "init": dataclasses.asdict(init) if init else None}
    outputs.write(out / STARTED, lambda f: f.write(json.dumps(started, indent=2).encode()))


def started_with(out: Path) -> tuple:
    """(BenchOptions, InitConfig or None) of the unfinished bench in ``out``, or a one-line error."""
    if (out / RESULTS).exists():
        raise ConfigError(f"{out}: this bench has finished (report.md); choose a new --out to bench again")
    if not (out / STARTED).is_file():
        raise ConfigError(f"{out}: no bench to resume here (no {STARTED}); run augmentor bench without --resume")
    try:
        started = json.loads((out / STARTED).read_text())
        options = BenchOptions(**started["options"])
        init = InitConfig(**started["init"]) if started["init"] else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{out / STARTED}: cannot be read ({e}); start a new bench with another --out") from None
    return options, init


GAN_FINISHED, GAN_CUT_OFF = "finished", "cut off"


def trained_gan(directory: Path, train_cfg: TrainConfig) -> Optional[str]:
    """How far an interrupted bench got with the GAN in ``directory``: GAN_FINISHED (its generator is exported, the
    last thing a fit writes), GAN_CUT_OFF (its config.json records ``train_cfg``'s steps and seed: its pseudo-labels,
    if any, and checkpoints are there to continue from) or None (nothing to keep). The rest of the recipe is the
    bench's, which --resume keeps."""
    try:
        trained = json.loads((directory / CONFIG).read_text())["train"]
    except (OSError, ValueError, KeyError):
        return None
    if (trained.get("steps"), trained.get("seed")) != (train_cfg.steps, train_cfg.seed):
        return None
    return GAN_FINISHED if (directory / MODEL_FILES["generator"]).is_file() else GAN_CUT_OFF


@dataclasses.dataclass(frozen=True)
class SettingStore:
    """One setting's finished classifiers and pseudo-labels, kept in ``folder``, and the checkpoints of the one in
    training."""

    folder: Path
    shape: tuple  # SmallCNN's (channels, classes, size)
    device: str = "cpu"
    checkpoint_every: int = 100  # steps

    def classifier(self, key: str, train: Callable) -> tuple:
        """(model, extras, seconds): the classifier ``key`` as saved, else ``train(checkpoints)`` (a model, or a
        model and a dict of extras to keep beside it), which continues from the checkpoints an interrupted bench
        left, and the seconds its training took in all."""
        path = self.folder / f"{key}.pt"
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model = SmallCNN(*self.shape)
            model.load_state_dict(saved["state"])
            return model.on(self.device).eval(), saved["extras"], saved["seconds"]
        self.folder.mkdir(parents=True, exist_ok=True)
        checkpoints = Checkpoints(self.folder / f"{key}{PARTIAL}", self.checkpoint_every)
        t = time.time() - checkpoints.seconds_before()
        trained = train(checkpoints)
        model, extras = trained if isinstance(trained, tuple) else (trained, {})
        seconds = time.time() - t
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        outputs.write(path, lambda f: torch.save({"state": state, "extras": extras, "seconds": seconds}, f), own=True)
        checkpoints.path.unlink(missing_ok=True)
        return model, extras, seconds

    def pseudo_labels(self, key: str, label: Callable) -> PseudoLabels:
        """The pseudo-labels ``key`` as saved, else ``label()``."""
        path = self.folder / f"{key}.json"
        if path.is_file():
            return PseudoLabels.from_json(path.read_text())
        pseudo = label()
        self.folder.mkdir(parents=True, exist_ok=True)
        outputs.write(path, lambda f: f.write(pseudo.to_json().encode()), own=True)
        return pseudo


def drop_settings(out: Path) -> None:
    """The settings' saved classifiers and labels, once the report holds their figures (the files the bench listed)."""
    folder = out / SETTINGS
    if folder.is_dir():
        for setting in folder.iterdir():
            if setting.is_dir():
                outputs.remove_listed(setting)
                outputs.remove_empty(setting)
        outputs.remove_empty(folder)
