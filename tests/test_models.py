import pytest
import torch
from conftest import tiny_model

from augmentor.gan import diffaug
from augmentor.gan.models import build_discriminator, build_generator, refresh_batchnorm, without_spectral_norm


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", ["conditional", "per-class", "unconditional"])
def test_generator_and_discriminator_shapes_match_for_every_size(size, channels, mode):
    names = ("a",) if mode == "unconditional" else ("a", "b", "c")
    cfg = tiny_model(names, mode, size, channels, width=4)
    G, D = build_generator(cfg), build_discriminator(cfg)
    y = torch.tensor([0, 2 % len(names), 1 % len(names), 0])
    x = G(torch.randn(4, cfg.nz), y)
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1  # tanh
    assert D(x, y).shape == (4,)
    assert D.features(x, y).shape == (4, D.feature_dim // 16, 4, 4)


def test_dcgan_init():
    G = build_generator(tiny_model(width=32))
    w = G.net[0].weight
    assert abs(w.mean().item()) < 0.005 and 0.015 < w.std().item() < 0.025


def test_conditioning_changes_the_output():
    cfg = tiny_model(("a", "b"))
    G = build_generator(cfg).eval()
    z = torch.randn(2, cfg.nz)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1])))


def test_per_class_routes_each_sample_to_its_own_member():
    cfg = tiny_model(("a", "b", "c"), "per-class")
    G = build_generator(cfg).eval()
    z = torch.randn(6, cfg.nz)
    y = torch.tensor([2, 0, 1, 1, 0, 2])
    out = G(z, y)
    for i in range(6):
        assert torch.allclose(out[i], G.members[y[i]](z[i : i + 1], y[i : i + 1])[0], atol=1e-6)


def test_spectral_norm_folding_keeps_outputs():
    cfg = tiny_model()
    D = build_discriminator(cfg)
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([0, 1, 0])
    D(x, y)  # one power iteration in training mode
    D.eval()
    assert torch.allclose(D(x, y), without_spectral_norm(D)(x, y), atol=1e-5)


def test_refresh_batchnorm_does_not_touch_the_global_rng():
    G = build_generator(tiny_model())
    torch.manual_seed(3)
    refresh_batchnorm(G, tiny_model())
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(1))


def test_diffaug_params_are_seeded_and_apply_is_deterministic():
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    ops = ("color", "translation", "cutout")
    p1 = diffaug.draw_params(ops, 5, 32, torch.Generator().manual_seed(0), "cpu")
    p2 = diffaug.draw_params(ops, 5, 32, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(diffaug.apply(x, p1), diffaug.apply(x, p2))
    assert p1["shift"].abs().max() <= 4


def test_translation_shifts_pixels_and_fills_zeros():
    x = torch.arange(16.0).reshape(1, 1, 4, 4) + 1
    out = diffaug.apply(x, {"shift": torch.tensor([[1, 0]])})  # down by one row
    assert torch.equal(out[0, 0, 1:], x[0, 0, :3]) and out[0, 0, 0].abs().sum() == 0


def test_cutout_zeroes_a_square_of_half_the_side():
    x = torch.ones(1, 1, 8, 8)
    out = diffaug.apply(x, {"cut_center": torch.tensor([[4, 4]]), "cut_size": 4})
    assert out.sum() == 64 - 16 and out[0, 0, 2:6, 2:6].sum() == 0


def test_diffaug_is_differentiable():
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    diffaug.diff_augment(x, ("color", "translation", "cutout"), torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_first_generator_layer_is_a_transposed_convolution_computed_as_a_matmul():
    from torch import nn

    from augmentor.gan.models import Project

    fast, plain = Project(16, 8, 4, bias=False), nn.ConvTranspose2d(16, 8, 4, bias=False)
    plain.load_state_dict(fast.state_dict())  # same parameters, same names
    x = torch.randn(5, 16, 1, 1, requires_grad=True)
    y_fast, y_plain = fast(x), plain(x)
    assert y_fast.shape == (5, 8, 4, 4) and torch.allclose(y_fast, y_plain, atol=1e-6)
    (g_fast,) = torch.autograd.grad(y_fast.square().sum(), x)
    (g_plain,) = torch.autograd.grad(y_plain.square().sum(), x)
    assert torch.allclose(g_fast, g_plain, atol=1e-5)
