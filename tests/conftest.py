import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from augmentor.config import ModelConfig, TrainConfig

# Two cores: one thread each for the two workers of `pytest -n 2` (scripts/test), both for a single process
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# Real datasets sit beside the repo (../shared/datasets); a user's machine may not have them.
DATASETS = Path(os.environ.get("AUGMENTOR_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        if os.environ.get("CI") == "true":  # CI always has the shared datasets: a skip there would hide a broken path
            pytest.fail(f"CI=true but the real dataset {path} is missing")
        pytest.skip(f"real dataset {path} is not here (set AUGMENTOR_DATASETS to the shared datasets folder)")
    return path


def tiny_model(class_names=("a", "b"), mode="conditional", size=32, channels=1, width=8, nz=16) -> ModelConfig:
    return ModelConfig(size=size, channels=channels, class_names=tuple(class_names), mode=mode, width=width, nz=nz)


def tiny_train(steps=4, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=kw.pop("batch_size", 8), **kw)


def write_image(path: Path, mode="RGB", size=(20, 24), seed=0, fmt=None):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16)).save(path)
        return path
    base = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    im = base.convert("L").convert(mode) if mode in ("L", "LA") else base.convert(mode)
    if mode == "P":
        im = base.convert("P", palette=Image.Palette.ADAPTIVE)
    im.save(path, format=fmt)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two classes of small RGB PNGs and JPEGs, one name with spaces."""
    root = tmp_path / "imgs"
    for i in range(4):
        write_image(root / "cats" / f"cat {i}.png", seed=i)
        write_image(root / "dogs" / f"dog_{i}.jpg", seed=10 + i)
    return root
