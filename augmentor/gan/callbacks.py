"""The I/O around training: progress and log, sample grids, checkpoints, guards. All hang off
``Trainer`` hooks, so the trainer itself stays pure math and tests can run it with none of them."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch

from ..data.images import uint8_to_tanh
from ..errors import TrainingDiverged
from ..store import checkpoint, outputs
from ..store.rundir import checkpoint_name, sample_grids, sample_name
from .metrics import ClassReference
from .pictures import grid_image, write_gif
from .train import Callback, StepReport, Trainer

log = logging.getLogger("augmentor")


def _due(step: int, every: int, target: int) -> bool:
    return step == target or (every > 0 and step % every == 0)


class ProgressLog(Callback):
    """Averages losses on the device and syncs once per ``every`` steps: one line to log.jsonl and the
    progress bar's losses. Reading a loss every step would stall a GPU on each one. Reports a NaN/inf
    average; writes the other callbacks' log fields into the same step's row."""

    def __init__(self, path: Optional[Path], every: int = 10, progress: bool = True):
        self.path, self.every, self.progress = path, max(1, every), progress
        self.sums: dict = {}
        self.count = 0
        self.values: Optional[dict] = None  # this step's averages, once synced
        self.postfix: dict = {}
        self.bar = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self.target = trainer.train_cfg.steps
        # a resumed run's clock goes on from the time logged at the step it resumes from: "time" is training time
        self.t0 = time.time() - (logged_seconds(self.path, trainer.step) if self.path is not None else 0.0)
        if self.path is not None:
            outputs.claim(self.path)
        if self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.target, initial=trainer.step, unit="step", desc="fit", dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, logs: dict) -> Optional[StepReport]:
        for k, v in logs.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        self.values = None
        if not _due(trainer.step, self.every, self.target):
            return None
        self._average()
        return StepReport(nonfinite=any(not math.isfinite(v) for v in self.values.values()))

    def _average(self) -> None:
        self.values = {k: float(v) / self.count for k, v in self.sums.items()}  # the one sync
        self.sums, self.count = {}, 0

    def on_step_reported(self, trainer: Trainer, logs: dict, report: StepReport) -> None:
        if report.nonfinite or (self.values is None and not report.log):
            return  # a broken step's row is not written: the run rolls back past it
        if self.values is None:  # another callback has figures for this step: write its row now
            self._average()
        row = {"step": trainer.step, **{k: round(v, 5) for k, v in self.values.items()}, "time": round(time.time() - self.t0, 2)}
        row.update(report.log)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.bar is not None:
            self.postfix.update({k: f"{v:.3f}" for k, v in self.values.items() if k != "coverage" or v})
            self.postfix.update(report.progress)
            self.bar.set_postfix(self.postfix, refresh=False)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class SampleGrids(Callback):
    """Grids from fixed noise, one row per class: ``samples/step_XXXXXX.png``; at the end, progress.gif."""

    def __init__(self, folder: Path, every: int, per_row: int = 8, gif: Optional[Path] = None):
        self.folder, self.every, self.per_row, self.gif = Path(folder), every, per_row, gif

    def on_fit_start(self, trainer: Trainer) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = trainer.model_cfg
        g = torch.Generator().manual_seed(1234)
        rows = cfg.num_classes
        self.z = torch.randn(rows * self.per_row, cfg.nz, generator=g).to(trainer.device)
        self.labels = torch.arange(rows).repeat_interleave(self.per_row).to(trainer.device)
        self.target = trainer.train_cfg.steps

    def on_step_reported(self, trainer: Trainer, logs: dict, report: StepReport) -> None:
        if _due(trainer.step, self.every, self.target) and not report.nonfinite:
            self.write(trainer)

    def write(self, trainer: Trainer) -> Path:
        with torch.no_grad():
            images = trainer.sampling_generator()(self.z, self.labels)
        path = self.folder / sample_name(trainer.step)
        grid = grid_image(images, rows=trainer.model_cfg.num_classes)
        outputs.write(path, lambda f: grid.save(f, format="PNG"), own=True)
        return path

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.gif is not None and trainer.step >= self.target:
            outputs.claim(self.gif)
            write_gif([path for _, path in sample_grids(self.folder)], self.gif)


class DiversityMonitor(Callback):
    """Catches within-class collapse while training. Every ``every`` steps, ``n`` samples per class from
    fixed noise are compared with that class's real images (metrics.ClassReference): the diversity ratio
    and nearest-real ratio go to log.jsonl, the worst class to the progress bar, and a warning names any
    class whose diversity falls below ``warn_below``."""

    def __init__(self, every: int, n: int = 32, warn_below: float = 0.4):
        self.every, self.n, self.warn_below = every, n, warn_below
        self.warned: set = set()
        self.history: list = []

    def on_fit_start(self, trainer: Trainer) -> None:
        cfg = trainer.model_cfg
        self.names = list(cfg.class_names)
        self.reference = ClassReference(uint8_to_tanh(trainer.images).cpu(), trainer.labels.cpu(), cfg.num_classes)
        g = torch.Generator().manual_seed(4321)
        self.z = torch.randn(cfg.num_classes * self.n, cfg.nz, generator=g).to(trainer.device)
        self.labels = torch.arange(cfg.num_classes).repeat_interleave(self.n).to(trainer.device)
        self.target = trainer.train_cfg.steps

    def on_step_end(self, trainer: Trainer, logs: dict) -> Optional[StepReport]:
        if self.every > 0 and _due(trainer.step, self.every, self.target):
            return self.measure(trainer)
        return None

    def measure(self, trainer: Trainer) -> StepReport:
        """The per-class figures as a report: log fields and the worst class for the progress bar."""
        with torch.no_grad():
            samples = trainer.sampling_generator()(self.z, self.labels).cpu()
        per_class = {}
        for c, name in enumerate(self.names):
            per_class[name] = self.reference.compare(samples[self.labels.cpu() == c], c)
        diversity = {k: v["diversity"] for k, v in per_class.items() if v["diversity"] is not None}
        nearest = {k: v["nearest_real"] for k, v in per_class.items() if v["nearest_real"] is not None}
        recall = {k: v["recall"] for k, v in per_class.items() if v["recall"] is not None}
        report = StepReport(log={"diversity": diversity, "nearest_real": nearest, "recall": recall})
        if diversity:
            worst = min(diversity, key=diversity.get)
            report.progress["worst"] = f"{worst}:{diversity[worst]:.2f}"
            # A generator at initialisation is nearly constant: judge collapse only after a quarter of the run.
            if trainer.step >= self.target // 4:
                low = {name for name, v in diversity.items() if v < self.warn_below}
                new = sorted(low - self.warned, key=self.names.index)
                if new:
                    weight = trainer.train_cfg.coverage
                    advice = f"raise --coverage above {weight:g} or fit longer" if weight else "try --coverage 5"
                    log.warning(
                        f"class{'es' if len(new) > 1 else ''} {', '.join(repr(n) for n in new)} look{'' if len(new) > 1 else 's'} "
                        f"collapsed at step {trainer.step}: samples vary under {self.warn_below}× as much as the real images "
                        f"(worst {diversity[worst]:.2f}); see samples/, {advice}"
                    )
                self.warned = low
        self.history.append((trainer.step, per_class))
        return report


class ShareMembers(Callback):
    """Per-class mode under torchrun: make the sharded bank whole on every rank before a sample grid, a
    diversity check or a checkpoint is made of it (Trainer.share_members; nothing to do otherwise)."""

    def __init__(self, sample_every: int, checkpoint_every: int):
        self.every = (sample_every, checkpoint_every)

    def on_fit_start(self, trainer: Trainer) -> None:
        self.target = trainer.train_cfg.steps

    def on_step_end(self, trainer: Trainer, logs: dict) -> Optional[StepReport]:
        if trainer.sharded and any(_due(trainer.step, every, self.target) for every in self.every):
            trainer.share_members()
        return None


class Checkpointer(Callback):
    """Atomic checkpoints every ``every`` steps and at the end; keeps the newest ``keep``."""

    def __init__(self, folder: Path, every: int, keep: int = 3, extra: Optional[dict] = None, write: bool = True):
        self.folder, self.every, self.keep, self.extra = Path(folder), every, max(1, keep), extra or {}
        self.write = write  # under torchrun every rank takes part (RNG states are gathered), rank 0 writes

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.write:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.target = trainer.train_cfg.steps

    def on_step_end(self, trainer: Trainer, logs: dict) -> Optional[StepReport]:
        if _due(trainer.step, self.every, self.target) and not all(bool(torch.isfinite(v)) for v in logs.values()):
            return StepReport(nonfinite=True)  # never write a checkpoint of broken weights
        return None

    def on_step_reported(self, trainer: Trainer, logs: dict, report: StepReport) -> None:
        if _due(trainer.step, self.every, self.target) and not report.nonfinite:
            self.save(trainer)

    def save(self, trainer: Trainer) -> Path:
        payload = {
            **trainer.state_dict(),
            "model_config": trainer.model_cfg.to_dict(),
            "train_config": trainer.train_cfg.to_dict(),
            **self.extra,
        }
        path = self.folder / checkpoint_name(trainer.step)
        if not self.write:
            return path
        checkpoint.save(path, payload)
        ours = outputs.listed(self.folder)
        for old in [p for p in checkpoint.list_checkpoints(self.folder) if p.name in ours][: -self.keep]:
            old.unlink(missing_ok=True)
        return path


class NonFiniteGuard(Callback):
    """A NaN or inf loss rolls the run back to the newest good checkpoint; a second one within the
    same checkpoint interval stops the run with an error, leaving the good checkpoints in place."""

    def __init__(self, folder: Path, log_path: Optional[Path] = None):
        self.folder, self.log_path = Path(folder), log_path
        self.restored_from: Optional[int] = None

    def on_step_reported(self, trainer: Trainer, logs: dict, report: StepReport) -> None:
        if not report.nonfinite:
            return
        found = checkpoint.latest_good(self.folder, map_location=trainer.device)
        if found is None or self.restored_from == found[1]["step"]:
            raise TrainingDiverged(
                f"loss became NaN/inf at step {trainer.step}"
                + (" again after restoring" if found else " before any checkpoint")
                + "; try a lower --lr or --loss hinge (good checkpoints are kept)"
            )
        path, state = found
        log.warning(f"loss became NaN/inf at step {trainer.step}; restoring {path.name} (step {state['step']})")
        trainer.load_state_dict(state)
        if self.log_path is not None:
            truncate_log(self.log_path, trainer.step)
        self.restored_from = state["step"]


def logged_seconds(path: Path, up_to: Optional[int] = None) -> float:
    """The training time log.jsonl records at its last row (up to step ``up_to``); 0 where it records none."""
    path, seconds = Path(path), 0.0
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if "time" in row and (up_to is None or row.get("step", 0) <= up_to):
                seconds = row["time"]
    return seconds


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (and a torn last line), so a resumed run has no gap and no repeat."""
    path = Path(path)
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            keep.append(line)
    outputs.write(path, lambda f: f.write("".join(k + "\n" for k in keep).encode()), own=True)
