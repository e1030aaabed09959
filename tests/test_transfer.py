import json

import pytest
import torch
from clihelp import TINY, one_line_error, run_cli
from conftest import tiny_train

from augmentor import data, run
from augmentor.config import DataConfig, InitConfig
from augmentor.gan import transfer
from augmentor.gan.train import Trainer
from augmentor.run.prepare import model_config_for
from augmentor.store import checkpoint


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A conditional run on the digits 0, 1, 2."""
    out = tmp_path_factory.mktemp("transfer") / "src"
    run.fit(out, DataConfig(classes="0,1,2"), tiny_train(steps=6), {"width": 8, "nz": 16}, progress=False, export=False)
    return out


def target_trainer(src: transfer.Source, classes: str) -> Trainer:
    train = data.select_classes(data.load(None), classes)
    cfg = model_config_for(train, **transfer.model_options(src, {}))
    transfer.check_compatible(src, cfg, freeze_d=0)
    trainer = Trainer(cfg, tiny_train(steps=4), train)
    transfer.warm_start(trainer, src)
    return trainer


def test_known_classes_keep_their_embeddings_new_ones_start_from_their_mean(source):
    src = transfer.load_source(source)
    trainer = target_trainer(src, "1,2,3")  # 1 and 2 known (at rows 1, 2 of the source), 3 new
    for net, key in ((trainer.G, "G"), (trainer.D, "D"), (trainer.G_ema, "G_ema")):
        table = src.state[key]["embed.weight"]
        got = net.embed.weight.detach()
        assert torch.equal(got[0], table[1]) and torch.equal(got[1], table[2]), key  # bit-identical at step 0
        assert torch.allclose(got[2], table.mean(0)), key
    shared = [k for k in src.state["G"] if "embed" not in k]
    assert all(torch.equal(trainer.G.state_dict()[k], src.state["G"][k]) for k in shared)  # everything else copied


def test_freeze_d_keeps_the_first_blocks_fixed(source):
    trainer = target_trainer(transfer.load_source(source), "1,2,3")
    transfer.freeze_d(trainer.D, 2)
    convs = [m for m in trainer.D.body if isinstance(m, torch.nn.Conv2d)]
    before = [[p.detach().clone() for p in c.parameters()] for c in convs]  # the weights under spectral norm
    trainer.fit(callbacks=[])
    same = [all(torch.equal(a, p) for a, p in zip(b, c.parameters())) for b, c in zip(before, convs)]
    assert same == [True, True, False]  # the third block learns


@pytest.mark.slow
def test_fit_init_records_where_it_started_and_resume_keeps_it(source, tmp_path, capsys):
    out = tmp_path / "tgt"
    code, _, err = run_cli(capsys, "fit", "--data", "sklearn:digits", "--classes", "1,2,3", "--init", source,
                           "--freeze-d", 1, "--steps", 3, "--batch-size", 8, "--out", out)  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["width"] == 8 and config["model"]["nz"] == 16  # the source's, not the CLI defaults
    assert config["init"]["freeze_d"] == 1 and config["init"]["source"]["step"] == 6
    assert config["init"]["source"]["class_names"] == ["0", "1", "2"]
    code, stdout, _ = run_cli(capsys, "info", out)
    assert "(step 6, data " in stdout.split("init", 1)[1].splitlines()[0]
    code, _, err = run_cli(capsys, "fit", "--out", out, "--resume", "--steps", 5, "--init", tmp_path / "other")
    assert code == 2 and "--init" in one_line_error(err)
    code, _, err = run_cli(capsys, "fit", "--out", out, "--resume", "--steps", 5, "--no-export")
    assert code == 0, err
    assert (
        checkpoint.latest_good(out / "checkpoints")[1]["init"]
        == json.loads((out / "config.json").read_text())["init"]["source"]["checkpoint"]
        + " (step 6, data "
        + config["init"]["source"]["data_fingerprint"]
        + ")"
    )


@pytest.mark.slow
def test_init_bad_input(source, tmp_path, capsys):
    per_class = tmp_path / "per-class"
    code, _, err = run_cli(capsys, "fit", "--classes", "0,1", "--mode", "per-class", *TINY, "--steps", 2, "--out", per_class)
    assert code == 0, err
    cases = [
        (["--init", source, "--size", 64], "32 px images"),
        (["--init", source, "--width", 16], "has --width 8, not 16"),
        (["--init", per_class, "--mode", "conditional"], "per-class run has no shared model"),
        (["--init", per_class, "--mode", "per-class", "--classes", "1,2"], "knows no class '2'"),
        (["--init", source, "--freeze-d", 4], "D has 3 blocks"),
        (["--freeze-d", 1], "give --init RUN too"),
        (["--init", tmp_path / "nowhere"], "no such run directory"),
        (["--init", tmp_path], "no usable checkpoint"),
    ]
    for args, expected in cases:
        code, _, err = run_cli(capsys, "fit", "--data", "sklearn:digits", "--steps", 1, *TINY[4:], *args, "--out", tmp_path / "t")
        assert code == 2 and expected in one_line_error(err), (args, err)
        assert not (tmp_path / "t").exists()  # a refused fit takes back the --out folder it created
    (tmp_path / "mine").mkdir()
    code, _, err = run_cli(
        capsys, "fit", "--data", "sklearn:digits", *TINY[4:], "--size", 64, "--init", source, "--out", tmp_path / "mine"
    )
    assert code == 2 and (tmp_path / "mine").is_dir()  # the user's own (empty) folder stays
    with pytest.raises(Exception, match="32 px images"):
        run.fit(tmp_path / "py", DataConfig(size=64), tiny_train(), init=InitConfig(init=str(source)), progress=False)


@pytest.mark.slow
def test_bench_starts_our_gans_from_the_run(source, tmp_path, capsys):
    out = tmp_path / "bench"
    bench = ["bench", "--preset", "smoke", "--seeds", "0", "--classes", "1,2,3", "--out", out]
    code, _, err = run_cli(capsys, *bench, "--init", source, "--freeze-d", 1, "--gan-steps", 4)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["pool_images"] < 1797 * 0.7 * 0.35  # three classes of ten
    for name in ("shot6-seed0", "plain-shot6-seed0"):  # ours starts from the run, the plain reference does not
        config = json.loads((out / "runs" / name / "config.json").read_text())
        assert config["model"]["class_names"] == ["1", "2", "3"]
        assert (config["init"]["source"] or {}).get("step") == (6 if name.startswith("shot") else None)  # ours only
        assert config["init"]["freeze_d"] == (1 if name.startswith("shot") else 0)
        assert config["train"]["steps"] == 4  # --gan-steps: every GAN of the bench
