import dataclasses
import json

import pytest
import torch
from conftest import tiny_train
from torch import nn

from augmentor import data
from augmentor.config import ModelConfig, TrainConfig
from augmentor.gan.callbacks import DiversityMonitor
from augmentor.gan.metrics import ClassReference
from augmentor.gan.train import Trainer


def digits_10_shot():
    ds = data.load(None, size=32)
    return ds.subset(data.per_class_subset(ds, 10, seed=0))


class OneShapePerClass(nn.Module):
    """A perfectly collapsed generator: every z gives the same image of its class."""

    def __init__(self, images):
        super().__init__()
        self.images = images

    def forward(self, z, labels):
        return self.images[labels]


def test_reference_ratios_on_real_and_collapsed_sets():
    ds = digits_10_shot()
    x = data.uint8_to_tanh(ds.images)
    ref = ClassReference(x, ds.labels, 10)
    same = ref.compare(x[ds.labels == 3], 3)
    assert 0.99 < same["diversity"] < 1.01 and same["recall"] == 1.0 and same["nearest_real"] == 0.0
    copies = x[ds.labels == 3][:1].repeat(10, 1, 1, 1)
    collapsed = ref.compare(copies, 3)
    assert collapsed["diversity"] == 0.0 and collapsed["recall"] <= 0.4  # one image reaches itself and a few neighbours


def test_collapsed_class_triggers_a_warning_naming_it(caplog):
    ds = digits_10_shot()
    cfg = ModelConfig(size=32, channels=1, class_names=tuple(ds.class_names), width=8, nz=16)
    trainer = Trainer(cfg, tiny_train(steps=1), ds)
    first_of_each = torch.stack([data.uint8_to_tanh(ds.images[ds.labels == c][0]) for c in range(10)])
    trainer.sampling_generator = lambda: OneShapePerClass(first_of_each)
    monitor = DiversityMonitor(every=1)
    monitor.on_fit_start(trainer)
    report = monitor.on_step_end(trainer, {})
    per_class = monitor.history[-1][1]
    assert all(v["diversity"] == 0.0 for v in per_class.values())
    assert "classes '0', '1', '2'" in caplog.text and "'9' look collapsed" in caplog.text
    assert len([r for r in caplog.records if "collapsed" in r.message]) == 1  # one line, all classes named
    assert "try --coverage 5" in caplog.text  # tiny_train has the coverage term off
    assert report.progress["worst"].endswith(":0.00")  # reported, not written into the trainer
    assert set(report.log) == {"diversity", "nearest_real", "recall"} and not report.nonfinite
    caplog.clear()
    trainer.train_cfg, monitor.warned = dataclasses.replace(trainer.train_cfg, coverage=5.0), set()
    monitor.on_step_end(trainer, {})
    assert "raise --coverage above 5 or fit longer" in caplog.text  # not "try --coverage 5" when it is on


@pytest.mark.slow
def test_coverage_term_raises_within_class_recall():
    """10 digits per class, 250 steps: the coverage term keeps more of each class's real images covered by the
    samples than the adversarial loss alone does."""
    ds = digits_10_shot()
    cfg = ModelConfig(size=32, channels=1, class_names=tuple(ds.class_names), width=16, nz=32)
    recall = {}
    for weight in (0.0, 5.0):
        monitor = DiversityMonitor(every=250, warn_below=0)
        Trainer(cfg, TrainConfig.short_run(250, batch_size=32, coverage=weight), ds).fit(callbacks=[monitor])
        per_class = monitor.history[-1][1]
        recall[weight] = sum(v["recall"] for v in per_class.values()) / 10
    print(recall)
    assert recall[5.0] >= 0.85 and recall[5.0] >= recall[0.0] + 0.1


def test_fit_logs_diversity_and_plots_it(tmp_path, capsys):
    from clihelp import TINY, run_cli

    out = tmp_path / "run"
    assert run_cli(capsys, "fit", "--out", out, "--steps", 4, "--sample-every", 2, "--classes", "0,1", *TINY)[0] == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    with_div = [r for r in rows if "diversity" in r]
    assert [r["step"] for r in with_div] == [2, 4] and set(with_div[0]["diversity"]) == {"0", "1"}
    assert (out / "diversity.png").exists()
