"""An encoder into a trained generator's noise space, for anomaly scores by reconstruction.

f-AnoGAN's "izi_f" training (Schlegl et al. 2019): with G and D frozen, E learns ``x ≈ G(E(x))`` on normal
images, the loss being the pixel residual plus κ times the residual of D's features. A G trained on normal
images cannot make what is not normal, so the residual of an image it cannot reproduce stays large.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..gan.models import dcgan_init

KAPPA = 1.0  # weight of D's feature residual against the pixel residual, both mean squared (as in f-AnoGAN)


class Encoder(nn.Module):
    """image (B, C, size, size) [+ label, ignored] → z (B, nz): D's convolution stack, then a linear layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n = cfg.n_upsamplings
        widths = [cfg.width * min(2**i, 8) for i in range(n)]
        layers = [nn.Conv2d(cfg.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]  # ÷2
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]  # ÷2
        layers += [nn.Flatten(), nn.Linear(widths[-1] * 16, cfg.nz)]  # (B, w_last, 4, 4) → (B, nz)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def residuals(G, D, E, x: torch.Tensor, labels: torch.Tensor) -> tuple:
    """(pixel residual map (B, H, W), D-feature residual (B,), reconstruction) of x through G(E(x))."""
    recon = G(E(x, labels), labels)
    pixel_map = (x - recon).pow(2).mean(1)
    feature = (D.features(x, labels) - D.features(recon, labels)).pow(2).flatten(1).mean(1)
    return pixel_map, feature, recon


def train_encoder(
    G, D, cfg: ModelConfig, images: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int = 64, seed: int = 0, bar=None
) -> Encoder:
    """izi_f: fit E on ``images`` (tanh range) with G and D frozen (both in eval mode: BN statistics fixed)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        E = Encoder(cfg)
    for m in (G, D):
        m.eval().requires_grad_(False)
    opt = torch.optim.Adam(E.parameters(), lr=1e-3, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    E.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=gen)
        pixel_map, feature, _ = residuals(G, D, E, images[idx], labels[idx])
        loss = pixel_map.mean() + KAPPA * feature.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return E.eval()
