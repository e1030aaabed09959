"""The run directory: every file name and pattern a run writes, declared once; which files are the run's own;
the lock a fit holds; the checks made before a fit writes anything.

run/
  config.json        data, model and training configs, data fingerprint, versions (the run's source of truth)
  holdout.json       which images were held out of training
  pseudo_labels.json with --unlabeled: the unlabelled images kept for the GAN, their pseudo-labels and confidence
  checkpoints/       ckpt_XXXXXX.pt, the newest --keep-checkpoints (each embeds the same configs)
  samples/           step_XXXXXX.png grids (one row per class); progress.gif the grids as an animation
  log.jsonl          losses every few steps; losses.png, diversity.png the same as plots
  generator.onnx     discriminator.onnx: written by export at the end
  encoder.onnx       anomaly.npz: written by anomaly scoring on first use (the encoder, the normal images' references)
  .augmentor-files   in each of these folders: the files augmentor wrote there (store/outputs.py)
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from .. import data
from ..config import DataConfig, UnlabeledConfig
from ..errors import ModelFileError, RunDirError, cannot_write
from . import legacy, outputs

CONFIG = "config.json"
HOLDOUT = "holdout.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
PSEUDO_LABELS = "pseudo_labels.json"  # with --unlabeled: which unlabelled images were kept, with which label
MODEL_FILES = {"generator": "generator.onnx", "discriminator": "discriminator.onnx", "encoder": "encoder.onnx"}
ANOMALY = "anomaly.npz"  # what anomaly scores compare with: normal images' D features and statistics, calibration
LOSSES_PLOT, DIVERSITY_PLOT, PROGRESS_GIF = "losses.png", "diversity.png", "progress.gif"
LOCK = ".lock"  # held by the fit writing the run (its process id)
# Every name a run writes at its top
FP16_FILES = tuple(name.replace(".onnx", "-fp16.onnx") for name in MODEL_FILES.values())  # export --fp16
RUN_FILES = (
    CONFIG,
    HOLDOUT,
    LOG,
    PSEUDO_LABELS,
    ANOMALY,
    LOSSES_PLOT,
    DIVERSITY_PLOT,
    PROGRESS_GIF,
    *MODEL_FILES.values(),
    *FP16_FILES,
)


CHECKPOINT_NAME = re.compile(r"^ckpt_(\d{6,})\.pt$")
SAMPLE_NAME = re.compile(r"^step_(\d{6,})\.png$")
# What a run writes in each of its folders: these names, and names of this pattern
RUN_LAYOUT = {".": (RUN_FILES, None), CHECKPOINTS: ((), CHECKPOINT_NAME), SAMPLES: ((), SAMPLE_NAME)}
RUN_SECTIONS = ("augmentor_version", "data", "model", "train", "data_fingerprint")  # what every run's config.json holds


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:06d}.pt"


def sample_name(step: int) -> str:
    return f"step_{step:06d}.png"


def sample_grids(folder) -> list:
    """A run's sample grids in ``folder``, oldest step first, as (step, path)."""
    folder = Path(folder)
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := SAMPLE_NAME.match(p.name))] if folder.is_dir() else []
    return sorted(found)


def is_run(out) -> bool:
    """Whether ``out`` holds an augmentor run: a config.json with the sections every run writes."""
    try:
        return _is_run_config(json.loads((Path(out) / CONFIG).read_text()))
    except (OSError, ValueError):
        return False


def _is_run_config(config) -> bool:
    return isinstance(config, dict) and all(k in config for k in RUN_SECTIONS)


def run_files(out) -> dict:
    """{folder of the run ("." for its top): the names augmentor wrote there}. A run from before the manifests
    (augmentor 0.10 and older) listed nothing: its files are the ones named as a run names them."""
    out = Path(out)
    if not (out / outputs.MANIFEST).exists() and is_run(out):
        return legacy.files_by_name(out, RUN_LAYOUT)
    return {sub: outputs.listed(out / sub) for sub in RUN_LAYOUT}


def run_files_in_the_way(out, ours: dict) -> list:
    """What a run in ``out`` would write over that augmentor did not write (``ours``: run_files(out))."""
    out = Path(out)
    found = []
    for sub, (names, pattern) in RUN_LAYOUT.items():
        folder = out / sub
        if folder.exists() and not folder.is_dir():
            found.append(folder)
        else:
            found += outputs.in_the_way(folder, names, pattern, ours[sub])
    return found


def adopt_run_files(out, ours: dict) -> None:
    """List ``ours`` in the run's manifests: a legacy run is adopted before it is written again."""
    outputs.claim(*(Path(out) / sub / name for sub, names in ours.items() for name in sorted(names)))


def remove_run_files(out, ours: dict) -> None:
    """Remove what a run wrote in ``out`` (``ours``: run_files(out)), and its subfolders if nothing else is left."""
    out = Path(out)
    for sub in RUN_LAYOUT:
        outputs.remove_listed(out / sub, ours[sub])
        if sub != ".":
            outputs.remove_empty(out / sub)


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


def check_run_dir_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is a file, not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(out, e, RunDirError) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"{out}: cannot write here (permission denied)")


def check_outside_sources(out: Path, data_cfg, unlabeled) -> None:
    """Refuse an --out inside the images it learns from: its files would join them (and --force could remove them)."""
    sources = [("--data", data_cfg.source if isinstance(data_cfg, DataConfig) else None)]
    sources.append(("--unlabeled", unlabeled.unlabeled if isinstance(unlabeled, UnlabeledConfig) else None))
    _refuse_inside(out, sources, "the run's files would mix with your images")


def check_outside_run_sources(out: Path, model: Path) -> None:
    """Refuse an --out inside the images the run at ``model`` (its folder, or a model file in it) learnt from:
    images written there would join the user's (as a new class folder of an ImageFolder tree). A model outside a
    run (an exported folder) names no images."""
    run_dir = Path(model) if Path(model).is_dir() else Path(model).parent
    if not is_run(run_dir):
        return
    config = read_config(run_dir)
    sources = [("--data", legacy.section(config, "data", {}).get("source"))]
    sources.append(("--unlabeled", legacy.section(config, "unlabeled", {}).get("unlabeled")))
    _refuse_inside(out, [(f"the run's {flag}", source) for flag, source in sources], "the images would join yours there")


def _refuse_inside(out: Path, sources: list, why: str) -> None:
    for flag, source in sources:
        if source and source != data.BUILTIN_DIGITS and outputs.is_within(out, source):
            raise RunDirError(f"--out {out} is inside {flag} {source}: {why}; choose another --out")


def check_new_run_dir(out: Path, force: bool) -> dict:
    """Refuse, before anything is written, an --out that holds a run (without --force), a folder of the user's
    (without --force), or files a run would write over that augmentor did not write. Returns the run files
    that --force replaces (run_files)."""
    run_here = is_run(out)
    if (out / CONFIG).exists() and not run_here:
        raise RunDirError(f"{out}: its config.json is not an augmentor run's; choose another --out")
    if run_here and not force:
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
    if not _is_run_config(config):
        raise ModelFileError(f"{path}: not an augmentor run's config (it lacks {', '.join(RUN_SECTIONS)})")
    return config
