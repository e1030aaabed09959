"""Images per second, each next to a baseline measured in the same run (absolute times drift; ratios don't).

    python benchmarks/throughput.py                       # CPU: all sections, prints a table, writes JSON
    python benchmarks/throughput.py --device cuda         # on a GPU machine

1. Training step (G + D) for 32×32 gray and 64×64 RGB at batch 64 and 128: augmentor's Trainer (its
   default recipe: DiffAugment, spectral norm, EMA, class-balanced batches on the device; with its default
   ``precision="auto"``, with fp32 and, on a GPU, compiled) vs a reference
   loop written the way the DCGAN tutorials do it (DataLoader over a TensorDataset, BCE on sigmoid
   outputs, batch-norm D, fp32, one ``.item()`` per step), same G and D widths.
2. Sampling 64×64 RGB through ``Sampler`` (onnxruntime) vs torch eager on the same generator.
3. ``SyntheticMix(ratio=0.3)`` overhead on a classifier training step vs the unwrapped loader: fresh images
   every batch, and drawn from its pool (the CPU default), whose one-time cost is printed with it.
   On a GPU also: the fp16 export through onnxruntime, and torch fp16 channels_last eager, on the same chunks.
4. ``--sections devicemix``: ``SyntheticMix(ratio=0.3, pool=None, device=...)`` over a CPU DataLoader feeding a
   ResNet-18 at 32 px, against the same loader through ``SyntheticMix(ratio=0, device=...)``: the same copying
   ahead, nothing mixed.
5. ``--sections classifier``: the bench's classifier (SmallCNN) training step in the channels-last layout its
   training uses (``SmallCNN.on``) against the default layout, at the bench's step shapes: 64 images (an arm's
   batch) and 448 (FixMatch with μ 3: the batch and two views of 192 unlabelled images), 32 px gray and 64 px RGB.
6. Scaling under torchrun (``--sections scaling``): training steps at a global batch of 64, 32×32 gray, with
   1 and 2 processes (gloo on the CPU; nccl and one GPU per process with ``--device cuda``), each row against
   one process with one thread (CPU) or one GPU; efficiency = throughput(N) / (N × throughput(1)).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from common import environment
from torch.utils.data import DataLoader, TensorDataset

from augmentor import data
from augmentor.config import ModelConfig, TrainConfig
from augmentor.errors import ConfigError
from augmentor.gan import distributed
from augmentor.gan.models import build_discriminator, build_generator
from augmentor.gan.train import Trainer
from augmentor.mix.loader import SyntheticMix
from augmentor.onnx.export import export_run
from augmentor.onnx.sampler import Sampler
from augmentor.onnx.sessions import resolve_ort_device
from augmentor.semi.classifier import SmallCNN
from augmentor.store import checkpoint

HERE = Path(__file__).resolve().parent


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, warmup: int, device) -> float:
    """Seconds per call, after warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


