import gzip
import struct

import numpy as np
import pytest
import torch
from conftest import dataset, write_image

from augmentor import data
from augmentor.errors import ConfigError, DataError


def test_image_folder_classes_sizes_and_range(image_folder):
    ds = data.load(str(image_folder), size=32)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (8, 3, 32, 32)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.labels.tolist() == [0] * 4 + [1] * 4
    assert any("cat 0.png" in p for p in ds.paths)  # spaces in names are fine
    x = data.uint8_to_tanh(ds.images)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(data.tanh_to_uint8(x), ds.images)


def test_flat_folder_is_one_class(tmp_path):
    for i in range(3):
        write_image(tmp_path / "leaves" / f"{i}.png", seed=i)
    ds = data.load(str(tmp_path / "leaves"), size=64)
    assert ds.class_names == ["leaves"] and ds.images.shape == (3, 3, 64, 64)


@pytest.mark.parametrize(
    "mode,suffix",
    [
        ("L", ".png"),
        ("LA", ".png"),
        ("I;16", ".png"),
        ("P", ".png"),
        ("RGBA", ".png"),
        ("CMYK", ".jpg"),
        ("RGB", ".bmp"),
        ("RGB", ".tif"),
        ("RGB", ".webp"),
    ],
)
def test_every_image_mode_loads(tmp_path, mode, suffix):
    for i in range(2):
        write_image(tmp_path / "c" / f"{i}{suffix}", mode=mode, seed=i)
    ds = data.load(str(tmp_path / "c"), size=32)
    assert len(ds) == 2 and ds.skipped == []
    assert ds.channels == (1 if mode in ("L", "LA", "I;16") else 3)
    assert ds.images.float().std() > 10  # real pixel content, not a blank image


def test_16bit_images_keep_their_contrast(tmp_path):
    from PIL import Image

    a = np.zeros((32, 32), np.uint16)
    a[:, 16:] = 65535
    Image.fromarray(a).save(tmp_path / "x.png")
    Image.fromarray(a).save(tmp_path / "y.png")
    ds = data.load(str(tmp_path), size=32)
    assert ds.images[0, 0, :, :10].max() == 0 and ds.images[0, 0, :, 20:].min() == 255


def test_channels_override(image_folder):
    assert data.load(str(image_folder), size=32, channels=1).images.shape[1] == 1
    gray = data.load(str(image_folder), size=32, channels=1)
    assert data.load(str(image_folder), size=32, channels=3).images.shape[1] == 3 and gray.channels == 1


def test_builtin_digits():
    ds = data.load(None, size=32)
    assert ds.source == "sklearn:digits" and ds.images.shape == (1797, 1, 32, 32) and ds.num_classes == 10


def test_builtin_digits_read_from_the_csv_are_scikit_learns(monkeypatch):
    from sklearn.datasets import load_digits

    from augmentor.data import sources

    reference = load_digits()
    arrays, labels, names, _, _ = sources._load_digits()  # the CSV scikit-learn ships, read without importing it
    assert np.array_equal(np.stack(arrays), np.round(reference.images * (255 / 16)).astype(np.uint8))
    assert np.array_equal(labels, reference.target) and names == [str(c) for c in reference.target_names]
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)  # a layout we do not know
    fallback, fallback_labels, _, _, _ = sources._load_digits()
    assert np.array_equal(np.stack(fallback), np.stack(arrays)) and np.array_equal(fallback_labels, labels)


def test_npz_medmnist_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        train_labels=np.array([[0], [1]] * 3, np.uint8),
        test_images=rng.integers(0, 255, (4, 28, 28, 3), dtype=np.uint8),
        test_labels=np.array([[0], [1], [2], [2]]),
    )
    train = data.load(str(path), size=32)
    assert train.images.shape == (6, 1, 32, 32) and train.class_names == ["0", "1"]
    test = data.load(str(path), size=32, split="test")
    assert test.images.shape == (4, 3, 32, 32) and test.num_classes == 3


def test_real_npz_pneumonia():
    ds = data.load(str(dataset("pneumoniamnist") / "pneumoniamnist_scarce_normal.npz"), size=32, split="val")
    assert len(ds) == 524 and ds.channels == 1 and ds.num_classes == 2


def _idx(path, magic, dims, payload):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload)


