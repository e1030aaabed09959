"""A small CNN and its training loop: the yardstick for label agreement, CAS and the gain benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..store import outputs


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

    def on(self, device) -> SmallCNN:
        """Moved to ``device`` in the channels-last layout, as the GANs train: faster convolutions on the CPU in
        fp32 (oneDNN; benchmarks/throughput.py --sections classifier), and the layout GPUs prefer."""
        return self.to(device, memory_format=torch.channels_last)

    def forward(self, x):
        return self.head(self.features(x))

    def embed(self, x):
        """The 128-d penultimate features: the fixed space for FID, KID, precision and recall."""
        return self.head[:-1](self.features(x))


@dataclass(frozen=True)
class Checkpoints:
    """Where train_classifier keeps its state every ``every`` steps, so that an interrupted training continues (a
    bench's arm can take an hour on a CPU). Resumed, it draws the batches and views of the steps done again without
    training on them: the model it gives is the one an uninterrupted training gives."""

    path: Path  # in a folder of augmentor's own: the file is listed in its manifest
    every: int

    def save(self, state: dict) -> None:
        outputs.write(self.path, lambda f: torch.save(state, f), own=True)

    def load(self) -> Optional[dict]:
        return torch.load(self.path, map_location="cpu", weights_only=True) if self.path.is_file() else None

    def seconds_before(self) -> float:
        """The seconds the training ran up to its last checkpoint (0 where it has none)."""
        saved = self.load()
        return saved["seconds"] if saved else 0.0


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
    checkpoints: Optional[Checkpoints] = None,
) -> nn.Module:
    """Adam with cosine decay, batches drawn with replacement. ``images`` float in [-1, 1].
    ``augment(x, y) -> (x, y)`` edits each batch (classical augmentation, synthetic mixing); ``balanced``
    draws classes uniformly (for imbalanced data); ``batches`` (an iterator of (x, y)) replaces the
    built-in sampling altogether; ``extra_loss(model, x) -> (logits of x, a loss term)`` runs the step's forward
    pass itself, so that more images can share it (FixMatch's unlabelled ones: batch norm then sees them together).
    ``progress``: the label of a progress bar over the steps (None: no bar). ``checkpoints``: continue from the
    last one there, and keep one every ``checkpoints.every`` steps (``extra_loss`` then needs ``draw()``, which
    draws a step's images without using them, and ``state_dict``/``load_state_dict``)."""
    from tqdm.auto import tqdm

    dev = torch.device(device)
    started = time.time()
    # layers initialise (and any global draw happens) from torch's global generator: seeded inside fork_rng, so
    # the user's own random state is the same afterwards
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = SmallCNN(images.shape[1], num_classes, images.shape[-1]).on(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        model.train()

        def draw() -> tuple:
            if batches is not None:
                x, y = next(batches)
            else:
                idx = (
                    balanced_indices(labels, batch_size, g)
                    if balanced
                    else torch.randint(len(labels), (batch_size,), generator=g)
                )
                x, y = images[idx], labels[idx]
            return augment(x, y) if augment is not None else (x, y)

        done, seconds_before = 0, 0.0
        saved = checkpoints.load() if checkpoints is not None else None
        if saved is not None:
            done, seconds_before = saved["step"], saved["seconds"]
            label = f"{progress}: the {done} steps done, drawn again" if progress else None
            for _ in tqdm(range(done), desc=label, unit="step", leave=False, disable=progress is None):
                draw()
                if extra_loss is not None:
                    extra_loss.draw()
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["schedule"])
            if extra_loss is not None:
                extra_loss.load_state_dict(saved["extra_loss"])
            restore_random_state(saved["random"], dev)  # dropout's draws, as they stood at the checkpoint
        for step in tqdm(
            range(done, steps), desc=progress, unit="step", leave=False, disable=progress is None, initial=done, total=steps
        ):
            x, y = draw()
            if extra_loss is None:
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
            else:
                logits, extra = extra_loss(model, x.to(device))
                loss = F.cross_entropy(logits, y.to(device)) + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if checkpoints is not None and (step + 1) % checkpoints.every == 0 and step + 1 < steps:
                checkpoints.save(
                    {
                        "step": step + 1,
                        "seconds": seconds_before + time.time() - started,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "schedule": sched.state_dict(),
                        "extra_loss": extra_loss.state_dict() if extra_loss is not None else {},
                        "random": random_state(dev),
                    }
                )
    return model.eval()


def random_state(dev: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def restore_random_state(state: dict, dev: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], dev)


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