def interleaved(fns: dict, steps: int, warmup: int, device, rounds: int = 3) -> dict:
    """Seconds per call of each function: rounds alternate between them, so drift hits all alike; median round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn, steps, 0, device))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def forever(iterable):
    """Batches without end: a new pass (a new epoch, for a DataLoader or SyntheticMix) whenever one runs out."""
    while True:
        yield from iterable


def fake_dataset(n: int, size: int, channels: int, classes: int = 10) -> data.ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return data.ImageSet(images, torch.arange(n) % classes, [str(i) for i in range(classes)], "random")


def reference_loop(cfg: ModelConfig, ds: data.ImageSet, batch: int, device):
    """The tutorials' loop: DataLoader, BCE on sigmoid, batch-norm D, .item() every step."""
    cfg = ModelConfig(**{**cfg.to_dict(), "mode": "unconditional", "spectral_norm": False, "class_names": ("x",)})
    G, D = build_generator(cfg), build_discriminator(cfg)
    first = torch.nn.ConvTranspose2d(G.net[0].in_channels, G.net[0].out_channels, 4, bias=False)  # as the tutorials write it,
    first.load_state_dict(G.net[0].state_dict())  # not augmentor's matrix-product Project layer
    G.net[0] = first
    G, D = G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    loader = DataLoader(TensorDataset(data.uint8_to_tanh(ds.images), ds.labels), batch_size=batch, shuffle=True, drop_last=True)
    bce = torch.nn.BCELoss()
    batches = forever(loader)
    y0 = torch.zeros(batch, dtype=torch.long, device=device)

    def step():
        real = next(batches)[0].to(device)
        ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
        fake = G(torch.randn(batch, cfg.nz, device=device), y0)
        loss_d = bce(torch.sigmoid(D(real, y0)), ones) + bce(torch.sigmoid(D(fake.detach(), y0)), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(torch.sigmoid(D(fake, y0)), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_d.item(), loss_g.item()

    return step


def bench_training(device, steps: int, warmup: int, width: int) -> list:
    rows = []
    for size, channels in ((32, 1), (64, 3)):
        ds = fake_dataset(2048, size, channels)
        cfg = ModelConfig(size=size, channels=channels, class_names=tuple(ds.class_names), width=width)
        for batch in (64, 128):
            ours = {p: Trainer(cfg, TrainConfig(steps=10**9, batch_size=batch), ds, device, p) for p in ("auto", "fp32")}
            if device.type == "cuda" and (size, batch) in ((32, 64), (64, 128)):  # fit --compile on: the two target cases
                ours["compiled"] = Trainer(cfg, TrainConfig(steps=10**9, batch_size=batch), ds, device, "auto", compile="on")
            t = interleaved(
                {"reference": reference_loop(cfg, ds, batch, device), **{p: tr.train_step for p, tr in ours.items()}},
                steps,
                warmup,
                device,
            )
            for p, tr in ours.items():
                rows.append(
                    {
                        "section": "train",
                        "case": f"{size}px {channels}ch batch {batch}, {p}" + (f" ({tr.precision})" if p == "auto" else ""),
                        "ours_img_s": batch / t[p],
                        "baseline_img_s": batch / t["reference"],
                        "baseline": "tutorial loop",
                        "ratio": t["reference"] / t[p],
                    }
                )
                print(rows[-1], flush=True)
    return rows


def tiny_run(root: Path, size: int, channels: int, width: int) -> Path:
    ds = fake_dataset(64, size, channels)
    cfg = ModelConfig(size=size, channels=channels, class_names=tuple(ds.class_names), width=width)
    trainer = Trainer(cfg, TrainConfig(steps=1, batch_size=8), ds)
    trainer.fit()
    (root / "checkpoints").mkdir(parents=True)
    checkpoint.save(
        root / "checkpoints" / "ckpt_000001.pt",
        {**trainer.state_dict(), "model_config": cfg.to_dict(), "train_config": trainer.train_cfg.to_dict()},
    )
    export_run(root)
    return root


@torch.no_grad()
def eager_chunks(G, z, y, chunk):
    for i in range(0, len(z), chunk):
        G(z[i : i + chunk], y[i : i + chunk])


def bench_sampling(device, n: int, width: int, tmp: Path) -> list:
    from augmentor.onnx.export import load_models

    try:  # a GPU machine whose onnxruntime is the CPU build cannot measure this section
        resolve_ort_device(device.type)
    except ConfigError as e:
        print(f"sample section skipped: {e}", flush=True)
        return []
    run = tiny_run(tmp / "sample64", 64, 3, width)
    cfg, G, _ = load_models(checkpoint.latest_good(run / "checkpoints")[1], device)
    rows = []
    half = device.type == "cuda"  # fp16 arithmetic: a GPU's; on a CPU it is emulated and slow
    fp16_file = export_run(run, out=tmp / "fp16" / "generator.onnx", fp16=True)["generator"] if half else None
    G_half = copy.deepcopy(G).half().to(memory_format=torch.channels_last) if half else None
    for chunk in (256, 1024):
        z = torch.randn(n, cfg.nz, device=device)
        y = torch.arange(n, device=device) % 10
        cases = {"fp32": (Sampler(run, device=device.type, chunk=chunk), G, z)}
        if half:
            cases["fp16"] = (Sampler(fp16_file, device=device.type, chunk=chunk), G_half, z.half())
            for name, options in CUDA_OPTION_CANDIDATES.items():  # onnxruntime's CUDA provider options, one at a time
                cases[f"fp16, {name}"] = (Sampler(fp16_file, "cuda", chunk, options), G_half, z.half())
        for precision, (sampler, eager, noise) in cases.items():
            ort_s = timed(partial(sampler.generate, z, y), 3, 1, device)
            torch_s = timed(partial(eager_chunks, eager, noise, y, chunk), 3, 1, device)
            rows.append(
                {
                    "section": "sample",
                    "case": f"64px RGB chunk {chunk}, {precision}",
                    "ours_img_s": n / ort_s,
                    "baseline_img_s": n / torch_s,
                    "baseline": "torch eager" + (" fp16 channels_last" if precision.startswith("fp16") else ""),
                    "ratio": torch_s / ort_s,
                }
            )
            print(rows[-1], flush=True)
    return rows


# The CUDA provider options measured against its defaults (names and values: onnxruntime's CUDA provider docs).
CUDA_OPTION_CANDIDATES = {
    "exhaustive conv search": {"cudnn_conv_algo_search": "EXHAUSTIVE"},
    "max conv workspace": {"cudnn_conv_use_max_workspace": "1"},
    "prefer NHWC": {"prefer_nhwc": "1"},
}


def bench_device_mix(device, steps: int, width: int, tmp: Path) -> list:
    """SyntheticMix(ratio=0.3, fresh images, device=...) against the same copying ahead with nothing mixed, over
    a CPU DataLoader feeding a ResNet-18 (torchvision's, 32 px RGB)."""
    from torchvision.models import resnet18

    run = tiny_run(tmp / "devicemix32", 32, 3, width)
    ds = fake_dataset(4096, 32, 3)
    loader = DataLoader(TensorDataset(data.uint8_to_tanh(ds.images), ds.labels), batch_size=64, shuffle=True, drop_last=True)
    model = resnet18(num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def epoch_step(source):
        batches = forever(source)

        def step():
            x, y = next(batches)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    plain = SyntheticMix(loader, run, ratio=0.0, device=device)
    mixed = SyntheticMix(loader, run, ratio=0.3, transform=lambda x: x * 2 - 1, pool=None, device=device)
    t = interleaved({"plain": epoch_step(plain), "mixed": epoch_step(mixed)}, steps, 5, device)
    row = {
        "section": "devicemix",
        "case": f"ResNet-18 32px RGB batch 64, ratio 0.3, fresh images every batch, mixed on {device.type}",
        "ours_img_s": 64 / t["mixed"],
        "baseline_img_s": 64 / t["plain"],
        "baseline": "the same loader copied ahead, nothing mixed",
        "ratio": t["plain"] / t["mixed"],
        "overhead_pct": 100 * (t["mixed"] / t["plain"] - 1),
    }
    print(row, flush=True)
    return [row]


def gpu_summary(rows: list, device) -> dict:
    """The figures benchmarks/results/gpu.json keeps (docs/results.md, "Speed"), from this run's rows."""
    import onnxruntime

    def find(section, start):
        return [r for r in rows if r["section"] == section and r["case"].startswith(start)]

    def ratio(start):
        found = find("train", start)
        return round(found[0]["ratio"], 3) if found else None

    ort = find("sample", "64px RGB")
    fp16 = [r for r in ort if "fp16" in r["case"]]
    mix = find("devicemix", "ResNet-18")
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "train_ratio_32px_b64": ratio("32px 1ch batch 64, compiled") or ratio("32px 1ch batch 64, auto"),
        "train_ratio_64px_b128": ratio("64px 3ch batch 128, compiled") or ratio("64px 3ch batch 128, auto"),
        "train_ratio_eager_32px_b64": ratio("32px 1ch batch 64, auto"),
        "train_ratio_eager_64px_b128": ratio("64px 3ch batch 128, auto"),
        "ort_img_s_64px_rgb": round(max(r["ours_img_s"] for r in ort)) if ort else None,
        "ort_best_case": max(ort, key=lambda r: r["ours_img_s"])["case"] if ort else None,
        "torch_fp16_img_s_64px_rgb": round(max(r["baseline_img_s"] for r in fp16)) if fp16 else None,
        "mix_overhead": round(mix[0]["overhead_pct"] / 100, 4) if mix else None,
        "versions": {
            **environment(),
            "onnxruntime": onnxruntime.__version__,
            "providers": onnxruntime.get_available_providers(),
            "cuda_runtime": torch.version.cuda,
        },
    }


def bench_mix(device, steps: int, width: int, tmp: Path) -> list:
    """SyntheticMix(ratio=0.3) vs the unwrapped loader, with fresh images every batch and with its pool."""
    run = tiny_run(tmp / "mix32", 32, 1, width)
    ds = fake_dataset(4096, 32, 1)
    loader = DataLoader(TensorDataset(data.uint8_to_tanh(ds.images), ds.labels), batch_size=64, shuffle=True, drop_last=True)
    model = SmallCNN(1, 10, 32).to(device)
    opt = torch.optim.Adam(model.parameters())

    def epoch_step(source):
        batches = forever(source)

        def step():
            x, y = next(batches)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    pooled = SyntheticMix(loader, run, ratio=0.3, transform=lambda x: x * 2 - 1, pool=1000)
    t0 = time.perf_counter()
    next(iter(SyntheticMix(loader, run, ratio=1.0, pool=1000)))  # one-time cost: a batch of 64 needs every class's pool
    pool_seconds = time.perf_counter() - t0
    t = interleaved(
        {
            "plain": epoch_step(loader),
            "fresh": epoch_step(SyntheticMix(loader, run, ratio=0.3, transform=lambda x: x * 2 - 1, pool=None)),
            "pool": epoch_step(pooled),
        },
        steps,
        5,
        device,
    )
    rows = []
    for name, label in (
        ("fresh", "fresh images every batch"),
        ("pool", f"pool of 1,000 per class (made once: {pool_seconds:.1f} s)"),
    ):
        rows.append(
            {
                "section": "mix",
                "case": f"SmallCNN 32px batch 64, ratio 0.3, {label}",
                "ours_img_s": 64 / t[name],
                "baseline_img_s": 64 / t["plain"],
                "baseline": "unwrapped loader",
                "ratio": t["plain"] / t[name],
                "overhead_pct": 100 * (t[name] / t["plain"] - 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def bench_classifier(device, steps: int) -> list:
    """The bench's classifier step, channels-last (as train_classifier makes it) against the default layout."""
    rows = []
    for size, channels in ((32, 1), (64, 3)):
        for batch in (64, 448):
            x, y = torch.randn(batch, channels, size, size, device=device), torch.randint(4, (batch,), device=device)

            def step_of(model, x=x, y=y):
                opt = torch.optim.Adam(model.parameters(), 1e-3)

                def step():
                    loss = F.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                return step

            torch.manual_seed(0)
            model = SmallCNN(channels, 4, size)
            t = interleaved(
                {"ours": step_of(copy.deepcopy(model).on(device)), "plain": step_of(model.to(device))}, steps, 2, device
            )
            rows.append(
                {
                    "section": "classifier",
                    "case": f"SmallCNN {size}px {channels}ch batch {batch}, channels-last",
                    "ours_img_s": batch / t["ours"],
                    "baseline_img_s": batch / t["plain"],
                    "baseline": "default layout",
                    "ratio": t["plain"] / t["ours"],
                }
            )
            print(rows[-1], flush=True)
    return rows


def scaling_worker(device: str, steps: int, warmup: int, width: int) -> None:
    """One process of a torchrun job: time ``steps`` training steps of one run, print rank 0's figure."""
    w = distributed.world()
    dev = torch.device("cuda", w.local_rank) if device == "cuda" else torch.device("cpu")
    distributed.start(w, dev)
    ds = fake_dataset(640, 32, 1)
    cfg = ModelConfig(size=32, channels=1, class_names=tuple(ds.class_names), width=width)
    trainer = Trainer(cfg, TrainConfig(steps=10**9, batch_size=64), ds, dev, "auto", w)
    for _ in range(warmup):
        trainer.train_step()
    distributed.barrier(w)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync(dev)
    distributed.barrier(w)
    if w.main:
        print(json.dumps({"seconds_per_step": (time.perf_counter() - t0) / steps}), flush=True)
    distributed.stop(w)


def bench_scaling(device, steps: int, width: int) -> list:
    """torchrun jobs of 1 and 2 processes (CPU: 1 thread each, and 1 process with 2 threads for comparison)."""
    jobs = [(1, 1), (1, 2), (2, 1)] if device.type == "cpu" else [(1, 1), (2, 1)]
    times = {}
    for procs, threads in jobs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", __file__]
        cmd += ["--scaling-worker", "--device", device.type, "--steps", str(steps), "--width", str(width)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        line = [ln for ln in done.stdout.splitlines() if ln.startswith('{"seconds_per_step"')]
        if done.returncode or not line:
            raise SystemExit(f"torchrun with {procs} processes failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        times[procs, threads] = json.loads(line[-1])["seconds_per_step"]
    unit = "GPU" if device.type == "cuda" else "thread"
    rows = []
    for (procs, threads), t in times.items():
        base = times[1, 1]
        rows.append(
            {
                "section": "scaling",
                "case": f"32px 1ch global batch 64, {procs} process(es) × {threads} {unit}",
                "ours_img_s": 64 / t,
                "baseline_img_s": 64 / base,
                "baseline": f"1 process × 1 {unit}",
                "ratio": base / t,
                "efficiency": base / t / (procs * threads),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--sample-n", type=int, default=4096)
    ap.add_argument("--sections", nargs="+", default=["train", "sample", "mix"])
    ap.add_argument("--out", default=str(HERE / "results" / "throughput.json"))
    ap.add_argument("--mix-steps", type=int, default=50, help="timed steps of the devicemix section, per round")
    ap.add_argument("--gpu-json", help="also write the summary that benchmarks/results/gpu.json keeps, here")
    ap.add_argument("--scaling-worker", action="store_true", help=argparse.SUPPRESS)  # a process of section 6
    args = ap.parse_args()
    if args.scaling_worker:
        return scaling_worker(args.device, args.steps, 3, args.width)
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if "train" in args.sections:
            rows += bench_training(device, args.steps, 3, args.width)
        if "sample" in args.sections:
            rows += bench_sampling(device, args.sample_n, args.width, Path(tmp))
        if "mix" in args.sections:
            rows += bench_mix(device, 50, args.width, Path(tmp))
        if "devicemix" in args.sections:
            rows += bench_device_mix(device, args.mix_steps, args.width, Path(tmp))
        if "classifier" in args.sections:
            rows += bench_classifier(device, args.steps)
        if "scaling" in args.sections:
            rows += bench_scaling(device, max(args.steps, 20), args.width)
    print("\n| section | case | augmentor img/s | baseline img/s | baseline | ratio |\n| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['section']} | {r['case']} | {r['ours_img_s']:,.0f} | {r['baseline_img_s']:,.0f} | {r['baseline']} | {r['ratio']:.2f}× |"
        )
    result = {"rows": rows, "env": environment(), "device": str(device), "width": args.width}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    if args.gpu_json:
        Path(args.gpu_json).write_text(json.dumps(gpu_summary(rows, device), indent=2))


if __name__ == "__main__":
    main()
