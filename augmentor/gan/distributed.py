"""Running under ``torchrun``: one run trained by several processes with ``torch.distributed``.

torchrun starts the processes and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; this module only reads
them. Each rank holds the whole (small) training set and draws its own class-balanced batches of
``batch_size / world`` images from its own random stream (not from a shard: with ten images a class a shard
would starve classes, while independent draws are what one process does); DistributedDataParallel averages G's and D's
gradients, so a step sees ``batch_size`` images in all, as with one process. Rank 0 alone writes the run
directory; the others wait for it and read what it wrote, as a resume would.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError

TIMEOUT = timedelta(seconds=int(os.environ.get("AUGMENTOR_DIST_TIMEOUT", 120)))  # a lost rank ends the job after this


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        raise ConfigError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets them)") from None


def check(
    w: World, batch_size: int, device: str, mode: str = "conditional", spectral_norm: bool = True, classes: int = 0
) -> None:
    """Refuse, on every rank and before any trains, what cannot work in a job of this size."""
    if not w.distributed:
        return
    if mode == "per-class" and classes and classes < w.size:
        raise ConfigError(f"--mode per-class shards {classes} classes over the processes: start at most {classes}")
    if not spectral_norm and mode != "per-class":
        raise ConfigError("--no-spectral-norm does not run under torchrun (D's batch norm needs two passes a step); drop it")
    if batch_size % w.size:
        raise ConfigError(f"--batch-size {batch_size} does not divide over {w.size} processes; give a multiple of {w.size}")
    if device.startswith("cuda") and torch.cuda.device_count() < int(os.environ.get("LOCAL_WORLD_SIZE", w.size)):
        raise ConfigError(
            f"--device {device}: {torch.cuda.device_count()} GPU(s) here for {os.environ.get('LOCAL_WORLD_SIZE', w.size)} "
            "processes on this node; start as many processes per node as GPUs"
        )


def start(w: World, device: torch.device) -> None:
    """Join the job's process group: nccl for GPUs, gloo for CPUs."""
    if not w.distributed or dist.is_initialized():
        return
    if not w.main:  # rank 0 speaks for the job; the others only warn
        logging.getLogger("augmentor").setLevel(logging.WARNING)
    if device.type == "cuda":
        torch.cuda.set_device(w.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)


def stop(w: World) -> None:
    """Leave the process group together: a rank exiting while another still talks to it aborts (gloo)."""
    if w.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class RankZeroSetup:
    """Rank 0 prepares what the others wait for: ``with RankZeroSetup(w): ...`` on rank 0,
    ``RankZeroSetup(w).wait()`` on the others, which then fail with rank 0's error instead of hanging."""

    def __init__(self, w: World):
        self.w = w

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        broadcast(self.w, None if error is None else str(error))
        return False

    def wait(self) -> None:
        failed = broadcast(self.w, None)
        if failed:
            raise ConfigError(f"rank 0 could not start the run: {failed}")


def barrier(w: World) -> None:
    if w.distributed:
        dist.barrier()


def broadcast(w: World, obj):
    """Rank 0's ``obj`` on every rank."""
    if not w.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(w: World, obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not w.distributed:
        return [obj]
    out = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def digest(*modules) -> str:
    """A hash of the modules' weights: equal on every rank when the ranks are in sync. (Not the buffers: batch
    norm's running statistics follow each rank's own batch, and DDP hands rank 0's to all at every step.)"""
    import hashlib

    h = hashlib.sha256()
    for m in modules:
        for name, t in sorted(m.named_parameters()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rank_seed(seed: int, rank: int) -> int:
    """Each rank's own random stream; rank 0 keeps the seed itself, so one process is the job of size 1."""
    return seed + 1_000_003 * rank
