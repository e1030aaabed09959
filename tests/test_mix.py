import logging

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from test_export_sample import make_run
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from augmentor.errors import ConfigError
from augmentor.mix.dataset import SyntheticDataset, SyntheticReplace
from augmentor.mix.loader import SyntheticMix
from augmentor.onnx.export import export_run


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("mix"), names=("0", "1", "2"))
    return export_run(run)["generator"]


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("mix3"), names=("0", "1"), channels=3)
    return export_run(run)["generator"]


def real_loader(n=50, batch=8, dtype=torch.float32, classes=3):
    x = torch.rand(n, 1, 32, 32) if dtype != torch.uint8 else torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8)
    return DataLoader(TensorDataset(x.to(dtype), torch.arange(n) % classes), batch_size=batch, shuffle=False)


def test_dataset_items_are_fixed_by_seed_and_index(model):
    ds = SyntheticDataset(model, 20, output="tensor", seed=5, block=8)
    assert len(ds) == 20 and ds.classes == ["0", "1", "2"]
    img, label = ds[13]
    assert img.dtype == torch.uint8 and img.shape == (1, 32, 32) and label == 13 % 3
    again = SyntheticDataset(model, 20, output="tensor", seed=5, block=8)
    assert torch.equal(again[13][0], img) and torch.equal(again[0][0], ds[0][0])  # any access order
    assert not torch.equal(SyntheticDataset(model, 20, output="tensor", seed=6, block=8)[13][0], img)
    counts = SyntheticDataset(model, class_counts={"0": 2, 2: 3})
    assert [counts[i][1] for i in range(len(counts))] == [0, 0, 2, 2, 2]
    with pytest.raises(IndexError):
        ds[20]


def test_dataset_with_two_workers_matches_the_main_process(model):
    ds = SyntheticDataset(model, 24, output="tensor", seed=1, block=4)
    main = torch.stack([ds[i][0] for i in range(24)])
    loader = DataLoader(SyntheticDataset(model, 24, output="tensor", seed=1, block=4), batch_size=6, num_workers=2)
    got = torch.cat([x for x, _ in loader])
    assert torch.equal(got, main)


def test_dataset_feeds_torchvision_v2_and_albumentations(rgb_model):
    tv = v2.Compose(
        [v2.ToImage(), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)]
    )
    img, _ = SyntheticDataset(rgb_model, 4, output="pil", transform=tv)[1]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and img.min() >= -1
    pil, _ = SyntheticDataset(rgb_model, 4, output="pil")[0]
    assert isinstance(pil, Image.Image) and pil.mode == "RGB"
    tensor_tv = v2.Compose([v2.RandomResizedCrop(24, antialias=True), v2.ToDtype(torch.float32, scale=True)])
    assert SyntheticDataset(rgb_model, 4, output="tensor", transform=tensor_tv)[0][0].shape == (3, 24, 24)
    alb = A.Compose([A.HorizontalFlip(p=1.0), A.Affine(rotate=(-10, 10), p=1.0), A.Normalize()])
    img, _ = SyntheticDataset(rgb_model, 4, output="numpy", transform=lambda im: alb(image=im)["image"])[2]
    assert img.shape == (32, 32, 3) and img.dtype == np.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_mix_replaces_exactly_round_ratio_b_and_leaves_the_rest_untouched(model, dtype):
    loader = real_loader(dtype=dtype)
    mix = SyntheticMix(loader, model, ratio=0.3, return_mask=True)
    assert len(mix) == len(loader)
    for (x, y, mask), (rx, ry) in zip(mix, loader):
        assert mask.sum() == round(0.3 * len(rx))  # 8 → 2, last batch of 2 → 1
        assert torch.equal(x[~mask], rx[~mask]) and torch.equal(y[~mask], ry[~mask])
        assert x.dtype == rx.dtype and x.shape == rx.shape
        assert torch.equal(y[mask], ry[mask])  # labels="match"
        assert not torch.equal(x[mask], rx[mask])
        if dtype == torch.float32:
            assert x[mask].min() >= 0 and x[mask].max() <= 1


def test_mix_applies_the_batch_transform_and_epochs_differ(model):
    norm = v2.Normalize([0.5], [0.5])
    mix = SyntheticMix(real_loader(), model, ratio=0.5, transform=norm, return_mask=True)
    x, _, mask = next(iter(mix))
    assert x[mask].min() < 0  # normalized to [-1, 1] like the real images would be
    first = [m for _, _, m in mix]
    second = [m for _, _, m in mix]
    assert any(not torch.equal(a, b) for a, b in zip(first, second))


