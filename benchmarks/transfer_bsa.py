"""Adapt only what says which digit, keep what draws digits: a warm start whose generator learns nothing but
its class embeddings and batch-norm scales and shifts (`fit --init`, issue 17).

Batch statistics adaptation (Noguchi & Harada 2019) fits a pretrained generator to a few images by its
batch-norm parameters alone, so it cannot store the few images in its convolutions; what it draws stays
made of what the source learnt. The full warm start (`--init` alone) forgets the source by step 800 and
copies the ten images (near-copies 100 %, docs/results.md). A probe, not a library option: after the bench's
own warm start (monkeypatched here) every other generator weight is fixed; D learns as usual. Every other
number is the bench's.

    A=augmentor; D=../../shared/datasets
    $A fit --data $D/mnist-t10k --classes 0,1,2,3,4 --width 32 --steps 1500 --coverage 5 --out runs/digits04
    python transfer_bsa.py --init runs/digits04 --seed 0 --out results/transfer-bsa/seed0
    python nearcopies.py results/transfer-bsa/seed0 --data $D/mnist-t10k --classes 5,6,7,8,9

``--learn embed`` leaves even batch norm fixed: only the new classes' embeddings move.
"""

from __future__ import annotations

import argparse

from torch import nn

from augmentor import bench, transfer


def learning_only(G: nn.Module, batch_norm: bool) -> None:
    """Fix every weight of G except its class embedding (and, with ``batch_norm``, its batch-norm affine)."""
    G.requires_grad_(False)
    G.embed.requires_grad_(True)
    if batch_norm:
        for m in G.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.requires_grad_(True)


def install(batch_norm: bool) -> None:
    warm_start = transfer.warm_start

    def warm_start_then_fix(trainer, source):
        warm_start(trainer, source)
        learning_only(trainer.G, batch_norm)  # Adam skips parameters that get no gradient

    transfer.warm_start = warm_start_then_fix


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../../shared/datasets/mnist-t10k")
    ap.add_argument("--init", required=True, help="the source run (digits 0-4)")
    ap.add_argument("--learn", choices=("embed+bn", "embed"), default="embed+bn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    install(batch_norm=args.learn == "embed+bn")
    bench(args.data, args.out, preset="quick", shots=(10,), seeds=(args.seed,), classes="5,6,7,8,9", init=args.init)


if __name__ == "__main__":
    main()
