import json

import pytest
import torch
import torch.nn.functional as F
from clihelp import one_line_error, run_cli
from conftest import tiny_model, tiny_train
from sklearn.linear_model import LogisticRegression

from augmentor import data
from augmentor.config import ModelConfig, TrainConfig
from augmentor.gan.train import Trainer
from augmentor.store import checkpoint


@pytest.fixture(scope="module")
def digits():
    return data.load(None, size=32)


@pytest.fixture(scope="module")
def digit_classifier(digits):
    """A real-digit classifier: logistic regression on 8×8 average-pooled images (99 % on the digits)."""
    x = F.avg_pool2d(data.uint8_to_tanh(digits.images), 4).flatten(1).numpy()
    return LogisticRegression(max_iter=2000).fit(x, digits.labels.numpy())


def label_agreement(trainer, clf, n=500) -> float:
    y = torch.arange(n) % trainer.model_cfg.num_classes
    x = trainer.sample(n, y, seed=1)
    pred = clf.predict(F.avg_pool2d(x, 4).flatten(1).numpy())
    return float((torch.from_numpy(pred) == y).float().mean())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["conditional", "per-class"])
def test_samples_are_classified_as_their_conditioning_label(digits, digit_classifier, mode):
    """A short, seeded run on digits 0 and 1: after 120 steps a classifier reads nearly every sample as its
    conditioning label (after 60 the conditional model's are still near chance). The long study:
    benchmarks/label_agreement.py."""
    two = data.select_classes(digits, "0,1")
    cfg = ModelConfig(size=32, channels=1, class_names=tuple(two.class_names), mode=mode, width=16, nz=32)
    trainer = Trainer(cfg, TrainConfig.short_run(120, batch_size=32, seed=0), two).fit()
    assert label_agreement(trainer, digit_classifier, n=400) >= 0.9


def test_batches_are_class_balanced_and_on_device(digits):
    imbalanced = digits.subset(
        torch.cat([torch.nonzero(digits.labels == 0).flatten()[:5], torch.nonzero(digits.labels == 1).flatten()])
    )
    trainer = Trainer(tiny_model(("0", "1")), tiny_train(), imbalanced)
    _, y = trainer.real_batch(4000)
    assert 0.45 < (y == 0).float().mean() < 0.55  # 5 vs 182 images, drawn equally often


