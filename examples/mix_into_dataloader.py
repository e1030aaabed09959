"""Train a small classifier on 20 MNIST digits per class, with and without SyntheticMix.

    python examples/mix_into_dataloader.py            # fits the GAN first if runs/mnist20 is missing

The GAN and the classifier see the same 200 training images; accuracy is measured on 5,000 held-out
real test digits (the half of the MNIST test set that `fit --holdout 0.5` kept out). Expect little or no
gain over real data alone at this budget: that is what GAN augmentation usually gives, and why
`augmentor bench` exists.
"""

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from augmentor import DataConfig, SyntheticMix, TrainConfig, fit, load_images

MNIST = Path(os.environ.get("AUGMENTOR_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")) / "mnist-t10k"
normalize = v2.Normalize([0.5], [0.5])  # [0, 1] → [-1, 1], for the real images and the synthetic ones alike


def small_cnn() -> nn.Module:
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(1, 32), block(32, 64), block(64, 128), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 16, 10))


def train_and_test(loader, x_test, y_test, epochs):
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    with torch.no_grad():  # in chunks: 5,000 images at once would hold ~0.7 GB of activations
        predicted = torch.cat([model(chunk).argmax(1) for chunk in x_test.split(500)])
    return (predicted == y_test).float().mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/mnist20")
    ap.add_argument("--gan-steps", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(2)

    run = Path(args.run)
    if not (run / "generator.onnx").exists():  # 20 per class from one half of the set; the other half held out
        cfg = DataConfig(source=str(MNIST), size=32, holdout=0.5, per_class=20, seed=0)
        fit(
            run, cfg, TrainConfig.short_run(args.gan_steps, coverage=None), {"width": 32}, force=True
        )  # coverage None: as the CLI
    split = json.loads((run / "holdout.json").read_text())  # which images the GAN trained on, and which it never saw
    full = load_images(str(MNIST), size=32)
    train, test = full.subset(torch.tensor(split["train_index"])), full.subset(torch.tensor(split["holdout_index"]))

    def prepare(images):  # uint8 → float [0, 1] → normalized, as a torchvision pipeline would
        return normalize(images.float() / 255)

    loader = DataLoader(TensorDataset(prepare(train.images), train.labels), batch_size=32, shuffle=True)
    mixed = SyntheticMix(loader, run, ratio=0.3, transform=normalize)  # 30 % of every batch synthetic
    x_test, y_test = prepare(test.images), test.labels
    print(f"real only:              {train_and_test(loader, x_test, y_test, args.epochs):.4f}")
    print(f"real + 30 % synthetic:  {train_and_test(mixed, x_test, y_test, args.epochs):.4f}")


if __name__ == "__main__":
    main()