def test_mix_balanced_and_weighted_labels(model):
    x = torch.rand(64, 1, 32, 32)
    y = torch.zeros(64, dtype=torch.long)  # only class 0
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    for _, yb, mask in SyntheticMix(loader, model, ratio=0.5, labels="balanced", return_mask=True):
        assert set(yb[mask].tolist()) == {1, 2}  # slots go to the missing classes
        assert abs((yb[mask] == 1).sum() - (yb[mask] == 2).sum()) <= 1
    for _, yb, mask in SyntheticMix(loader, model, ratio=0.5, labels={"2": 1.0}, return_mask=True):
        assert set(yb[mask].tolist()) == {2}


def test_mix_pool_is_made_once_and_gone_through_before_repeating(model):
    loader = DataLoader(TensorDataset(torch.rand(48, 1, 32, 32), torch.zeros(48, dtype=torch.long)), batch_size=8)

    def synthetic(mix):  # every synthetic image of one epoch, in order
        return torch.cat([x[mask] for x, _, mask in mix])

    pooled = SyntheticMix(loader, model, ratio=0.5, pool=12, return_mask=True)  # 4 per batch × 6 batches = 24 per epoch
    first, second = synthetic(pooled), synthetic(pooled)
    for epoch in (first, second):
        images, counts = torch.unique(epoch.flatten(1), dim=0, return_counts=True)
        assert len(images) == 12 and counts.tolist() == [2] * 12  # each pooled image twice, none before the pool is used up
        assert torch.equal(torch.unique(first[:12].flatten(1), dim=0), images)  # the first pass alone shows the whole pool
    assert torch.equal(torch.unique(first.flatten(1), dim=0), torch.unique(second.flatten(1), dim=0))  # same pool next epoch
    assert not torch.equal(first, second)  # in another order
    fresh = synthetic(SyntheticMix(loader, model, ratio=0.5, pool=None, return_mask=True))
    assert len(torch.unique(fresh.flatten(1), dim=0)) == 24


def test_auto_pool_of_a_short_loader_holds_what_one_pass_draws(model):
    """On the CPU, "auto" pools 1,000 images per class, but never more than a pass over the loader can use: here
    6 batches × 4 synthetic slots = 24 of class 0. Generating 1,000 would be the short loader's main cost."""
    loader = DataLoader(TensorDataset(torch.rand(48, 1, 32, 32), torch.zeros(48, dtype=torch.long)), batch_size=8)
    mix = SyntheticMix(loader, model, ratio=0.5, return_mask=True)
    first, second = (torch.cat([x[mask] for x, _, mask in mix]) for _ in range(2))
    assert len(torch.unique(first.flatten(1), dim=0)) == 24  # no repeat within the pass
    assert torch.equal(torch.unique(first.flatten(1), dim=0), torch.unique(second.flatten(1), dim=0))  # the whole pool
    endless = SyntheticMix((b for b in loader), model, ratio=0.5, return_mask=True)  # no length: the full pool
    assert len(torch.unique(torch.cat([x[mask] for x, _, mask in endless]).flatten(1), dim=0)) == 24
    assert len(endless._pools[(torch.device("cpu"), 0)]) == 1000
    # a pool sized at a short batch (1 slot) serves the full batches after it (4 slots) from the same images
    sizes = [2, 8, 8]
    batches = [(torch.rand(b, 1, 32, 32), torch.zeros(b, dtype=torch.long)) for b in sizes]
    drawn = torch.cat([x[mask] for x, _, mask in SyntheticMix(batches, model, ratio=0.5, return_mask=True)])
    assert len(drawn) == 9 and len(torch.unique(drawn.flatten(1), dim=0)) == 3  # a pool of 3 batches × 1 slot


def test_mix_refuses_a_model_of_another_shape(rgb_model, model):
    with pytest.raises(ConfigError, match=r"shape \(3, 32, 32\).*\(1, 32, 32\)"):
        next(iter(SyntheticMix(real_loader(), rgb_model)))
    with pytest.raises(ConfigError, match="ratio"):
        SyntheticMix(real_loader(), model, ratio=1.5)
    with pytest.raises(ConfigError, match="pool=0"):
        SyntheticMix(real_loader(), model, pool=0)
    with pytest.raises(ConfigError, match="label 4"):
        next(iter(SyntheticMix(real_loader(classes=5), model)))


def test_replace_transform_keeps_type_and_label(model):
    torch.manual_seed(0)
    always, never = SyntheticReplace(model, p=1.0), SyntheticReplace(model, p=0.0)
    pil = Image.new("L", (32, 32))
    out, label = always(pil, 2)
    assert isinstance(out, Image.Image) and label == 2 and np.asarray(out).std() > 0
    assert never(pil, 2)[0] is pil
    t = torch.zeros(1, 32, 32, dtype=torch.uint8)
    assert always(t, 1)[0].dtype == torch.uint8 and always(t, 1)[0].shape == (1, 32, 32)
    arr = np.zeros((32, 32), np.uint8)
    assert always(arr, 0)[0].shape == (32, 32)
    hits = sum(SyntheticReplace(model, p=0.3).make_params()["replace"] for _ in range(2000))
    assert 500 < hits < 700


