"""Which part of augmentor's training step costs time? Seconds per step of recipe variants, interleaved with the
tutorial loop of throughput.py (32 px gray, width 64, batch 64, fp32), then a profile of the default step.

    cd benchmarks && python train_step_parts.py --device cuda          # on a GPU machine
    cd benchmarks && python train_step_parts.py --device cpu --steps 3

On a GPU a step this small is bound by kernel launches, not arithmetic: the profile's kernel launches per step
and its CUDA time against the wall time say which.
"""

import argparse

import torch
from throughput import fake_dataset, interleaved, reference_loop
from torch.profiler import ProfilerActivity, profile

from augmentor.config import ModelConfig, TrainConfig
from augmentor.gan.train import Trainer

LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    device = torch.device(args.device)
    ds = fake_dataset(2048, 32, 1)
    model = ModelConfig(size=32, channels=1, class_names=tuple(ds.class_names), width=64)
    train = TrainConfig(steps=10**9, batch_size=64)
    variants = {
        "default": (model, train),
        "no DiffAugment": (model, TrainConfig(steps=10**9, batch_size=64, diffaug="")),
        "no EMA": (model, TrainConfig(steps=10**9, batch_size=64, ema_decay=0.0)),
        "no spectral norm": (ModelConfig(**{**model.to_dict(), "spectral_norm": False}), train),
        "coverage 5": (model, TrainConfig(steps=10**9, batch_size=64, coverage=5.0)),
    }
    fns = {"tutorial loop": reference_loop(model, ds, 64, device)}
    fns.update({name: Trainer(m, t, ds, device, "fp32").train_step for name, (m, t) in variants.items()})
    seconds = interleaved(fns, args.steps, 2, device)
    for name, s in seconds.items():
        print(f"{name:18s} {1000 * s:7.2f} ms/step  {64 / s:8.0f} img/s  {seconds['tutorial loop'] / s:.2f}× the tutorial loop")

    trainer = Trainer(model, train, ds, device, "fp32")
    for _ in range(5):
        trainer.train_step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    if device.type == "cuda":
        # the GPU's own busy time per step is the table's "Self CUDA time total" over --steps
        print(f"per step: {sum(e.count for e in events if e.key in LAUNCHES) / args.steps:.0f} kernel launches")


if __name__ == "__main__":
    main()
