"""The bench's distribution measures against values known in closed form."""

import math

import pytest
import torch

from augmentor.gan import metrics


def gaussian(n, d, mean, std, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std + mean


def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(500, 8, 0.0, 1.0, 0)
    assert abs(metrics.fid(x, x)) < 1e-6


@pytest.mark.parametrize("shift,std_b", [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0)])
def test_fid_of_two_gaussians_matches_the_closed_form(shift, std_b):
    """N(0, I) vs N(shift·1, std_b² I) in d dims: FID = d·shift² + d·(1 − std_b)²."""
    d = 4
    a, b = gaussian(40_000, d, 0.0, 1.0, 1), gaussian(40_000, d, shift, std_b, 2)
    expected = d * shift**2 + d * (1 - std_b) ** 2
    assert metrics.fid(a, b) == pytest.approx(expected, abs=0.02 + 0.03 * expected)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    a, a2, b = gaussian(1000, 8, 0.0, 1.0, 3), gaussian(1000, 8, 0.0, 1.0, 4), gaussian(1000, 8, 1.0, 1.0, 5)
    same, shifted = metrics.kid(a, a2), metrics.kid(a, b)
    assert abs(same) < 0.01 and shifted > 0.3 and shifted > 30 * abs(same)


def test_precision_and_recall_of_identical_and_collapsed_sets():
    real = gaussian(600, 4, 0.0, 1.0, 6)
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    collapsed = real[:1].repeat(600, 1) + gaussian(600, 4, 0.0, 1e-3, 7)  # every sample near one real point
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05  # realistic, but covers almost nothing
    far = gaussian(600, 4, 10.0, 1.0, 8)
    assert metrics.precision_recall(real, far) == (0.0, 0.0)


def test_memorization_flags_copies_and_not_fresh_draws():
    train, test = gaussian(300, 3 * 16 * 16, 0.0, 0.3, 9), gaussian(300, 3 * 16 * 16, 0.0, 0.3, 10)
    as_images = lambda f: f.float().reshape(-1, 3, 16, 16)  # noqa: E731  (pixel_features pools to 16×16: unchanged)
    copies = metrics.memorization(as_images(train[:100]), as_images(train), as_images(test))
    fresh = metrics.memorization(as_images(gaussian(100, 3 * 16 * 16, 0.0, 0.3, 11)), as_images(train), as_images(test))
    assert copies["near_copy_fraction"] == 1.0 and copies["min_syn_to_train"] == 0.0
    # a fresh draw from the training distribution is nearer than the median train pair about half the time
    assert 0.3 < fresh["near_copy_fraction"] < 0.7 and math.isclose(
        fresh["syn_to_train_median"], fresh["test_to_train_median"], rel_tol=0.05
    )
    # held-out real images by the same rule are the yardstick: fresh draws match it, copies do not move it
    assert abs(fresh["near_copy_fraction"] - fresh["test_near_copy_fraction"]) < 0.15
    assert copies["test_near_copy_fraction"] == fresh["test_near_copy_fraction"] < 0.7
