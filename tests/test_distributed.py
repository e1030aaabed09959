"""torchrun with gloo on the CPU: two processes train one run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clihelp import one_line_error, run_cli
from conftest import tiny_model, tiny_train

from augmentor import data
from augmentor.gan import train
from augmentor.store import checkpoint

TINY = ["--data", "sklearn:digits", "--width", "8", "--nz", "16", "--batch-size", "16", "--checkpoint-every", "10"]


def torchrun(*args, nproc: int = 2, wait: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "AUGMENTOR_DIST_TIMEOUT": "20"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "augmentor"]
    proc = subprocess.Popen(
        [*cmd, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    if not wait:
        return proc
    out = finish(proc, 240)
    return proc.returncode, out


def finish(proc, timeout: float) -> str:
    """The job's output once it ends; a job still running after ``timeout`` is killed (no stray processes)."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        for worker in _children(proc.pid):  # torchrun starts its workers in sessions of their own
            os.kill(worker, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate(timeout=30)[0]
        pytest.fail(f"the torchrun job did not end within {timeout} s:\n{out[-3000:]}")


@pytest.mark.slow
def test_two_processes_train_one_run_that_one_process_resumes(tmp_path, capsys):
    code, out = torchrun("fit", *TINY, "--steps", 20, "--out", tmp_path / "a")
    assert code == 0, out
    assert "2 processes × 8 images a step" in out and "2 processes ended with identical weights" in out
    assert out.count("run finished") == 1  # rank 0 speaks for the job
    for name in ("config.json", "log.jsonl", "generator.onnx", "discriminator.onnx", "checkpoints/ckpt_000020.pt"):
        assert (tmp_path / "a" / name).exists(), name
    state = checkpoint.latest_good(tmp_path / "a" / "checkpoints")[1]
    assert len(state["rng_per_rank"]) == 2 and not torch.equal(state["rng_per_rank"][0], state["rng_per_rank"][1])
    code, out = torchrun("fit", "--out", tmp_path / "a", "--resume", "--steps", 30)
    assert code == 0 and "resuming" in out, out
    assert run_cli(capsys, "export", tmp_path / "a")[0] == 0
    code, _, err = run_cli(capsys, "fit", "--out", tmp_path / "a", "--resume", "--steps", 40)  # one process
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss_d" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # no gap, no repeat across 2 → 2 → 1 processes


@pytest.mark.slow
def test_per_class_bank_is_sharded_by_class_and_exports_as_one_process_does(tmp_path, capsys):
    from augmentor import Sampler
    from augmentor.config import ModelConfig, TrainConfig
    from augmentor.data.sources import load
    from augmentor.data.splits import select_classes
    from augmentor.gan.train import Trainer
    from augmentor.onnx.metadata import read_metadata

    args = ["--classes", "0,1,2", "--mode", "per-class", "--steps", 10]
    code, out = torchrun("fit", *TINY, *args, "--out", tmp_path / "two")
    assert code == 0 and "2 processes ended with identical weights" in out, out
    code, _, err = run_cli(capsys, "fit", *TINY, *args, "--out", tmp_path / "one")
    assert code == 0, err
    two, one = (read_metadata(tmp_path / d / "generator.onnx") for d in ("two", "one"))
    assert {k: v for k, v in two.items() if k not in ("data_fingerprint",)} == {
        k: v for k, v in one.items() if k not in ("data_fingerprint",)
    }
    assert Sampler(tmp_path / "two", "cpu").sample(6, labels=[0, 1, 2, 0, 1, 2], seed=0).shape == (6, 1, 32, 32)
    state = checkpoint.latest_good(tmp_path / "two" / "checkpoints")[1]
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    fresh = Trainer(
        ModelConfig.from_dict(config["model"]), TrainConfig.from_dict(config["train"]), select_classes(load(None), "0,1,2")
    )
    for k in range(3):  # every member trained, by rank k % 2, and came back into the one checkpoint
        key = f"members.{k}.net.0.weight"
        assert not torch.equal(state["G"][key], fresh.G.state_dict()[key]), k


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_at_one_step_with_a_checkpoint(tmp_path, capsys):
    proc = torchrun("fit", *TINY, "--steps", 100000, "--out", tmp_path / "s", wait=False)
    rank1 = _worker(proc, tmp_path / "s", rank=1)
    os.kill(rank1, signal.SIGTERM)
    out = finish(proc, 90)
    assert "interrupted at step" in out and "checkpoint saved" in out, out
    stopped = int(out.split("interrupted at step ")[1].split(";")[0])
    assert checkpoint.latest_good(tmp_path / "s" / "checkpoints")[1]["step"] == stopped  # both ranks stopped there
    code, _, err = run_cli(capsys, "fit", "--out", tmp_path / "s", "--resume", "--steps", stopped + 5, "--no-export")
    assert code == 0, err


def test_a_stop_asked_during_the_ranks_exchange_is_shared_at_the_next_one(monkeypatch):
    """The signal handler runs whenever Python gets control, also inside the step's all-reduce: a request made then
    missed this exchange and must reach the next one (once it was overwritten and the job trained on)."""
    from augmentor.gan.distributed import World

    trainer = train.Trainer(tiny_model(("0", "1")), tiny_train(steps=10), data.select_classes(data.load(None), "0,1"))
    trainer.world = World(rank=0, size=2)  # as rank 0 of two; the exchange below stands for the other rank
    shared_requests = []

    def all_reduce(shared):
        shared_requests.append(float(shared[3]))
        if len(shared_requests) == 1:
            trainer.stop_requested = True  # SIGTERM handled while the exchange is under way
        shared[:3] *= 2  # the other rank's losses (equal here); it asks nothing

    monkeypatch.setattr(train.dist, "all_reduce", all_reduce)
    trainer.fit()
    assert shared_requests == [0.0, 1.0] and trainer.step == 2


def test_jobs_larger_than_the_hardware_or_the_classes_are_refused(monkeypatch):
    from augmentor.errors import ConfigError
    from augmentor.gan import distributed

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="1 GPU"):
        distributed.check(distributed.World(0, 0, 2), 64, "cuda")
    with pytest.raises(ConfigError, match="shards 2 classes over the processes: start at most 2"):
        distributed.check(distributed.World(0, 0, 4), 64, "cpu", "per-class", classes=2)


