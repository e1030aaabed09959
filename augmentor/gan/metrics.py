"""Offline sample-quality measures (no downloaded weights): within-class diversity and memorization.

Both live in one fixed feature space, average-pooled pixels (16×16 per channel), so that numbers from
different runs, steps and models compare. A diversity ratio is the mean pairwise distance of a class's
samples divided by that of its real images: about 1 when samples vary like the data, near 0 when the
generator collapsed to one shape. The nearest-real ratio is the median distance from a sample to its
nearest real image divided by the median real-to-real nearest-neighbour distance: far below 1 means
samples are near-copies of training images. Pixel spread alone also rewards noise, so a third figure,
recall, is the fraction of real images that have a sample inside their own k-nearest-neighbour radius
(the "coverage" of Naeem et al. 2020): low for a collapsed class and for noisy samples alike.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

FEATURE_SIDE = 16
RECALL_K = 3


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] → (N, C·16·16) float features."""
    return F.adaptive_avg_pool2d(images.float(), FEATURE_SIDE).flatten(1)


def mean_pairwise_distance(f: torch.Tensor) -> float:
    return float(torch.pdist(f).mean()) if len(f) > 1 else 0.0


def nearest_distances(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """For each row of ``a``, the distance to its nearest row of ``b``."""
    d = torch.cdist(a, b)
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return d.min(dim=1).values


class ClassReference:
    """Per-class statistics of the real images, computed once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, max_per_class: int = 256):
        self.features, self.spread, self.nn_median, self.radius = {}, {}, {}, {}
        for c in range(num_classes):
            real = images[labels == c][:max_per_class]
            if len(real) < 2:
                continue
            f = pixel_features(real)
            self.features[c] = f
            self.spread[c] = mean_pairwise_distance(f)
            self.nn_median[c] = float(nearest_distances(f, f, exclude_self=True).median())
            k = min(RECALL_K, len(f) - 1)
            self.radius[c] = torch.cdist(f, f).kthvalue(k + 1, dim=1).values  # +1: the image itself is at 0

    def compare(self, samples: torch.Tensor, c: int) -> dict:
        """{"diversity", "nearest_real", "recall"} for samples of class c (None for a class without reference)."""
        if c not in self.features:
            return {"diversity": None, "nearest_real": None, "recall": None}
        f = pixel_features(samples)
        diversity = mean_pairwise_distance(f) / max(self.spread[c], 1e-8)
        nearest = float(nearest_distances(f, self.features[c]).median()) / max(self.nn_median[c], 1e-8)
        recall = float((nearest_distances(self.features[c], f) <= self.radius[c]).float().mean())
        return {"diversity": round(diversity, 4), "nearest_real": round(nearest, 4), "recall": round(recall, 4)}


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets."""
    import numpy as np
    from scipy import linalg

    a, b = real.double().numpy(), fake.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-singular covariances of tiny sets: the real part is what FID uses
        root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 10, subset_size: int = 500, seed: int = 0) -> float:
    """Kernel inception distance: unbiased MMD² with the cubic polynomial kernel, averaged over subsets."""
    g = torch.Generator().manual_seed(seed)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=g)[:m]].double()
        y = fake[torch.randperm(len(fake), generator=g)[:m]].double()
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = 1 - torch.eye(m, dtype=torch.double)
        total += float((kxx * off).sum() / (m * (m - 1)) + (kyy * off).sum() / (m * (m - 1)) - 2 * kxy.mean())
    return total / subsets


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple:
    """Kynkäänniemi et al. 2019: precision = share of fakes inside the real k-NN manifold, recall = share
    of reals inside the fake k-NN manifold."""

    def radii(f):
        return torch.cdist(f, f).kthvalue(min(k, len(f) - 1) + 1, dim=1).values

    r_real, r_fake = radii(real), radii(fake)
    d = torch.cdist(fake, real)  # (F, R)
    precision = float((d <= r_real[None, :]).any(dim=1).float().mean())
    recall = float((d.T <= r_fake[None, :]).any(dim=1).float().mean())
    return precision, recall


def memorization(synthetic: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> dict:
    """Do samples copy training images? Pixel-feature nearest-neighbour distances to the training set, for
    synthetic images and, as the yardstick, for held-out real test images."""
    f_syn, f_train, f_test = pixel_features(synthetic), pixel_features(train), pixel_features(test)
    syn_nn = nearest_distances(f_syn, f_train)
    test_nn = nearest_distances(f_test, f_train)
    train_nn_median = float(nearest_distances(f_train, f_train, exclude_self=True).median())
    return {
        "syn_to_train_median": float(syn_nn.median()),
        "test_to_train_median": float(test_nn.median()),
        "train_to_train_median": train_nn_median,
        "near_copy_fraction": float((syn_nn < train_nn_median).float().mean()),  # nearer than a typical train pair
        # the same rule on held-out real images: what "not a copy" looks like for this data (never 0: where the
        # training images are dense, real images fall near them too)
        "test_near_copy_fraction": float((test_nn < train_nn_median).float().mean()),
        "min_syn_to_train": float(syn_nn.min()),
    }
