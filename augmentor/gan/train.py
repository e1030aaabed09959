"""The Trainer does the math of one GAN step; callbacks (callbacks.py) do all the I/O.

The whole training set lives on the device as uint8; each step draws a class-balanced batch by index.
Every random draw (batches, noise, DiffAugment) comes from one private ``torch.Generator`` whose state
is checkpointed, so a resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..config import PRECISIONS, ModelConfig, TrainConfig
from ..data.images import ImageSet, uint8_to_tanh
from ..errors import ConfigError
from .diffaug import diff_augment
from .distributed import World, gather, rank_seed
from .losses import coverage, d_loss, g_loss
from .models import build_discriminator, build_generator, refresh_batchnorm

COARSE = 4  # coverage_space "coarse": the block side, in pixels, the images are averaged over


@dataclass
class StepReport:
    """What callbacks produce after a step, merged over all of them: the trainer hands the merged report to
    every callback's ``on_step_reported``, so no callback depends on another running before it."""

    log: dict = field(default_factory=dict)  # fields to add to this step's log row (e.g. diversity)
    progress: dict = field(default_factory=dict)  # short figures for the progress bar
    nonfinite: bool = False  # a NaN/inf loss was seen: no checkpoint of these weights; roll back

    def merge(self, other: Optional[StepReport]) -> None:
        if other is not None:
            self.log.update(other.log)
            self.progress.update(other.progress)
            self.nonfinite |= other.nonfinite