class DictBatches(torch.utils.data.Dataset):
    """The Hugging Face datasets style: each item (and so each batch) is a dict."""

    def __init__(self, n=24):
        self.x, self.y = torch.rand(n, 1, 32, 32), torch.arange(n) % 3

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i], "id": i}


def test_mix_over_dict_batches(model):
    loader = DataLoader(DictBatches(), batch_size=8)
    with pytest.raises(ConfigError, match="image_key=..., label_key=..."):
        next(iter(SyntheticMix(loader, model, ratio=0.5)))
    mixed = SyntheticMix(loader, model, ratio=0.5, image_key="pixel_values", label_key="labels", return_mask=True)
    plain = list(loader)
    for batch, orig in zip(mixed, plain):
        assert set(batch) == {"pixel_values", "labels", "id", "is_synthetic"}
        mask = batch["is_synthetic"]
        assert mask.sum() == 4 and torch.equal(batch["id"], orig["id"])  # other entries untouched
        assert torch.equal(batch["pixel_values"][~mask], orig["pixel_values"][~mask])
        assert not torch.equal(batch["pixel_values"][mask], orig["pixel_values"][mask])
        assert torch.equal(batch["labels"], orig["labels"])  # labels="match"


def test_mix_refuses_batches_it_cannot_read(model):
    loader = DataLoader(TensorDataset(torch.rand(8, 1, 32, 32)), batch_size=4)  # images only, no labels
    with pytest.raises(ConfigError, match="pairs or dicts"):
        next(iter(SyntheticMix(loader, model)))


def test_gpu_without_onnxruntime_cuda_says_so_once(model, monkeypatch, caplog):
    import onnxruntime

    from augmentor.onnx import sessions
    from augmentor.onnx.sampler import Sampler

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(sessions, "_warned_no_cuda_ep", False)
    # the CLI tests give the logger a handler of their own and stop propagation: log through caplog's alone
    monkeypatch.setattr(logging.getLogger("augmentor"), "handlers", [])
    monkeypatch.setattr(logging.getLogger("augmentor"), "propagate", True)
    with caplog.at_level("WARNING", logger="augmentor"):
        assert Sampler(model).device.type == "cpu"
        Sampler(model)
    warnings = [r.message for r in caplog.records if "no CUDA provider" in r.message]
    assert len(warnings) == 1 and "pip install onnxruntime-gpu" in warnings[0]


def test_mix_on_the_cpu_device_is_the_mix_without_one(model):
    """device="cpu" copies nothing and decides the same replacements: the same batches, bit for bit."""
    loader = real_loader()
    plain = list(SyntheticMix(loader, model, ratio=0.4, seed=3, return_mask=True))
    on_cpu = list(SyntheticMix(loader, model, ratio=0.4, seed=3, return_mask=True, device="cpu"))
    assert len(plain) == len(on_cpu) == 7
    for (x, y, m), (x2, y2, m2) in zip(plain, on_cpu):
        assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(m, m2) and m.sum() == round(0.4 * len(x))


def test_mix_refuses_a_device_it_cannot_use(model):
    with pytest.raises(ConfigError, match="mixes on 'cpu' or 'cuda"):
        SyntheticMix(real_loader(), model, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no GPU here"):
            SyntheticMix(real_loader(), model, device="cuda")


def test_batch_transform_replaces_like_the_mix_after_the_users_own_move(model):
    from augmentor import SyntheticBatch

    loader = real_loader(n=48, batch=8)
    mix = SyntheticBatch(model, ratio=0.25, seed=1, return_mask=True, transform=lambda t: t * 0 - 7)
    masks = []
    for x, y in loader:
        labels = y.clone()
        out, out_y, mask = mix(x, y)
        assert mask.sum() == 2 and torch.equal(out_y, labels)  # two slots, each keeps its label
        assert torch.equal(out[~mask], x[~mask]) and (out[mask] == -7).all()  # the transform ran on the synthetic ones
        assert torch.equal(y, labels)  # the caller's tensors are not changed in place
        masks.append(mask)
    again = SyntheticBatch(model, ratio=0.25, seed=1, return_mask=True)  # the same seed: the same slots
    assert all(torch.equal(again(x, y)[2], m) for (x, y), m in zip(loader, masks))
    assert not all(torch.equal(mix(x, y)[2], m) for (x, y), m in zip(loader, masks))  # the next pass draws anew
