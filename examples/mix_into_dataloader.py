"""Train a small classifier on 20 MNIST digits per class, with and without SyntheticMix.

    python examples/mix_into_dataloader.py            # fits the GAN first if runs/mnist20 is missing

The GAN and the classifier see the same 200 training images; accuracy is measured on 5,000 held-out
real test digits. Expect little or no gain over real data alone at this budget: that is what GAN
augmentation usually gives, and why `augmentor bench` exists.
"""

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from augmentor import data, run
from augmentor.classifier import SmallCNN
from augmentor.config import DataConfig, TrainConfig
from augmentor.mix import SyntheticMix

MNIST = Path(os.environ.get("AUGMENTOR_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")) / "mnist-t10k"


def train_and_test(loader, test, epochs):
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 32)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(data.uint8_to_tanh(test.images)).argmax(1)
    return (pred == test.labels).float().mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/mnist20")
    ap.add_argument("--gan-steps", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(2)

    # The same seeded split the GAN uses: 20 per class from a 5,000-image pool, the other 5,000 for testing.
    full = data.load(str(MNIST), size=32)
    pool_idx, test_idx = data.stratified_split(full, 0.5, seed=0)
    test = full.subset(test_idx)
    if not (Path(args.run) / "generator.onnx").exists():
        cfg = DataConfig(source=str(MNIST), size=32, holdout=0.5, per_class=20, seed=0)
        recipe = TrainConfig(steps=args.gan_steps, lr=5e-4, coverage=None)  # None: as the CLI, coverage on for scarce classes
        run.fit(args.run, cfg, recipe, {"width": 32}, force=True)
    train_idx = torch.tensor(__import__("json").loads((Path(args.run) / "holdout.json").read_text())["train_index"])
    assert not set(train_idx.tolist()) & set(test_idx.tolist())  # the GAN never saw a test digit
    train = full.subset(train_idx)

    x = data.uint8_to_tanh(train.images)  # the classifier's normalization: [-1, 1]
    loader = DataLoader(TensorDataset(x, train.labels), batch_size=32, shuffle=True)
    to_classifier_range = lambda images: images * 2 - 1  # noqa: E731  synthetic [0, 1] → [-1, 1]
    mixed = SyntheticMix(loader, f"{args.run}/generator.onnx", ratio=0.3, transform=to_classifier_range)

    print(f"real only:              {train_and_test(loader, test, args.epochs):.4f}")
    print(f"real + 30 % synthetic:  {train_and_test(mixed, test, args.epochs):.4f}")


if __name__ == "__main__":
    main()
