"""Near-copies of every GAN of a finished `augmentor bench`, from its saved runs (for benches whose report
predates the per-generator quality table), and of the probes' GANs saved beside them.

    python benchmarks/nearcopies.py results/bench-mnist-unlabeled-10 --data ../../shared/datasets/mnist-t10k

Each setting's labelled training images are drawn again exactly as the bench drew them (same split, shot,
seed); 2,000 samples per GAN (classes in turn); a near-copy is a sample nearer to a labelled training image
than the median labelled-to-labelled nearest-neighbour distance (augmentor.metrics.memorization). The same rule
applied to held-out real test images is printed beside it: with a few labelled images per class, many real
images are "near-copies" by this rule too, so compare the two.
"""

import argparse
import json
import re
from pathlib import Path

import torch

from augmentor import Sampler, data
from augmentor.bench import carve_validation, choose_training_images, split_data
from augmentor.metrics import memorization


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--data", default=None)
    ap.add_argument("--classes", default=None, help="the bench's --classes")
    args = ap.parse_args()
    res = json.loads((args.bench / "results.json").read_text())
    split = split_data(args.data, res["size"], classes=args.classes)
    shots = {s["shot"] for s in res["settings"]}
    rows = []
    for run in sorted((args.bench / "runs").iterdir()):
        # the bench's "[KIND-]shotN-seedS", or a probe's "probe-VARIANT-seedS" (of a bench with one shot)
        m = re.fullmatch(r"(?P<kind>.*?)-?(shot(?P<shot>[^-]+)-)?seed(?P<seed>\d+)", run.name)
        if m["shot"] is None and len(shots) > 1:
            raise SystemExit(
                f"{run.name}: which of the bench's shots ({sorted(map(str, shots))}) it learnt from is not in its name"
            )
        shot = m["shot"].replace("pct", "%") if m["shot"] else str(next(iter(shots)))
        shot = int(shot) if shot.isdigit() else shot
        seed = int(m["seed"])
        train, _ = carve_validation(split.pool.subset(choose_training_images(split.pool, shot, seed)), seed)
        sampler = Sampler(run, device="cpu")
        x = sampler.sample(2000, torch.arange(2000) % sampler.num_classes, seed=seed)
        labelled, test = data.uint8_to_tanh(train.images), data.uint8_to_tanh(split.test.images[:2000])
        copies = memorization(x, labelled, test)
        near, yardstick = copies["near_copy_fraction"], copies["test_near_copy_fraction"]
        rows.append({"gan": m["kind"] or "labelled only", "shot": shot, "seed": seed, "near_copies": round(near, 4),
                     "real_test_images_by_the_same_rule": round(yardstick, 4)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    (args.bench / "nearcopies.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