def test_idx_folder(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), bytes(range(256)) * 9 + bytes(3 * 784 - 2304))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([0, 1, 1]))
    ds = data.load(str(tmp_path), size=32)
    assert ds.images.shape == (3, 1, 32, 32) and ds.labels.tolist() == [0, 1, 1]
    data.check_split(str(tmp_path), "test", "train")  # an IDX folder has splits
    with pytest.raises(ConfigError, match="the splits train and test"):
        data.load(str(tmp_path), size=32, split="val")


def test_real_mnist_idx():
    ds = data.load(str(dataset("mnist-t10k")), size=32)
    assert len(ds) == 10000 and ds.num_classes == 10 and ds.channels == 1


def test_subsets_are_seeded_and_stratified():
    ds = data.load(None, size=32)
    a, b = data.per_class_subset(ds, 5, seed=1), data.per_class_subset(ds, 5, seed=1)
    assert torch.equal(a, b) and ds.subset(a).class_counts() == [5] * 10
    assert not torch.equal(a, data.per_class_subset(ds, 5, seed=2))
    kept, held = data.stratified_split(ds, 0.2, seed=0)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0 and len(kept) + len(held) == len(ds)
    counts = ds.subset(held).class_counts()
    assert all(abs(c - 0.2 * n) <= 1 for c, n in zip(counts, ds.class_counts()))
    two = data.select_classes(ds, "3,7")
    assert two.class_names == ["3", "7"] and set(two.labels.tolist()) == {0, 1}


def test_fingerprint_tells_datasets_apart():
    ds = data.load(None, size=32)
    assert ds.fingerprint() == data.load(None, size=32).fingerprint()
    assert ds.fingerprint() != ds.subset(torch.arange(100)).fingerprint()


def test_unreadable_files_are_skipped_with_a_warning_or_fatal_with_strict(tmp_path, caplog):
    root = tmp_path / "d"
    for i in range(3):
        write_image(root / "ok" / f"{i}.png", seed=i)
    (root / "ok" / "empty.png").write_bytes(b"")
    good = (root / "ok" / "0.png").read_bytes()
    write_image(root / "ok" / "full.jpg", seed=5)
    (root / "ok" / "torn.jpg").write_bytes((root / "ok" / "full.jpg").read_bytes()[:200])
    (root / "ok" / "notes.txt").write_text("hello")
    ds = data.load(str(root), size=32)
    assert len(ds) == 4 and len(ds.skipped) == 3 and good
    reasons = " | ".join(r for _, r in ds.skipped)
    assert "zero-byte" in reasons and "notes.txt" in reasons and "torn.jpg" in reasons
    with pytest.raises(DataError, match="empty.png: zero-byte"):
        data.load(str(root), size=32, strict=True)


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda p: p / "missing", "no such file or directory"),
        (lambda p: p, "no images found"),
        (
            lambda p: (write_image(p / "a" / "1.png"), write_image(p / "a" / "2.png"), (p / "b").mkdir()) and p,
            "class folder has no images",
        ),
        (lambda p: write_image(p / "one" / "1.png").parent, "only 1 usable image"),
    ],
)
def test_bad_sources(tmp_path, setup, message):
    with pytest.raises(DataError, match=message):
        data.load(str(setup(tmp_path)), size=32)


def test_unsupported_size_and_channels():
    with pytest.raises(ConfigError, match="48"):
        data.load(None, size=48)
    with pytest.raises(ConfigError, match="channels"):
        data.load(None, channels=2)


@pytest.mark.parametrize(
    "arrays,message",
    [
        (dict(x=np.zeros(3)), "no 'train_images'"),
        (dict(train_images=np.zeros((2, 8, 8), np.float32), train_labels=np.zeros((2, 1), np.uint8)), "dtype float32"),
        (dict(train_images=np.zeros((2, 8), np.uint8), train_labels=np.zeros((2, 1), np.uint8)), "shape"),
        (dict(train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.zeros((3, 1), np.uint8)), "one integer label"),
    ],
)
def test_npz_of_another_layout(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        data.load(str(tmp_path / "bad.npz"))


def test_idx_wrong_magic(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 1234, (1, 2, 2), bytes(4))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (1,), bytes(1))
    with pytest.raises(DataError, match="wrong IDX magic number 1234"):
        data.load(str(tmp_path))
