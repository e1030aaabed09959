"""Data sources → one uint8 tensor (N, C, H, W) with labels and class names.

Sources: a folder of class subfolders (or a flat folder = one class), a MedMNIST-style ``.npz``,
a folder of MNIST IDX files, and the built-in ``sklearn:digits``. Everything is resized to a
square ``size`` and held whole; scarce datasets are small, so training indexes batches on the device.
"""

from __future__ import annotations

import errno
import gzip
import importlib.util
import logging
import os
import struct
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, DataError
from .images import BUILTIN_DIGITS, IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, SUPPORTED_SIZES, ImageSet

log = logging.getLogger("augmentor")


def _why_missing(path: Path) -> str:
    if not path.is_symlink():
        return "no such file or directory"
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 says "Symlink loop" this way
        return "a symbolic link that loops back on itself; point it at your images"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link that loops back on itself; point it at your images"
    return "a symbolic link to something that does not exist; point it at your images"


def is_missing(spec: Optional[str]) -> bool:
    """Whether a path source is not there (a moved or deleted folder); the built-in never is."""
    return bool(spec) and spec != BUILTIN_DIGITS and not os.path.lexists(spec)


def absolute_source(spec: Optional[str]) -> Optional[str]:
    """A path source made absolute, so that a run finds its data from any working directory; built-ins unchanged."""
    if spec is None or spec == BUILTIN_DIGITS:
        return spec
    return os.path.abspath(os.path.expanduser(spec))