class Callback:
    """Hooks the trainer calls. After each step, first ``on_step_end`` on every callback (measure, and
    return a StepReport of what was found), then ``on_step_reported`` on every callback with the merged
    report (act: write the log row, save, roll back). ``logs`` holds detached loss tensors: reading them
    (``.item()``) syncs the device, so callbacks do it only on the steps they act on."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, logs: dict) -> Optional[StepReport]: ...

    def on_step_reported(self, trainer: Trainer, logs: dict, report: StepReport) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto → bf16 autocast on CPUs with native bf16 dot products (AVX512-BF16 or AMX), where it is faster; fp32
    elsewhere: emulated bf16 is slower, and so was this small model under autocast on a GPU."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    native = [getattr(torch.cpu, f, lambda: False) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return "bf16" if device.type == "cpu" and any(f() for f in native) else "fp32"


class Trainer:
    def __init__(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        data: ImageSet,
        device="cpu",
        precision: str = "auto",
        world: World = World(),
        compile: str = "off",
    ):
        self.model_cfg, self.train_cfg, self.world = model_cfg, train_cfg, world
        self.compiled = compile == "on"  # G and D through torch.compile, wrapped at the first step (after DDP)
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # of the training math; weights, EMA and samples stay fp32
        # Layers initialise from torch's global generator: seed it inside fork_rng, so the user's own global
        # random state is the same after building a Trainer as before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_cfg.seed)
            G, D = build_generator(model_cfg), build_discriminator(model_cfg)
        # channels_last: faster on the CPU in fp32 (oneDNN), and the layout GPUs prefer
        self.G = G.to(self.device, memory_format=torch.channels_last)
        self.D = D.to(self.device, memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        # fused: one kernel for all parameters (CPU and CUDA since torch 2.4)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=train_cfg.lr, betas=train_cfg.betas, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=train_cfg.lr, betas=train_cfg.betas, fused=True)
        # Under torchrun the passes that learn go through DistributedDataParallel (wrapped at the first step, after
        # a warm start or --freeze-d has set the weights and what learns); the rest uses the plain modules. A
        # per-class bank is sharded instead: each rank trains the members of its classes, with no gradient traffic.
        self.sharded = world.distributed and model_cfg.mode == "per-class"
        self.G_learn, self.D_learn = (None, None) if world.distributed and not self.sharded else (self.G, self.D)
        self.D_judge = self.D  # D as G's step sees it (its weights fixed there)
        self._wrapped = False
        self.batch_size = train_cfg.batch_size // world.size  # this rank's share of each step's batch
        self.rng = torch.Generator(device=self.device).manual_seed(rank_seed(train_cfg.seed, world.rank))
        self.step = 0
        self.stop_requested = False  # set (e.g. on Ctrl-C) to end fit() after the current step
        self._ranks_stop = False  # under torchrun: whether any rank's request reached the last step's exchange
        self._sampling = (None, None)  # (step, generator made for sampling at that step)

        # Sort by class once; a class-balanced batch is then "pick a class, pick an offset".
        order = torch.argsort(data.labels, stable=True)
        self.images = data.images[order].to(self.device).contiguous(memory_format=torch.channels_last)
        self.labels = data.labels[order].to(self.device)
        counts = torch.bincount(self.labels, minlength=model_cfg.num_classes)
        self.classes = torch.nonzero(counts).flatten()  # classes that have images
        if self.sharded:  # this rank's members: classes k with k % world == rank
            self.classes = self.classes[self.classes % world.size == world.rank]
        self.counts = counts
        self.offsets = torch.cumsum(counts, 0) - counts
        self.diffaug_ops = train_cfg.diffaug_ops

    # ------------------------------------------------------------------ draws

    def real_batch(self, n: int):
        """n real images in [-1, 1] with labels, classes drawn uniformly (so scarce classes are seen as often)."""
        c = self.classes[torch.randint(len(self.classes), (n,), generator=self.rng, device=self.device)]
        offset = (torch.rand(n, generator=self.rng, device=self.device) * self.counts[c]).long()
        idx = self.offsets[c] + offset
        return uint8_to_tanh(self.images[idx]), self.labels[idx]

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.model_cfg.nz, generator=self.rng, device=self.device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.diffaug_ops, self.rng)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    # ------------------------------------------------------------------ steps

    def d_step(self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            if self.model_cfg.spectral_norm:  # no batch norm in D: one pass over real + fake is the same math, half the calls
                logits = self.D_learn(self.augment(torch.cat([real, fake])), torch.cat([y, y])).float()
                real_logits, fake_logits = logits[: len(y)], logits[len(y) :]
            else:  # batch norm must not mix real and fake statistics
                real_logits, fake_logits = self.D(self.augment(real), y).float(), self.D(self.augment(fake), y).float()
        loss = d_loss(real_logits, fake_logits, self.train_cfg.loss)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.detach()

    def g_step(self, fake: torch.Tensor, y: torch.Tensor, near: torch.Tensor, real: torch.Tensor) -> tuple:
        """``near``: the samples nearest to ``real`` (the coverage term's pairs), or None."""
        cfg = self.train_cfg
        learning = [p for p in self.D.parameters() if p.requires_grad]  # not the blocks --freeze-d keeps fixed
        for p in learning:  # G's step needs gradients through D, not for D's weights
            p.requires_grad_(False)
        with self.autocast():
            loss = g_loss(self.D_judge(self.augment(fake), y).float(), cfg.loss)
            cov = torch.zeros((), device=self.device)
            if near is not None:
                target, y_near = real[: len(near)], y[: len(near)]
                near, target = self.coverage_view(near, y_near), self.coverage_view(target, y_near)
                cov = coverage(target.flatten(1).float(), near.flatten(1).float())
                loss = loss + cfg.coverage * cov
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        for p in learning:
            p.requires_grad_(True)
        return loss.detach(), cov.detach()

    def coverage_view(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the coverage term compares: the pixels, D's features, or the pixels averaged over COARSE × COARSE
        blocks (the term then pulls samples towards a real image's layout and leaves its fine texture, which the
        generator cannot copy and an L2 pull would average away, to the adversarial loss)."""
        space = self.train_cfg.coverage_space
        if space == "feature":
            return self.D.features(x, y)
        if space == "coarse":
            return F.avg_pool2d(x, COARSE)
        return x

    @torch.no_grad()
    def nearest_noise(self, real: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """For each real image, draw K noise vectors of its class and keep the one whose sample lands nearest.

        Choosing needs no gradients, so the K candidates cost one forward pass; only the chosen sample is
        generated again with gradients (implicit maximum likelihood, Li & Malik 2018)."""
        k = self.train_cfg.coverage_k
        yk = y.repeat_interleave(k)
        zk = self.noise(len(yk))
        candidates, target = self.coverage_view(self.G(zk, yk), yk), self.coverage_view(real, y)
        dist = (candidates.reshape(len(y), k, -1).float() - target.reshape(len(y), 1, -1).float()).pow(2).mean(dim=2)  # (M, K)
        return zk.reshape(len(y), k, -1)[torch.arange(len(y), device=zk.device), dist.argmin(dim=1)]

    @torch.no_grad()
    def share_members(self) -> None:
        """Sharded per-class bank: every member's weights, EMA, buffers and Adam state, from the rank that trains
        it to all, so each rank holds the whole bank (before samples, checkpoints and the end)."""
        if not self.sharded:
            return
        for k in range(self.model_cfg.num_classes):
            tensors = []
            for net, opt in ((self.G, self.opt_g), (self.D, self.opt_d)):
                for p in net.members[k].parameters():
                    state = opt.state[p]
                    if not state:  # never stepped here: Adam's state, zero, to receive the owner's
                        state.update(
                            step=torch.zeros((), device=p.device), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p)
                        )
                    tensors += [p.data, state["step"], state["exp_avg"], state["exp_avg_sq"]]
                tensors += list(net.members[k].buffers())
            tensors += [*self.G_ema.members[k].parameters(), *self.G_ema.members[k].buffers()]
            flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
            dist.broadcast(flat, src=k % self.world.size)
            offset = 0
            for t in tensors:
                t.copy_(flat[offset : offset + t.numel()].view(t.shape))
                offset += t.numel()

    @torch.no_grad()
    def update_ema(self) -> None:
        # Warm-up: a short run must not sample from weights that are mostly their initialisation.
        decay = min(self.train_cfg.ema_decay, (1 + self.step) / (10 + self.step))
        ema, cur = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema, cur, 1.0 - decay)

    def _wrap(self) -> None:
        """At the first step, after a warm start or --freeze-d has set the weights and what learns: under torchrun
        the passes that learn go through DistributedDataParallel; with ``compile`` every pass through torch.compile
        (on a GPU in "reduce-overhead" mode: each compiled pass replayed as a CUDA graph)."""
        if self.G_learn is None:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            self.G_learn, self.D_learn = DDP(self.G, device_ids=ids), DDP(self.D, device_ids=ids)
        if self.compiled:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self.G_learn, self.D_learn, self.D_judge = (
                torch.compile(m, mode=mode, dynamic=False) for m in (self.G_learn, self.D_learn, self.D)
            )
        self._wrapped = True

    def train_step(self) -> dict:
        """One D update and one G update on the same real batch and the same generated images (one G pass,
        as the DCGAN tutorials do): D sees them detached, G's update backpropagates through them."""
        if not self._wrapped:
            self._wrap()
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten now
        real, y = self.real_batch(self.batch_size)
        z = self.noise(len(y))
        m = max(1, len(y) // 2) if self.train_cfg.coverage else 0
        with self.autocast():
            if m:  # the samples nearest to half the real images join the batch: one G pass for both terms
                z = torch.cat([z, self.nearest_noise(real[:m], y[:m])])
            images = self.G_learn(z, torch.cat([y, y[:m]]))
        fake, near = images[: len(y)], (images[len(y) :] if m else None)
        loss_d = self.d_step(real, fake.detach(), y)
        loss_g, cov = self.g_step(fake, y, near, real)
        self.update_ema()
        self.step += 1
        if self.world.distributed:  # one small exchange a step: every rank logs, checks and stops alike
            shared = torch.stack([loss_d, loss_g, cov, torch.tensor(float(self.stop_requested), device=self.device)])
            dist.all_reduce(shared)
            loss_d, loss_g, cov = (shared[:3] / self.world.size).unbind()
            # A separate flag: a signal handled during the exchange sets stop_requested after it was read; that
            # request must go to the next exchange, not be overwritten here (the job would then never stop).
            self._ranks_stop = bool(shared[3] > 0)
        return {"loss_d": loss_d, "loss_g": loss_g, "coverage": cov}

    def fit(self, steps: Optional[int] = None, callbacks: Iterable[Callback] = ()) -> Trainer:
        """Train until ``steps`` (default: the config's) total steps have been done."""
        target = self.train_cfg.steps if steps is None else steps
        callbacks = list(callbacks)
        self._ranks_stop = False  # an earlier fit's agreed stop; a request still pending goes to the next exchange
        for cb in callbacks:
            cb.on_fit_start(self)
        while self.step < target and not (self._ranks_stop if self.world.distributed else self.stop_requested):
            logs = self.train_step()
            report = StepReport()
            for cb in callbacks:
                report.merge(cb.on_step_end(self, logs))
            for cb in callbacks:
                cb.on_step_reported(self, logs, report)
        for cb in callbacks:
            cb.on_fit_end(self)
        return self

    # ------------------------------------------------------------------ outputs and state

    def sampling_generator(self) -> nn.Module:
        """A copy of the EMA generator with batch-norm statistics of its own, in eval mode. Made once per
        step: the sample grid and the diversity monitor of the same step share it."""
        if self._sampling[0] != self.step:
            g = copy.deepcopy(self.G_ema)
            refresh_batchnorm(g, self.model_cfg)
            self._sampling = (self.step, g.eval())
        return self._sampling[1]

    @torch.no_grad()
    def sample(self, n: int, labels=None, seed: int = 0) -> torch.Tensor:
        """n images in [-1, 1] from the EMA generator (labels default to 0, 1, 2, ... cycling)."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        if labels is None:
            labels = torch.arange(n, device=self.device) % self.model_cfg.num_classes
        labels = torch.as_tensor(labels, device=self.device)
        z = torch.randn(n, self.model_cfg.nz, generator=g, device=self.device)
        return self.sampling_generator()(z, labels)

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
            "rng_device": self.device.type,
            "rng_per_rank": gather(self.world, self.rng.get_state()) if self.world.distributed else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        per_rank = state.get("rng_per_rank") or [state["rng"]]
        if state.get("rng_device") == self.device.type and len(per_rank) == self.world.size:
            # on the CPU: a checkpoint loaded onto the GPU brings its RNG state there, and set_state takes a CPU tensor
            self.rng.set_state(per_rank[self.world.rank].cpu())
        else:  # resumed on another kind of device or by another number of processes: continue, not bit-exactly
            self.rng.manual_seed(rank_seed(self.train_cfg.seed + int(state["step"]), self.world.rank))
        self.step = int(state["step"])
        self._sampling = (None, None)
