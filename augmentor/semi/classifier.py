"""A small CNN and its training loop: the yardstick for label agreement, CAS and the gain benchmarks."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool blocks (16, 32, 64, and 128 above 32 px), dropout, fc 128."""

    def __init__(self, channels: int, num_classes: int, size: int = 32):
        super().__init__()
        widths = [16, 32, 64] + ([128] if size > 32 else [])
        layers, c = [], channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(c * (size >> len(widths)) ** 2, 128),
            nn.ReLU(True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))

    def embed(self, x):
        """The 128-d penultimate features: the fixed space for FID, KID, precision and recall."""
        return self.head[:-1](self.features(x))


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    augment: Optional[Callable] = None,
    balanced: bool = False,
    batches=None,
    device="cpu",
    extra_loss: Optional[Callable] = None,
    progress: Optional[str] = None,
) -> nn.Module:
    """Adam with cosine decay, batches drawn with replacement. ``images`` float in [-1, 1].
    ``augment(x, y) -> (x, y)`` edits each batch (classical augmentation, synthetic mixing); ``balanced``
    draws classes uniformly (for imbalanced data); ``batches`` (an iterator of (x, y)) replaces the
    built-in sampling altogether; ``extra_loss(model, x) -> (logits of x, a loss term)`` runs the step's forward
    pass itself, so that more images can share it (FixMatch's unlabelled ones: batch norm then sees them together).
    ``progress``: the label of a progress bar over the steps (None: no bar)."""
    from tqdm.auto import tqdm

    dev = torch.device(device)
    # layers initialise (and any global draw happens) from torch's global generator: seeded inside fork_rng, so
    # the user's own random state is the same afterwards
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = SmallCNN(images.shape[1], num_classes, images.shape[-1]).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        model.train()
        for _ in tqdm(range(steps), desc=progress, unit="step", leave=False, disable=progress is None):
            if batches is not None:
                x, y = next(batches)
            else:
                idx = (
                    balanced_indices(labels, batch_size, g)
                    if balanced
                    else torch.randint(len(labels), (batch_size,), generator=g)
                )
                x, y = images[idx], labels[idx]
            if augment is not None:
                x, y = augment(x, y)
            if extra_loss is None:
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
            else:
                logits, extra = extra_loss(model, x.to(device))
                loss = F.cross_entropy(logits, y.to(device)) + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, K)."""
    device = next(model.parameters()).device
    out = [F.softmax(model(images[i : i + batch_size].to(device)), 1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def balanced_indices(labels: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """n indices with classes drawn uniformly, then an image of that class uniformly."""
    classes = torch.unique(labels)
    c = classes[torch.randint(len(classes), (n,), generator=g)]
    out = torch.empty(n, dtype=torch.long)
    for k in classes.tolist():
        members = torch.nonzero(labels == k).flatten()
        pick = c == k
        out[pick] = members[torch.randint(len(members), (int(pick.sum()),), generator=g)]
    return out


@torch.no_grad()
def embed(model: SmallCNN, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model.embed(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])