def load(
    spec: Optional[str] = None,
    size: int = 32,
    channels: Optional[int] = None,
    split: str = "train",
    strict: bool = False,
) -> ImageSet:
    """Load any supported source. ``spec=None`` means the built-in ``sklearn:digits``."""
    if size not in SUPPORTED_SIZES:
        raise ConfigError(f"--size {size} is not supported; choose one of {', '.join(map(str, SUPPORTED_SIZES))}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"--channels {channels} is not supported; choose 1 (gray) or 3 (RGB)")
    spec = spec or BUILTIN_DIGITS
    if spec == BUILTIN_DIGITS:
        arrays, labels, names, paths, skipped = _load_digits()
    else:
        path = Path(spec)
        if not path.exists():
            raise DataError(f"{spec}: {_why_missing(path)}")
        if _is_npz(path):
            arrays, labels, names = _load_npz(path, split)
            paths, skipped = None, []
        elif path.is_file():
            raise DataError(f"{spec}: a single file is not a dataset; give a folder of images, an .npz or a folder of IDX files")
        elif _idx_files(path):
            arrays, labels, names = _load_idx_dir(path, split)
            paths, skipped = None, []
        else:
            arrays, labels, names, paths, skipped = _load_folder(path, strict)
    images = _to_tensor(arrays, size, channels)
    if len(labels) < 2:
        raise DataError(f"{spec}: only {len(labels)} usable image(s); need at least 2")
    return ImageSet(images, torch.as_tensor(np.asarray(labels), dtype=torch.long), list(names), spec, paths, skipped)


def _load_digits():
    """scikit-learn's 1,797 8×8 digits, read from the CSV it ships (pixels 0..16, then the label) instead of
    through `import sklearn`, which costs a second in every process: torchrun's workers and the tests start many.
    Its own loader where the file is not found (a scikit-learn that keeps it elsewhere)."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.exists():
        with gzip.open(csv, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64)
        pixels, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        pixels, target = d.images, d.target.astype(np.int64)
    arrays = [np.round(img * (255.0 / 16.0)).astype(np.uint8) for img in pixels]
    return arrays, target, [str(c) for c in range(10)], None, []


def check_split(spec: Optional[str], split: str, default: str) -> None:
    """Refuse a split other than ``default`` asked of a source without splits (a folder of images, the built-in
    digits), which would otherwise be ignored without a word."""
    path = Path(spec) if spec and spec != BUILTIN_DIGITS else None
    has_splits = path is not None and (_is_npz(path) or (path.is_dir() and _idx_files(path)))
    if split != default and not has_splits and (path is None or path.exists()):
        raise ConfigError(
            f"--split {split}: {spec or BUILTIN_DIGITS} has no splits (only an .npz file or a folder of IDX files has); "
            "leave --split out, or give the images you mean as --data"
        )


def _load_npz(path: Path, split: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            ik, lk = f"{split}_images", f"{split}_labels"
            if ik not in keys or lk not in keys:
                raise DataError(
                    f"{path}: no '{ik}'/'{lk}' arrays (it has {', '.join(sorted(keys)) or 'none'}); "
                    "expected a MedMNIST-style file with <split>_images and <split>_labels"
                )
            images, labels = z[ik], z[lk]
            names = [str(n) for n in z["class_names"]] if "class_names" in keys else None
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError for pickled object arrays, OSError ...
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if images.dtype != np.uint8:
        raise DataError(f"{path}: '{ik}' has dtype {images.dtype}; expected uint8 pixels 0..255")
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images[..., 0] if images.shape[-1] == 1 else images
    elif images.ndim != 3:
        raise DataError(f"{path}: '{ik}' has shape {images.shape}; expected (N, H, W) or (N, H, W, 1|3)")
    labels = np.asarray(labels).reshape(len(labels), -1)
    if labels.shape != (len(images), 1) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{lk}' must hold one integer label per image (got shape {labels.shape}, {labels.dtype})")
    labels = labels[:, 0].astype(np.int64)
    if labels.min(initial=0) < 0:
        raise DataError(f"{path}: '{lk}' has negative labels")
    num_classes = int(labels.max(initial=0)) + 1
    names = names or [str(i) for i in range(num_classes)]
    if len(names) < num_classes:
        raise DataError(f"{path}: 'class_names' names {len(names)} classes but labels go up to {num_classes - 1}")
    return list(images), labels, names


def _is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _idx_files(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.is_file() and "idx" in p.name and "-ubyte" in p.name)


def _read_idx(path: Path, expect_magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 8:
        raise DataError(f"{path}: too short to be an IDX file")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise DataError(f"{path}: wrong IDX magic number {magic}; expected {expect_magic}")
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: IDX header says {dims} but holds {data.size} values (truncated?)")
    return data.reshape(dims)


def _load_idx_dir(folder: Path, split: str):
    if split not in ("train", "test"):
        raise ConfigError(f"--split {split}: a folder of IDX files has the splits train and test")
    files = _idx_files(folder)
    prefix = "train" if split == "train" else "t10k"
    pick = [p for p in files if p.name.startswith(prefix)] or files
    images_f = [p for p in pick if "idx3" in p.name]
    labels_f = [p for p in pick if "idx1" in p.name]
    if len(images_f) != 1 or len(labels_f) != 1:
        raise DataError(f"{folder}: expected one *idx3-ubyte (images) and one *idx1-ubyte (labels) file for split '{split}'")
    images, labels = _read_idx(images_f[0], 2051), _read_idx(labels_f[0], 2049)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return list(images), labels.astype(np.int64), [str(i) for i in range(int(labels.max()) + 1)]


def _load_folder(folder: Path, strict: bool):
    visible = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    class_dirs = [p for p in visible if p.is_dir()]
    if class_dirs:
        classes = [(d.name, [p for p in sorted(d.rglob("*")) if p.is_file() and not p.name.startswith(".")]) for d in class_dirs]
        loose = [p for p in visible if p.is_file()]
        if loose:
            log.warning(f"{folder}: ignoring {len(loose)} file(s) beside the class folders")
    else:
        classes = [(folder.resolve().name, [p for p in visible if p.is_file()])]
    if not any(files for _, files in classes):
        raise DataError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    for name, files in classes:
        if not files:
            raise DataError(f"{folder / name}: class folder has no images")

    arrays, labels, paths, skipped = [], [], [], []
    total = sum(len(f) for _, f in classes)
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="reading images", unit="img", disable=total < 500, leave=False) as bar:
        for label, (name, files) in enumerate(classes):
            usable = 0
            for p in files:
                bar.update(1)
                try:
                    arrays.append(_read_image(p))
                except DataError as e:
                    if strict:
                        raise
                    log.warning(f"skipped {e}")
                    skipped.append((str(p), str(e)))
                    continue
                labels.append(label)
                paths.append(str(p))
                usable += 1
            if usable == 0:
                where = f"{folder / name}: class folder" if class_dirs else f"{folder}:"
                raise DataError(f"{where} has no usable images ({len(files)} file(s) skipped)")
    if skipped:
        log.warning(f"{folder}: skipped {len(skipped)} of {total} file(s); use --strict to stop on the first one")
    return arrays, np.asarray(labels, dtype=np.int64), [n for n, _ in classes], paths, skipped


def _read_image(path: Path) -> np.ndarray:
    """Decode one file to an 8-bit array: (H, W) gray or (H, W, 3) RGB. Raises DataError with the reason."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{path}: not an image file (extension '{path.suffix}')")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own, lower limit
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DataError(f"{path}: {im.width}×{im.height} is too large (over {MAX_IMAGE_PIXELS:,} pixels)")
                im.draft(im.mode, (256, 256))  # JPEG: decode at a reduced scale, much faster for big photos
                im = ImageOps.exif_transpose(im)
                return _to_8bit(im)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "not a readable image" if isinstance(e, UnidentifiedImageError) else str(e) or type(e).__name__
        raise DataError(f"{path}: {reason}") from None


def _to_8bit(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float gray
        a = np.asarray(im, dtype=np.float64)
        if a.max(initial=0) > 255:
            a = a * (255.0 / 65535.0)
        return np.clip(np.round(a), 0, 255).astype(np.uint8)
    if im.mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))  # RGB, RGBA, P, CMYK, YCbCr, ...


def _to_tensor(arrays: Sequence[np.ndarray], size: int, channels: Optional[int]) -> torch.Tensor:
    """Resize every image to size×size (center crop to square) and stack as uint8 (N, C, size, size)."""
    if channels is None:  # gray when every image is gray (an RGB file with R = G = B counts as gray)
        channels = 1 if all(a.ndim == 2 or _is_gray_rgb(a) for a in arrays) else 3
    out = np.empty((len(arrays), channels, size, size), dtype=np.uint8)
    for i, a in enumerate(arrays):
        im = Image.fromarray(a)
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (size, size):
            im = ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS)
        a = np.asarray(im)
        out[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    return torch.from_numpy(out)


def _is_gray_rgb(a: np.ndarray) -> bool:
    return a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])
