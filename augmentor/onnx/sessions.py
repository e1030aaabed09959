"""onnxruntime sessions: providers, threads, fork safety."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from ..errors import ConfigError

log = logging.getLogger("augmentor")


def ort_cuda_usable() -> bool:
    """Only ask onnxruntime for CUDA where there is a GPU: onnxruntime-gpu logs an error otherwise. When torch
    sees a GPU that onnxruntime cannot use, say so once: sampling then runs on the CPU, much slower."""
    import torch

    if not torch.cuda.is_available():
        return False
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return True
    global _warned_no_cuda_ep
    if not _warned_no_cuda_ep:
        _warned_no_cuda_ep = True
        log.warning(
            "torch sees a CUDA GPU but this onnxruntime has no CUDA provider, so sampling runs on the CPU; "
            "fix: pip uninstall onnxruntime && pip install onnxruntime-gpu"
        )
    return False


_warned_no_cuda_ep = False


def resolve_ort_device(device: str) -> str:
    """ "auto" → "cuda" when onnxruntime can use a GPU, else "cpu"; a bad or unusable device is refused."""
    if device == "auto":
        return "cuda" if ort_cuda_usable() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device {device!r} is not one of auto, cpu, cuda")
    if device.startswith("cuda") and not ort_cuda_usable():
        raise ConfigError(f"device {device}: no GPU that onnxruntime can use here; use device='cpu'")
    return device


class LazySession:
    """An onnxruntime session made on first use and made again in a new process, so an object holding one
    can be handed to DataLoader workers (forked or spawned): each worker opens its own."""

    def __init__(self, path: Path, device: str = "cpu", cuda_options: Optional[dict] = None):
        self.path, self.device, self.cuda_options = Path(path), device, dict(cuda_options or {})
        self._session, self._pid = None, None

    def get(self):
        if self._session is None or self._pid != os.getpid():
            import onnxruntime as ort
            import torch

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, torch.get_num_threads())  # 1 in DataLoader workers
            opts.log_severity_level = 3
            if self.device.startswith("cuda"):
                index = int(self.device.split(":")[1]) if ":" in self.device else 0
                providers = [("CUDAExecutionProvider", {**self.cuda_options, "device_id": index}), "CPUExecutionProvider"]
            else:
                providers = ["CPUExecutionProvider"]
            self._session = ort.InferenceSession(str(self.path), opts, providers=providers)
            self._pid = os.getpid()
        return self._session

    def __getstate__(self):  # picklable for spawn-started workers: the session is rebuilt there
        return {**self.__dict__, "_session": None, "_pid": None}
