"""Can the way digits of one class differ be learnt on other classes and carried over? A probe (issue 17).

The GAN routes to related data (warm start, FreezeD, joint training, cross-domain correspondence, DAGAN) all
failed to add information to digits 5-9; DAGAN's generator, free to draw anything, drew 0-4. This one can
only bend the image it is given: a smooth displacement field (a coarse grid of control points, upsampled).
The fields come from registration: for pairs of images of one class, the field that warps the first onto the
second (least squares plus a small penalty on the field's size). A bank of such fields, learnt on digits 0-4
(all their images), then bends the ten labelled images per class of digits 5-9 (Hauberg et al. 2016 learnt
class-specific deformation distributions on MNIST; here they are carried to classes they never saw).

    cd benchmarks && python transfer_warps.py --data ../../shared/datasets/mnist-t10k --seeds 0 1 2 \\
        --out results/transfer-warps

Per seed, the bench's own draw of the 5-9 labelled images (`--classes 5,6,7,8,9 --shots 10`, its validation
part carved off) and held-out test digits; SmallCNN with the quick preset's steps, paired in this run. Arms:
B real + classical augmentation; DUP half of each batch re-drawn (augmented) labelled images; WARP 0-4 the
same half bent by a field from the 0-4 bank; the sceptic's controls: WARP own (fields registered among the
labelled 5-9 images themselves: no related data) and WARP random (each control point drawn independently
with the 0-4 bank's own spread: the amplitude without the learnt structure).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import bench_classifier, mean_spread

from augmentor import data
from augmentor.augmentation import RealResampler, preset
from augmentor.bench import PRESETS, carve_validation, choose_training_images, split_data
from augmentor.classifier import predict
from augmentor.plots import grid_image

GRID = 6  # control points a side: smooth enough to keep a digit's identity, fine enough for a stroke's bend
SMOOTH = 3.0  # penalty on the field's mean square; picked by eye (0.05-3): weaker ones bend 5-9 out of shape


def warp(x: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """Bend images ``x`` ([-1, 1], N×C×H×W) by ``fields`` (N×2×GRID×GRID, displacements in [-1, 1] units)."""
    n, _, h, w = x.shape
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), (n, 1, h, w), align_corners=False)
    dense = F.interpolate(fields, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    bent = F.grid_sample((x + 1) / 2, identity + dense, padding_mode="zeros", align_corners=False)
    return bent * 2 - 1


def register(moving: torch.Tensor, target: torch.Tensor, steps: int = 150, chunk: int = 512) -> tuple:
    """The field that bends each ``moving`` image onto its ``target`` (fitted by Adam; least squares on [0, 1]
    pixels plus SMOOTH × the field's mean square). Returns (fields, share of the pixel error it removed)."""
    fields, removed = [], []
    for i in range(0, len(moving), chunk):
        m, t = moving[i : i + chunk], target[i : i + chunk]
        field = torch.zeros(len(m), 2, GRID, GRID, requires_grad=True)
        opt = torch.optim.Adam([field], lr=0.02)
        for _ in range(steps):
            loss = ((warp(m, field) - t) / 2).pow(2).mean() + SMOOTH * field.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            before = ((m - t) / 2).pow(2).flatten(1).mean(1)
            after = ((warp(m, field) - t) / 2).pow(2).flatten(1).mean(1)
        fields.append(field.detach())
        removed.append(1 - after / before.clamp_min(1e-8))
    return torch.cat(fields), torch.cat(removed)


def same_class_pairs(images: data.ImageSet, n: int, seed: int) -> tuple:
    """``n`` random (image, another image of its class) pairs, as [-1, 1] tensors."""
    g = torch.Generator().manual_seed(seed)
    x = data.uint8_to_tanh(images.images)
    members = [torch.nonzero(images.labels == c).flatten() for c in range(images.num_classes)]
    first = torch.randint(len(x), (n,), generator=g)
    second = torch.stack([members[int(c)][torch.randint(len(members[int(c)]), (1,), generator=g)] for c in images.labels[first]])
    keep = first != second.flatten()
    return x[first[keep]], x[second.flatten()[keep]]


class Bent(RealResampler):
    """The duplicate-real control's images (re-drawn, augmented), each bent by a random field of ``bank``."""

    def __init__(self, images: data.ImageSet, aug, bank: torch.Tensor, name: str):
        super().__init__(images, aug)
        self.bank = bank
        self.path = Path(f"<labelled images bent by {name} fields>")

    @torch.no_grad()
    def sample(self, n: int, labels, seed=None, value_range: str = "tanh", numpy: bool = False):
        x = super().sample(n, labels, seed=seed, value_range="tanh")
        pick = torch.randint(len(self.bank), (n,), generator=torch.Generator().manual_seed((seed or 0) + 1))
        x = data.convert_range(warp(x, self.bank[pick]), "tanh", value_range)
        return x.numpy() if numpy else x


def probe(split, source_bank: torch.Tensor, seed: int, out: Path) -> dict:
    p = PRESETS["quick"]
    train, _ = carve_validation(split.pool.subset(choose_training_images(split.pool, 10, seed)), seed)
    k = train.num_classes
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    # fields among the labelled images themselves: every ordered pair of one class (no related data)
    pairs = [(i, j) for i in range(len(train)) for j in range(len(train)) if i != j and train.labels[i] == train.labels[j]]
    own_bank, own_removed = register(x_train[[i for i, _ in pairs]], x_train[[j for _, j in pairs]])
    spread = source_bank.std(0, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    random_bank = torch.randn(len(source_bank), *source_bank.shape[1:], generator=g) * spread
    aug = preset(train.channels, seed)
    sources = {
        "DUP 0.5": RealResampler(train, aug),
        "WARP 0-4 0.5": Bent(train, aug, source_bank, "digits 0-4"),
        "WARP own 0.5": Bent(train, aug, own_bank, "the labelled images' own"),
        "WARP random 0.5": Bent(train, aug, random_bank, "random"),
    }
    labels = torch.arange(12 * k) % k
    grid_image(
        torch.cat([s.sample(len(labels), labels, seed=seed)[labels.argsort()] for s in sources.values()]), rows=4 * k
    ).save(out / f"bent-seed{seed}.png")  # per arm, one row per class

    def accuracy(extra=None) -> float:
        model = bench_classifier(x_train, y_train, k, p, seed, preset(train.channels, seed), extra, 0.5)
        return float((predict(model, x_test).argmax(1) == y_test).mean())

    row = {"seed": seed, "B": accuracy(), "own_pairs": len(pairs), "own_error_removed": float(own_removed.mean())}
    row.update({name: accuracy(src) for name, src in sources.items()})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../../shared/datasets/mnist-t10k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pairs", type=int, default=4000, help="0-4 image pairs registered into the bank")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    source = data.select_classes(data.load(args.data, size=32), "0,1,2,3,4")
    started = time.time()
    bank, removed = register(*same_class_pairs(source, args.pairs, seed=0))
    print(
        f"{len(bank)} fields registered on digits 0-4 in {time.time() - started:.0f} s; they remove "
        f"{100 * removed.mean():.1f} % of the pixel error between pairs (median {100 * removed.median():.1f} %); "
        f"mean |displacement| {bank.abs().mean():.3f}",
        flush=True,
    )
    split = split_data(args.data, 32, classes="5,6,7,8,9")
    rows = []
    for seed in args.seeds:
        rows.append(probe(split, bank, seed, args.out))
        print(json.dumps(rows[-1]), flush=True)
    for arm in ("B", "DUP 0.5", "WARP 0-4 0.5", "WARP own 0.5", "WARP random 0.5"):
        v = [100 * r[arm] for r in rows]
        print(f"{arm}: {mean_spread(v)}")
    result = {"pairs": len(bank), "grid": GRID, "smooth": SMOOTH, "error_removed": float(removed.mean()), "rows": rows}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
