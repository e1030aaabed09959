"""Does keeping the source generator's sense of variety help a warm-started GAN? (`fit --init`, issue 17)

Cross-domain correspondence (Ojha et al. 2021): while the generator adapts to the few new images, a batch
of noise vectors should keep the *relations* it had under the source generator: for each sample, the softmax
over its cosine similarities to the others, per layer of G, is held to the source's by a KL term. The
source's variety (slant, width, thickness) is then meant to survive where ten images per class cannot teach
it. A probe, not a library option: the term is added to the generator's step of the bench's own `--init`
protocol (monkeypatched in here), so every other number is the bench's.

    A=augmentor; D=../../shared/datasets
    $A fit --data $D/mnist-t10k --classes 0,1,2,3,4 --width 32 --steps 1500 --coverage 5 --out runs/digits04
    python transfer_cdc.py --init runs/digits04 --weight 100 --seed 0 --out results/transfer-cdc100/seed0
    python nearcopies.py results/transfer-cdc100/seed0 --data $D/mnist-t10k --classes 5,6,7,8,9

Groups of 8 samples of one new class share a group's relations. ``--source mean``: the source is the warm
start itself (new classes embedded at the mean of the known ones, as `--init` starts them); ``--source
known``: the source run's own generator, drawing a class it knew, so z's relations within a known digit are
what the new digit keeps.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from augmentor import bench, transfer
from augmentor.models import build_generator
from augmentor.train import Trainer

GROUPS, PER_GROUP = 4, 8  # 32 extra samples a step, in 4 groups of one class each


def activations(G, z: torch.Tensor, y: torch.Tensor) -> list:
    """Every block's output of a conditional generator (after each ReLU, and the image)."""
    x = torch.cat([z, G.embed(y)], 1)[:, :, None, None]
    out = []
    for m in G.net:
        x = m(x)
        if isinstance(m, (torch.nn.ReLU, torch.nn.Tanh)):
            out.append(x.flatten(1).float())
    return out


def relations(f: torch.Tensor) -> torch.Tensor:
    """Per group, each sample's cosine similarities to the other members: (GROUPS, PER_GROUP, PER_GROUP - 1)."""
    f = F.normalize(f, dim=1).reshape(GROUPS, PER_GROUP, -1)
    sim = f @ f.transpose(1, 2)
    others = ~torch.eye(PER_GROUP, dtype=torch.bool, device=f.device)
    return sim[:, others].reshape(GROUPS, PER_GROUP, PER_GROUP - 1)


def correspondence_loss(trainer: Trainer, known_source: bool) -> torch.Tensor:
    rng = trainer.rng
    y = trainer.classes[torch.randint(len(trainer.classes), (GROUPS,), generator=rng)].repeat_interleave(PER_GROUP)
    z = trainer.noise(len(y))
    y_source = y
    if known_source:
        y_source = torch.randint(trainer.source_classes, (GROUPS,), generator=rng).repeat_interleave(PER_GROUP)
    with torch.no_grad():
        source = activations(trainer.source_G, z, y_source)
    loss = torch.zeros(())
    for s, t in zip(source, activations(trainer.G, z, y)):
        loss = loss + F.kl_div(F.log_softmax(relations(t), -1), F.softmax(relations(s), -1), reduction="batchmean")
    return loss


def install(weight: float, known_source: bool) -> None:
    """Add the term to every warm-started Trainer's generator step."""
    warm_start, g_step = transfer.warm_start, Trainer.g_step

    def warm_start_keeping_source(trainer, source):
        warm_start(trainer, source)
        if known_source:
            g = build_generator(source.model)
            g.load_state_dict(source.state["G_ema"])
            trainer.source_G, trainer.source_classes = g.requires_grad_(False), len(source.model.class_names)
        else:
            trainer.source_G = copy.deepcopy(trainer.G).requires_grad_(False)

    def g_step_with_correspondence(self, fake, y, near, real):
        if not hasattr(self, "source_G"):  # a GAN of the bench that did not start from --init
            return g_step(self, fake, y, near, real)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            (weight * correspondence_loss(self, known_source)).backward()
        ours = [p.grad for p in self.G.parameters()]
        step = self.opt_g.step

        def step_with_ours():  # g_step zeroes the gradients before its own backward: add ours just before stepping
            for p, g in zip(self.G.parameters(), ours):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
            step()

        self.opt_g.step = step_with_ours
        try:
            return g_step(self, fake, y, near, real)
        finally:
            self.opt_g.step = step

    transfer.warm_start, Trainer.g_step = warm_start_keeping_source, g_step_with_correspondence


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../../shared/datasets/mnist-t10k")
    ap.add_argument("--init", required=True, help="the source run (digits 0-4)")
    ap.add_argument("--weight", type=float, default=100.0)
    ap.add_argument("--source", choices=("mean", "known"), default="mean")
    ap.add_argument("--coverage", type=float, default=None, help="the GANs' coverage weight (default: fit's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    install(args.weight, args.source == "known")
    bench(args.data, args.out, preset="quick", shots=(10,), seeds=(args.seed,), classes="5,6,7,8,9", init=args.init,
          coverage=args.coverage)  # fmt: skip


if __name__ == "__main__":
    main()