def test_a_job_that_cannot_work_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it for rank 0: refused before the process group
    monkeypatch.setenv("RANK", "0")
    for args, expected in [
        (["--batch-size", 15], "--batch-size 15 does not divide over 2 processes"),
        (["--no-spectral-norm"], "--no-spectral-norm does not run under torchrun"),
    ]:
        code, _, err = run_cli(capsys, "fit", *TINY, "--steps", 5, *args, "--out", tmp_path / "r")
        assert code == 2 and expected in one_line_error(err), err
        assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers through /proc")
def test_killing_one_rank_ends_the_job_and_resume_continues(tmp_path, capsys):
    proc = torchrun("fit", *TINY, "--steps", 100000, "--out", tmp_path / "k", wait=False)
    os.kill(_worker(proc, tmp_path / "k", rank=1), signal.SIGKILL)
    out = finish(proc, 90)  # no hang: the job ends, and torchrun's failure summary names the rank that died
    # (as the root cause, or among the failures when the agent's SIGTERM to rank 0 is recorded first)
    summary = out.split("Failures:")[-1]
    assert proc.returncode != 0 and "rank      : 1" in summary and "SIGKILL" in summary, out
    done = checkpoint.latest_good(tmp_path / "k" / "checkpoints")[1]["step"]
    code, _, err = run_cli(capsys, "fit", "--out", tmp_path / "k", "--resume", "--steps", done + 10, "--no-export")
    assert code == 0, err


def _worker(proc, run: Path, rank: int) -> int:
    """The pid of a rank of a torchrun job, once the run has its first checkpoint."""
    deadline = time.time() + 120
    while not list((run / "checkpoints").glob("ckpt_*.pt")) and time.time() < deadline:
        time.sleep(0.5)
    return next(pid for pid in _children(proc.pid) if f"RANK={rank}\0".encode() in Path(f"/proc/{pid}/environ").read_bytes())


def _children(pid: int) -> list:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == pid]


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.slow
def test_bench_spreads_its_settings_over_the_processes(tmp_path, capsys):
    code, out = torchrun("bench", "--preset", "smoke", "--out", tmp_path / "two")
    assert code == 0 and out.count("report: ") == 1, out
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process ran
    try:
        code, _, err = run_cli(capsys, "bench", "--preset", "smoke", "--seeds", "1", "--out", tmp_path / "one")
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    two, one = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("two", "one"))
    assert [(s["shot"], s["seed"]) for s in two["settings"]] == [(6, 0), (6, 1)]
    assert two["settings"][1]["arms"] == one["settings"][0]["arms"]  # rank 1's setting, as one process makes it
