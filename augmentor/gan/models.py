"""DCGAN generator and discriminator (Radford et al. 2016), built from a ModelConfig.

Every model takes ``(inputs, labels)``: the unconditional ones ignore the labels, the conditional ones
embed them (G: concatenated to z; D: a projection head, Miyato & Koyama 2018), and ``PerClass`` routes
each sample to an independent model of its class. So the trainer, the exporter and the sampler never
need to know the mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..config import ModelConfig


def dcgan_init(m: nn.Module) -> None:
    """N(0, 0.02) weights, as in the paper; batch-norm scales N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Project(nn.ConvTranspose2d):
    """DCGAN's first layer, a 4×4 transposed convolution of a 1×1 input, computed as the matrix product it is.

    Same weights, state dict and outputs as ``nn.ConvTranspose2d(a, b, 4)``; oneDNN's deconvolution is slower
    at this shape on the CPU (batch 64, 256 → 256 channels: 6.3 vs 3.5 ms forward + backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in, 1, 1) → (B, out, 4, 4)
        return (x.flatten(1) @ self.weight.flatten(1)).unflatten(1, (self.out_channels, 4, 4))


class Generator(nn.Module):
    """z (B, nz) [+ label] → image (B, C, size, size) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, num_classes: int = 0):
        super().__init__()
        n = cfg.n_upsamplings
        widths = [cfg.width * min(2 ** (n - 1 - i), 8) for i in range(n)]  # e.g. 32 px: 4w, 2w, w
        self.embed = nn.Embedding(num_classes, cfg.nz) if num_classes else None
        in_dim = cfg.nz * (2 if num_classes else 1)
        layers = [
            Project(in_dim, widths[0], 4, 1, 0, bias=False),  # (B, in, 1, 1) → (B, w0, 4, 4)
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]  # H, W ×2
        layers += [nn.ConvTranspose2d(widths[-1], cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]  # → (B, C, size, size)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """image (B, C, size, size) [+ label] → logit (B,). ``features`` is the (B, F, 4, 4) map before the head,
    ``layer_stats`` summarises every block (both for anomaly scores)."""

    def __init__(self, cfg: ModelConfig, num_classes: int = 0):
        super().__init__()
        n = cfg.n_upsamplings
        widths = [cfg.width * min(2**i, 8) for i in range(n)]  # e.g. 32 px: w, 2w, 4w

        def conv(a, b, k, s, p):
            c = nn.Conv2d(a, b, k, s, p, bias=False)
            dcgan_init(c)
            return spectral_norm(c) if cfg.spectral_norm else c

        layers = [conv(cfg.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]  # (B, C, s, s) → (B, w0, s/2, s/2)
        for a, b in zip(widths, widths[1:]):
            layers.append(conv(a, b, 4, 2, 1))  # H, W ÷2
            if not cfg.spectral_norm:  # spectral norm replaces batch norm as D's stabilizer
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.LeakyReLU(0.2, True))
        self.body = nn.Sequential(*layers)  # → (B, w_last, 4, 4)
        self.head = conv(widths[-1], 1, 4, 1, 0)  # → (B, 1, 1, 1)
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes else None
        if self.embed is not None:
            dcgan_init(self.embed)
        self.feature_dim = widths[-1] * 16

    def features(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def layer_stats(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean and standard deviation over space of every block's activations: (B, 2 · Σ widths)."""
        stats = []
        for m in self.body:
            x = m(x)
            if isinstance(m, nn.LeakyReLU):
                stats += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(stats, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        out = self.head(h).flatten()
        if self.embed is not None:  # projection: + <embed(y), sum-pooled features>
            out = out + (self.embed(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        return out


class PerClass(nn.Module):
    """Independent members, one per class, behind the ``(inputs, labels)`` interface."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def _route(self, fn, inputs, labels):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            # A traced graph cannot branch on data: run every member and keep each sample's own.
            outs = torch.stack([fn(m, inputs, labels) for m in self.members])  # (K, B, ...)
            onehot = nn.functional.one_hot(labels, len(self.members)).t().to(outs.dtype)  # (K, B)
            return (outs * onehot.reshape(onehot.shape + (1,) * (outs.dim() - 2))).sum(0)
        pieces, order = [], []
        for k, m in enumerate(self.members):
            idx = torch.nonzero(labels == k).flatten()
            if len(idx):
                pieces.append(fn(m, inputs[idx], labels[idx]))
                order.append(idx)
        return torch.cat(pieces)[torch.argsort(torch.cat(order))]

    def forward(self, inputs, labels):
        return self._route(lambda m, x, y: m(x, y), inputs, labels)

    def features(self, x, labels):
        return self._route(lambda m, a, y: m.features(a, y), x, labels)

    def layer_stats(self, x, labels):
        return self._route(lambda m, a, y: m.layer_stats(a, y), x, labels)

    @property
    def feature_dim(self) -> int:
        return self.members[0].feature_dim


def build_generator(cfg: ModelConfig) -> nn.Module:
    if cfg.mode == "per-class":
        return PerClass([Generator(cfg) for _ in cfg.class_names])
    return Generator(cfg, cfg.num_classes if cfg.mode == "conditional" else 0)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    if cfg.mode == "per-class":
        return PerClass([Discriminator(cfg) for _ in cfg.class_names])
    return Discriminator(cfg, cfg.num_classes if cfg.mode == "conditional" else 0)


def without_spectral_norm(model: nn.Module) -> nn.Module:
    """A copy with spectral norm folded into plain weights: same outputs in eval mode, simpler ONNX graph."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


@torch.no_grad()
def refresh_batchnorm(G: nn.Module, cfg: ModelConfig, batches: int = 8, batch_size: int = 64, seed: int = 0) -> None:
    """Re-estimate batch-norm statistics for (EMA) weights they were not collected with.

    The EMA generator's running statistics would otherwise belong to the raw generator's weights. Uses a
    private random generator so that training's random stream (and so exact resume) is untouched.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    device = next(G.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    was_training = G.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    G.train()
    for _ in range(batches):
        z = torch.randn(batch_size, cfg.nz, generator=g, device=device)
        y = torch.randint(0, max(cfg.num_classes, 1), (batch_size,), generator=g, device=device)
        G(z, y)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    G.train(was_training)
