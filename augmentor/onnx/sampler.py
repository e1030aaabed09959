"""Sampling an exported generator with onnxruntime.

On a GPU: the CUDA execution provider with IOBinding to torch CUDA tensors (noise made on the GPU,
images written straight into a torch tensor: no host round trip). Elsewhere: the CPU provider. The batch
is cut into chunks of one fixed shape, because onnxruntime's cuDNN algorithm search reruns for every new
input shape and its ConvTranspose is slow on very large batches.

The session is created lazily and again after a fork, so a Sampler (or a dataset holding one) can be
handed to DataLoader workers: each worker makes its own session.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..data.images import VALUE_RANGES, convert_range
from ..errors import ConfigError, cannot_write
from .metadata import find_model, read_metadata
from .sessions import LazySession, resolve_ort_device


class Sampler:
    """``Sampler(model).sample(n, labels=None, seed=None)`` → images.

    ``model``: generator .onnx or run directory. ``device``: "auto" (GPU when onnxruntime can use it),
    "cpu" or "cuda[:i]". ``chunk``: the fixed batch shape fed to onnxruntime. ``cuda_options``: onnxruntime's
    CUDA provider options (e.g. {"cudnn_conv_algo_search": "EXHAUSTIVE"}), on a GPU only.
    """

    def __init__(self, model, device: str = "auto", chunk: int = 256, cuda_options: Optional[dict] = None):
        self.path = find_model(model, "generator")
        self.meta = read_metadata(self.path)
        if chunk < 1:
            raise ConfigError(f"chunk {chunk} must be positive")
        device = resolve_ort_device(device)
        self.device = torch.device(device)
        self.chunk = chunk
        self._session = LazySession(self.path, device, cuda_options)

    # ------------------------------------------------------------------ metadata

    @property
    def class_names(self) -> list:
        return self.meta["class_names"]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return (self.meta["channels"], self.meta["size"], self.meta["size"])

    @property
    def nz(self) -> int:
        return self.meta["nz"]

    # ------------------------------------------------------------------ session

    @property
    def session(self):
        return self._session.get()

    # ------------------------------------------------------------------ sampling

    def labels_for(self, labels, n: int, generator: torch.Generator) -> torch.Tensor:
        """None → uniform over classes (seeded); an int or class name → all that class; a sequence → as given."""
        if labels is None:
            return torch.randint(self.num_classes, (n,), generator=generator)
        if isinstance(labels, (int, str, np.integer)):
            labels = [labels] * n
        if not isinstance(labels, torch.Tensor):
            labels = [self.class_index(c) for c in labels]
        labels = torch.as_tensor(labels, dtype=torch.long).cpu().flatten()
        if len(labels) != n:
            raise ConfigError(f"got {len(labels)} labels for {n} images")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ConfigError(
                f"label {int(labels.max())} is not a class of this model (it has {self.num_classes}: {', '.join(self.class_names)})"
            )
        return labels

    def class_index(self, c) -> int:
        if isinstance(c, str):
            if c not in self.class_names:
                raise ConfigError(f"class '{c}' is not one of this model's classes: {', '.join(self.class_names)}")
            return self.class_names.index(c)
        c = int(c)
        if not 0 <= c < self.num_classes:
            raise ConfigError(
                f"label {c} is not a class of this model (it has {self.num_classes}: {', '.join(self.class_names)})"
            )
        return c

    def sample(
        self,
        n: int,
        labels: Union[None, int, str, Sequence, torch.Tensor] = None,
        seed: Optional[int] = None,
        value_range: str = "tanh",
        numpy: bool = False,
    ):
        """n images (N, C, H, W): a torch tensor on the sampler's device, or a numpy array with ``numpy=True``.
        ``value_range``: "tanh" [-1, 1] float, "unit" [0, 1] float, "uint8". Same seed and provider → same images."""
        if value_range not in VALUE_RANGES:
            raise ConfigError(f"value_range {value_range!r} is not one of {', '.join(VALUE_RANGES)}")
        if n < 0:
            raise ConfigError(f"n={n} must be ≥ 0")
        g = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**62, (1,))))
        y = self.labels_for(labels, n, g)
        z = torch.randn(n, self.nz, generator=g)  # drawn on the CPU: the same seed gives the same noise everywhere
        images = self.generate(z.to(self.device), y.to(self.device))
        images = convert_range(images, "tanh", value_range)
        return images.cpu().numpy() if numpy else images

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The raw generator on given noise and labels: float [-1, 1] on ``z``'s device."""
        n = len(z)
        out = torch.empty((n, *self.image_shape), dtype=torch.float32, device=z.device)
        for start in range(0, n, self.chunk):
            stop = min(start + self.chunk, n)
            zc, yc = z[start:stop], labels[start:stop]
            if stop - start < self.chunk and z.device.type == "cuda":  # pad to the one shape cuDNN was tuned for (CPU: no need)
                pad = self.chunk - (stop - start)
                zc = torch.cat([zc, zc.new_zeros(pad, self.nz)])
                yc = torch.cat([yc, yc.new_zeros(pad)])
            out[start:stop] = self._run(zc.float().contiguous(), yc.long().contiguous())[: stop - start]
        return out

    def _run(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if z.device.type != "cuda":
            (image,) = self.session.run(["image"], {"z": z.numpy(), "label": labels.numpy()})
            return torch.from_numpy(image)
        binding = self.session.io_binding()
        idx = z.device.index or 0
        out = torch.empty((len(z), *self.image_shape), dtype=torch.float32, device=z.device)
        binding.bind_input("z", "cuda", idx, np.float32, tuple(z.shape), z.data_ptr())
        binding.bind_input("label", "cuda", idx, np.int64, tuple(labels.shape), labels.data_ptr())
        binding.bind_output("image", "cuda", idx, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(z.device).synchronize()  # inputs written by torch are ready
        self.session.run_with_iobinding(binding)
        return out


def safe_name(name: str, fallback: str) -> str:
    """A class name as one folder name, every character kept that a file system takes (accents, CJK, spaces):
    only path separators, NUL and control characters become "_", and "." / ".." / "" become ``fallback``.
    Cut to 200 bytes of UTF-8 (file systems allow 255), never inside a character."""
    s = "".join("_" if ch in "/\\" or unicodedata.category(ch) == "Cc" else ch for ch in str(name))
    s = s.encode("utf-8")[:200].decode("utf-8", errors="ignore")
    return fallback if s.strip() in ("", ".", "..") else s


def class_folders(class_names: Sequence[str]) -> list:
    """Safe, distinct folder names, one per class."""
    seen, out = set(), []
    for i, name in enumerate(class_names):
        s = safe_name(name, f"class_{i}")
        while s.lower() in seen:
            s = f"{s}_{i}"
        seen.add(s.lower())
        out.append(s)
    return out


class ImageFolderWriter:
    """PNG files in ``out/<class>/000000.png ...`` (safe folder names, one per class). Refuses a folder that
    already holds files: nothing of the user's is overwritten."""

    def __init__(self, out, class_names):
        self.out = Path(out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError(f"{self.out}: exists and is not an empty folder; choose a new --out")
        self.folders = class_folders(class_names)
        try:
            for name in self.folders:
                (self.out / name).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise cannot_write(self.out, e) from None
        self.counts = dict.fromkeys(self.folders, 0)

    def add(self, images, labels) -> None:
        """uint8 (N, C, H, W) images (numpy or torch) with their class indices."""
        from PIL import Image

        for img, label in zip(np.asarray(images), [int(c) for c in labels]):
            name = self.folders[label]
            Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(
                self.out / name / f"{self.counts[name]:06d}.png"
            )
            self.counts[name] += 1


def write_image_folder(sampler: Sampler, n: int, out, per_class: bool = False, seed: int = 0) -> dict:
    """PNG files in ``out/<class>/``: ``n`` per class with ``per_class``, else ``n`` in all, classes in turn.
    Refuses to write into a folder that already holds files. Returns {class folder: count}."""
    from tqdm.auto import tqdm

    if n < 1:
        raise ConfigError(f"--n {n} must be at least 1")
    writer = ImageFolderWriter(out, sampler.class_names)
    total = n * sampler.num_classes if per_class else n
    labels = torch.arange(total) % sampler.num_classes
    with tqdm(total=total, desc="sampling", unit="img", disable=total < 2000, leave=False) as bar:
        for start in range(0, total, sampler.chunk):
            y = labels[start : start + sampler.chunk]
            writer.add(sampler.sample(len(y), y, seed=seed + start, value_range="uint8", numpy=True), y)
            bar.update(len(y))
    return writer.counts