@pytest.mark.parametrize("mode", ["conditional", "per-class", "unconditional"])
def test_resume_from_a_checkpoint_file_gives_identical_weights(tmp_path, digits, mode):
    names = ("0", "1") if mode != "unconditional" else ("0",)
    small = data.select_classes(digits, ",".join(names))
    cfg, tcfg = tiny_model(names, mode), tiny_train(steps=6, coverage=1.0, coverage_k=2)
    straight = Trainer(cfg, tcfg, small).fit()

    first = Trainer(cfg, tcfg, small).fit(steps=3)
    checkpoint.save(tmp_path / "c.pt", {**first.state_dict(), "model_config": cfg.to_dict(), "train_config": tcfg.to_dict()})
    resumed = Trainer(cfg, tcfg, small)
    resumed.load_state_dict(checkpoint.load(tmp_path / "c.pt"))
    resumed.fit()
    for a, b in zip(straight.G_ema.state_dict().values(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.D.state_dict().values(), resumed.D.state_dict().values()):
        assert torch.equal(a, b)


def test_a_run_on_images_from_python_resumes_from_python_with_the_same_images(tmp_path, digits, monkeypatch, capsys):
    """fit() on an ImageSet, stopped by Ctrl-C at step 2, says to resume it from Python with the images; resumed
    without them (the CLI, or Python) or with others, it is refused in one line; with the same images it ends with the weights of a run
    never interrupted, and its log's clock goes on from the time logged before the interruption."""
    from augmentor import run
    from augmentor.errors import ConfigError, Interrupted
    from augmentor.gan import callbacks

    two = data.select_classes(digits, "0,1")
    model, options = {"width": 8, "nz": 16}, {"progress": False, "export": False, "checkpoint_every": 2}
    run.fit(tmp_path / "whole", two, tiny_train(steps=4), model, **options)
    save = callbacks.Checkpointer.save

    def ctrl_c_at_step_2(self, trainer):
        trainer.stop_requested = trainer.step == 2  # as a Ctrl-C during that step does
        return save(self, trainer)

    monkeypatch.setattr(callbacks.Checkpointer, "save", ctrl_c_at_step_2)
    with pytest.raises(Interrupted, match=r"Resume with: augmentor.resume\('.*cut', images=...\)"):
        run.fit(tmp_path / "cut", two, tiny_train(steps=4), model, **options)
    monkeypatch.undo()

    cut = tmp_path / "cut"
    capsys.readouterr()  # what the fits logged (through an earlier test's CLI handler, maybe) is not the CLI's
    code, _, err = run_cli(capsys, "fit", "--out", cut, "--resume")
    assert code == 2 and "augmentor.resume(out, images=...)" in one_line_error(err)
    for images, words in ((None, "resume it from Python"), (data.select_classes(digits, "0,2"), "not the ones")):
        with pytest.raises(ConfigError, match=words):
            run.resume(cut, images=images, progress=False)
    with pytest.raises(ConfigError, match="its unlabelled images are none"):
        run.resume(cut, images=two, unlabeled=two, progress=False)
    rows = [json.loads(line) for line in (cut / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2]
    (cut / "log.jsonl").write_text(json.dumps({**rows[0], "time": 1000.0}) + "\n")  # as if those steps took 1000 s

    run.resume(cut, {"export": False}, images=two, progress=False)
    whole, resumed = (checkpoint.load(d / "checkpoints" / "ckpt_000004.pt") for d in (tmp_path / "whole", cut))
    for net in ("G", "D", "G_ema"):
        assert all(torch.equal(a, b) for a, b in zip(whole[net].values(), resumed[net].values())), net
    assert callbacks.logged_seconds(cut / "log.jsonl") > 1000.0


def test_hinge_loss_and_no_diffaug_train(digits):
    trainer = Trainer(tiny_model([str(i) for i in range(10)]), tiny_train(steps=3, loss="hinge", diffaug=""), digits)
    logs = trainer.train_step()
    assert all(torch.isfinite(v) for v in logs.values())


def test_ema_is_an_average_not_a_copy(digits):
    trainer = Trainer(tiny_model([str(i) for i in range(10)]), tiny_train(steps=30), digits).fit()
    ema, raw = trainer.G_ema.net[0].weight, trainer.G.net[0].weight
    assert not torch.equal(ema, raw) and (ema - raw).abs().max() < 0.1


def test_precision_is_resolved_and_bf16_keeps_weights_and_samples_fp32(digits, monkeypatch):
    from augmentor.errors import ConfigError
    from augmentor.gan.train import resolve_precision

    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # bf16 autocast was slower on an H100
    for avx512_bf16, amx, expected in [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision("auto", torch.device("cpu")) == expected  # bf16 only with native CPU support
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="--precision fp8"):
        resolve_precision("fp8", torch.device("cpu"))
    trainer = Trainer(tiny_model([str(i) for i in range(10)]), tiny_train(steps=3, coverage=1.0), digits, precision="bf16")
    logs = trainer.fit().train_step()
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in logs.values())
    params = [*trainer.G.parameters(), *trainer.D.parameters(), *trainer.G_ema.parameters()]
    assert all(p.dtype == torch.float32 for p in params)
    assert trainer.sample(4).dtype == torch.float32


@pytest.mark.slow
def test_callback_order_does_not_matter(tmp_path):
    """Callbacks report (log fields, NaN) and act on the merged report: any order writes the same log."""
    import json
    import random

    from augmentor.gan.callbacks import Checkpointer, DiversityMonitor, ProgressLog, SampleGrids

    ds = data.select_classes(data.load(None, size=32), "0,1")
    rows = []
    for order in range(3):
        out = tmp_path / str(order)
        callbacks = [
            DiversityMonitor(2),
            ProgressLog(out / "log.jsonl", every=3, progress=False),
            SampleGrids(out / "samples", 2),
            Checkpointer(out / "ckpt", 3),
        ]
        random.Random(order).shuffle(callbacks)
        out.mkdir()
        Trainer(tiny_model(("0", "1")), tiny_train(steps=6), ds).fit(callbacks=callbacks)
        rows.append(
            [{k: v for k, v in json.loads(r).items() if k != "time"} for r in (out / "log.jsonl").read_text().splitlines()]
        )
    assert [r["step"] for r in rows[0]] == [2, 3, 4, 6] and "diversity" in rows[0][0]
    assert rows[0] == rows[1] == rows[2]


def test_trainer_leaves_the_users_global_random_state_alone(digits):
    state = torch.random.get_rng_state()
    Trainer(tiny_model(("0", "1")), tiny_train(seed=7), data.select_classes(digits, "0,1")).fit()
    assert torch.equal(torch.random.get_rng_state(), state)
    a = Trainer(tiny_model(("0", "1")), tiny_train(seed=7), data.select_classes(digits, "0,1"))
    b = Trainer(tiny_model(("0", "1")), tiny_train(seed=7), data.select_classes(digits, "0,1"))
    assert all(torch.equal(x, y) for x, y in zip(a.G.state_dict().values(), b.G.state_dict().values()))  # still seeded


def test_coarse_coverage_compares_layout_not_texture(digits):
    """coverage_space "coarse": a fine texture that averages to zero over each 4×4 block is invisible to the
    coverage term (which then leaves texture to the adversarial loss), a shift of the layout is not."""
    names = [str(i) for i in range(10)]
    coarse = Trainer(tiny_model(names), tiny_train(coverage=1.0, coverage_space="coarse"), digits)
    pixel = Trainer(tiny_model(names), tiny_train(coverage=1.0), digits)
    x, y = coarse.real_batch(8)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 0.2 - 0.1  # ±0.1, zero mean per block
    assert coarse.coverage_view(x, y).shape == (8, 1, 8, 8)
    assert torch.allclose(coarse.coverage_view(x + checker, y), coarse.coverage_view(x, y), atol=1e-6)
    assert not torch.allclose(pixel.coverage_view(x + checker, y), pixel.coverage_view(x, y))
    shifted = torch.roll(x, 4, dims=3)
    assert not torch.allclose(coarse.coverage_view(shifted, y), coarse.coverage_view(x, y))
    assert 0 < float(coarse.fit(steps=2).train_step()["coverage"]) < 4  # trains; a mean square distance in [-1, 1]


@pytest.mark.slow
def test_a_compiled_trainer_does_the_eager_math(tmp_path):
    """--compile on: the same losses and weights as eager, to float rounding (CPU: inductor's fused kernels)."""
    ds = data.load(None, size=32)
    cfg = ModelConfig(size=32, channels=1, class_names=tuple(ds.class_names), width=8, nz=16)
    train = TrainConfig(steps=3, batch_size=16, seed=1, coverage=5.0)
    eager, compiled = Trainer(cfg, train, ds, precision="fp32"), Trainer(cfg, train, ds, precision="fp32", compile="on")
    for _ in range(3):
        a, b = eager.train_step(), compiled.train_step()
        assert all(abs(float(a[k]) - float(b[k])) < 1e-4 for k in a), (a, b)
    for p, q in zip(eager.G_ema.parameters(), compiled.G_ema.parameters()):
        assert torch.allclose(p, q, atol=1e-4)
    assert compiled.compiled and type(compiled.D_judge).__name__ == "OptimizedModule"
