"""augmentor: synthetic training images for scarce data.

The public API is what this package exports (``__all__``); the submodules are internal and may change
between releases. Names load lazily (PEP 562), so ``import augmentor`` stays cheap: torch, onnxruntime and
albumentations are imported on first use of a name that needs them.

    from augmentor import SyntheticMix
    mixed = SyntheticMix(loader, "runs/leaves", ratio=0.3)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

# The import name is `augmentor`; the distribution is `augmentor-synth`, because `augmentor` on the package
# index is an older, unrelated image-augmentation library (README, "Install").
DISTRIBUTION = "augmentor-synth"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name → the internal module that defines it
_EXPORTS = {
    "SyntheticMix": "mix",
    "SyntheticDataset": "mix",
    "SyntheticReplace": "mix",
    "SyntheticBatch": "mix",
    "PseudoLabelMix": "mix",
    "Sampler": "onnx.sampler",
    "AnomalyScorer": "anomaly",
    "fit": "run",
    "resume": "run",
    "pseudo_labelled_images": "run",
    "export_run": "onnx.export",
    "bench": "gain.runner",
    "load_images": "data",
    "ImageSet": "data",
    "DataConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "RunOptions": "config",
    "Trainer": "gan.train",
    "AugmentorError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "ModelFileError": "errors",
}
_RENAMED = {"load_images": "load"}  # public name → name inside its module

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'augmentor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), _RENAMED.get(name, name))
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
