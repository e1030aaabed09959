"""Can a generator learn on other classes how images of one class differ? A DAGAN probe (issue 17).

Data augmentation GAN (Antoniou et al. 2017): G takes a real image and noise and draws another image of the
same class; D judges pairs, (x, another real image of x's class) against (x, G(x, z)). Trained on digits 0-4
(all their images), it is then applied, unchanged, to the ten labelled images per class of digits 5-9: the
variation it learnt from thousands of images of other digits is what the new classes get. `fit --init`
carries a noise space and class embeddings; this carries "how a digit may change", which is what DAGAN's
gains on Omniglot came from.

    cd benchmarks && python transfer_dagan.py --data ../../shared/datasets/mnist-t10k --seeds 0 1 2 \\
        --out results/transfer-dagan

Per seed, the bench's own draw of the 5-9 labelled images (`--classes 5,6,7,8,9 --shots 10`, its validation
part carved off) and its held-out test digits; SmallCNN with the quick preset's steps, paired in this run:
B real + classical augmentation (always the preset's), DUP half of each batch re-drawn real images, DAGAN 0.25
and 0.5 (a share of each batch G's variations of random labelled images), CAS (2,000 variations alone), and
near-copies of the variations by the bench's rule.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import bench_classifier, mean_spread
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from augmentor import data
from augmentor.augmentation import RealResampler, preset
from augmentor.bench import PRESETS, carve_validation, choose_training_images, split_data
from augmentor.classifier import predict, train_classifier
from augmentor.diffaug import diff_augment
from augmentor.metrics import memorization
from augmentor.plots import grid_image

WIDTH, NZ = 32, 64
DIFFAUG = ("translation", "cutout")


class PairGenerator(nn.Module):
    """(x, z) → an image of x's class: an encoder to 4×4, noise joined there, a decoder with skips from the
    encoder at 8×8 and, with ``skip16``, at 16×16 too (U-Net-like, as DAGAN's: keeps more of x)."""

    def __init__(self, channels: int, w: int = WIDTH, nz: int = NZ, skip16: bool = False):
        super().__init__()
        self.skip16 = skip16
        self.down1 = nn.Sequential(nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2))  # 16×16
        self.down2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2))  # 8×8
        self.down3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2))  # 4×4
        self.noise = nn.Linear(nz, 4 * w * 16)
        self.up3 = nn.Sequential(nn.ConvTranspose2d(8 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU())  # 8×8
        self.up2 = nn.Sequential(nn.ConvTranspose2d(4 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU())  # 16×16
        self.up1 = nn.Sequential(nn.ConvTranspose2d(2 * w if skip16 else w, channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h1 = self.down1(x)
        h2 = self.down2(h1)
        h3 = self.down3(h2)
        n = self.noise(z).view_as(h3)
        u2 = self.up2(torch.cat([self.up3(torch.cat([h3, n], 1)), h2], 1))
        return self.up1(torch.cat([u2, h1], 1) if self.skip16 else u2)


class PairDiscriminator(nn.Module):
    """(x, x') stacked as channels → a logit: is x' another real image of x's class?"""

    def __init__(self, channels: int, w: int = WIDTH):
        super().__init__()

        def conv(a, b, k, s, p):
            return spectral_norm(nn.Conv2d(a, b, k, s, p))

        self.net = nn.Sequential(
            conv(2 * channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
            conv(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            conv(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            conv(4 * w, 1, 4, 1, 0),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, other], 1)).flatten()


def train_dagan(
    images: data.ImageSet, steps: int, seed: int, skip16: bool = False, batch: int = 64, lr: float = 2e-4
) -> PairGenerator:
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    G, D = PairGenerator(images.channels, skip16=skip16), PairDiscriminator(images.channels)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    x_all = data.uint8_to_tanh(images.images)
    members = [torch.nonzero(images.labels == c).flatten() for c in range(images.num_classes)]

    def pairs(n):
        i = torch.randint(len(x_all), (n,), generator=rng)
        partner = torch.stack(
            [members[int(c)][torch.randint(len(members[int(c)]), (1,), generator=rng)] for c in images.labels[i]]
        )
        return x_all[i], x_all[partner.flatten()]

    def judged(x, other):  # the same DiffAugment draw for both images of a pair
        both = diff_augment(torch.cat([x, other], 1), DIFFAUG, rng)
        return D(both[:, : x.shape[1]], both[:, x.shape[1] :])

    for step in range(steps):
        x, other = pairs(batch)
        fake = G(x, torch.randn(batch, NZ, generator=rng))
        loss_d = F.softplus(-judged(x, other)).mean() + F.softplus(judged(x, fake.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        loss_g = F.softplus(-judged(x, fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        if step % 500 == 0 or step == steps - 1:
            print(f"DAGAN step {step}: loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f}", flush=True)
    return G.eval()


class Variations(RealResampler):
    """G's variations of the labelled images, behind the sampling interface SyntheticMix uses."""

    def __init__(self, images: data.ImageSet, G: PairGenerator):
        super().__init__(images)
        self.G = G
        self.path = Path("<DAGAN variations>")

    @torch.no_grad()
    def sample(self, n: int, labels, seed=None, value_range: str = "tanh", numpy: bool = False):
        originals = super().sample(n, labels, seed=seed, value_range="tanh")
        z = torch.randn(n, NZ, generator=torch.Generator().manual_seed((seed or 0) + 1))
        x = data.convert_range(self.G(originals, z), "tanh", value_range)
        return x.numpy() if numpy else x


def probe(split, G: PairGenerator, seed: int, out: Path) -> dict:
    p = PRESETS["quick"]
    train, _ = carve_validation(split.pool.subset(choose_training_images(split.pool, 10, seed)), seed)
    k = train.num_classes
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    variations = Variations(train, G)

    def fit(extra=None, ratio: float = 0.5):
        return bench_classifier(x_train, y_train, k, p, seed, preset(train.channels, seed), extra, ratio)

    def accuracy(model) -> float:
        return float((predict(model, x_test).argmax(1) == y_test).mean())

    y_syn = torch.arange(2000) % k
    x_syn = variations.sample(2000, y_syn, seed=seed)
    grid_image(torch.cat([x_syn[c::k][:12] for c in range(k)]), rows=k).save(out / f"variations-seed{seed}.png")
    copies = memorization(x_syn, x_train, x_test[:2000])
    return {
        "seed": seed,
        "B": accuracy(fit()),
        "DUP 0.5": accuracy(fit(RealResampler(train, preset(train.channels, seed)))),
        "DAGAN 0.25": accuracy(fit(variations, 0.25)),
        "DAGAN 0.5": accuracy(fit(variations, 0.5)),
        "CAS": accuracy(train_classifier(x_syn, y_syn, k, steps=p.clf_steps, seed=seed)),
        "near_copies": copies["near_copy_fraction"],
        "real_test_images_by_the_same_rule": copies["test_near_copy_fraction"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../../shared/datasets/mnist-t10k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--skip16", action="store_true", help="a skip connection at 16×16 too (keeps more of the image)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    source = data.select_classes(data.load(args.data, size=32), "0,1,2,3,4")
    started = time.time()
    G = train_dagan(source, args.steps, seed=0, skip16=args.skip16)
    print(f"DAGAN trained on {len(source)} images of digits 0-4 in {time.time() - started:.0f} s", flush=True)
    split = split_data(args.data, 32, classes="5,6,7,8,9")
    rows = []
    for seed in args.seeds:
        rows.append(probe(split, G, seed, args.out))
        print(json.dumps(rows[-1]), flush=True)
    for arm in ("B", "DUP 0.5", "DAGAN 0.25", "DAGAN 0.5", "CAS", "near_copies"):
        v = [100 * r[arm] for r in rows]
        print(f"{arm}: {mean_spread(v)}")
    (args.out / "results.json").write_text(json.dumps({"steps": args.steps, "skip16": args.skip16, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
