"""The GPU paths, on a GPU (scripts/gpu_check.sh runs them there); skipped elsewhere with the reason. Needs no
albumentations, which the lent GPU machine lacks."""

import pytest
import torch
from test_export_sample import make_run
from torch.utils.data import DataLoader, TensorDataset

from augmentor import SyntheticBatch, SyntheticMix
from augmentor.onnx.export import PARITY_TOL, export_run
from augmentor.onnx.sampler import Sampler
from augmentor.onnx.sessions import ort_cuda_usable

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh runs it on one)"),
]
NO_PROVIDER = "onnxruntime has no CUDA provider here: see ../shared/tools/device/README.md"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_run(make_run(tmp_path_factory.mktemp("gpu"), names=("0", "1", "2")))["generator"]


def test_mix_on_the_gpu_copies_ahead_and_mixes_there(model):
    assert ort_cuda_usable(), NO_PROVIDER
    x = torch.rand(64, 1, 32, 32)
    loader = DataLoader(TensorDataset(x, torch.arange(64) % 3), batch_size=16)
    mixed = list(SyntheticMix(loader, model, ratio=0.25, seed=2, return_mask=True, device="cuda"))
    assert len(mixed) == 4
    for (xb, yb, mask), (real_x, real_y) in zip(mixed, loader):
        assert xb.is_cuda and yb.is_cuda and mask.is_cuda and int(mask.sum()) == 4
        assert torch.equal(xb[~mask].cpu(), real_x[~mask.cpu()]) and torch.equal(yb.cpu(), real_y)
        assert 0 <= float(xb[mask].min()) and float(xb[mask].max()) <= 1  # synthetic, in the batch's [0, 1]
    xb, yb = next(iter(loader))
    out, out_y = SyntheticBatch(model, ratio=0.5)(xb.cuda(), yb.cuda())  # after the user's own move
    assert out.is_cuda and torch.equal(out_y.cpu(), yb)


def test_the_cuda_provider_draws_what_the_cpu_provider_draws(model):
    assert ort_cuda_usable(), NO_PROVIDER
    on_gpu = Sampler(model, device="cuda").sample(300, seed=4)
    on_cpu = Sampler(model, device="cpu").sample(300, seed=4)
    assert on_gpu.is_cuda and float((on_gpu.cpu() - on_cpu).abs().max()) < 2e-3


def test_the_fp16_export_draws_what_fp32_draws_within_half_precision(model, tmp_path):
    assert ort_cuda_usable(), NO_PROVIDER
    half = export_run(model.parent, out=tmp_path / "g16.onnx", fp16=True)["generator"]
    a = Sampler(half, device="cuda").sample(300, seed=4)
    b = Sampler(model, device="cuda").sample(300, seed=4)
    assert float((a - b).abs().max()) < PARITY_TOL[True]  # export's own fp16 tolerance, images in [-1, 1]


def test_the_cuda_provider_takes_the_options_given(model):
    assert ort_cuda_usable(), NO_PROVIDER
    sampler = Sampler(model, device="cuda", cuda_options={"cudnn_conv_algo_search": "EXHAUSTIVE"})
    assert sampler.session.get_provider_options()["CUDAExecutionProvider"]["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert float((sampler.sample(64, seed=1).cpu() - Sampler(model, device="cpu").sample(64, seed=1)).abs().max()) < 2e-3
