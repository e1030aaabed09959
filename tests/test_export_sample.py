import shutil

import numpy as np
import onnx
import pytest
import torch
from clihelp import TINY, one_line_error, run_cli
from conftest import tiny_model, tiny_train
from PIL import Image

from augmentor import data
from augmentor.errors import ConfigError, ModelFileError
from augmentor.gan.train import Trainer
from augmentor.onnx.export import export_run, load_models
from augmentor.onnx.metadata import read_metadata
from augmentor.onnx.sampler import Sampler, class_folders, safe_name
from augmentor.store import checkpoint
from augmentor.store.rundir import checkpoint_name


def make_run(root, mode="conditional", names=("0", "1", "2"), size=32, channels=1, steps=2):
    """A tiny trained run directory with a checkpoint (no ONNX yet)."""
    ds = data.load(None, size=size, channels=channels)
    ds = data.select_classes(ds, ",".join(names)) if mode != "unconditional" else data.select_classes(ds, names[0])
    cfg = tiny_model(ds.class_names, mode, size, channels)
    trainer = Trainer(cfg, tiny_train(steps=steps), ds).fit()
    run = root / f"run-{mode}-{size}-{channels}"
    (run / "checkpoints").mkdir(parents=True)
    payload = {
        **trainer.state_dict(),
        "model_config": cfg.to_dict(),
        "train_config": trainer.train_cfg.to_dict(),
        "data_fingerprint": ds.fingerprint(),
    }
    checkpoint.save(run / "checkpoints" / checkpoint_name(trainer.step), payload)
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("exp"))
    export_run(run)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["conditional", "per-class", "unconditional"])
@pytest.mark.parametrize("fp16", [False, True])
def test_onnx_matches_torch(tmp_path, mode, fp16):
    run = make_run(tmp_path, mode, size=64 if fp16 else 32, channels=3 if fp16 else 1)
    res = export_run(run, fp16=fp16)  # raises when its own parity check fails
    # independently of export's own check: a fresh draw of z and labels, through the Sampler
    cfg, G, _ = load_models(checkpoint.latest_good(run / "checkpoints")[1])
    sampler = Sampler(res["generator"], device="cpu", chunk=5)
    z = torch.randn(7, cfg.nz)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0]) % cfg.num_classes
    with torch.no_grad():
        ref = G(z, y)
    got = sampler.generate(z, y)
    assert (ref - got).abs().max() <= (2e-2 if fp16 else 1e-4)


def test_metadata(exported):
    meta = read_metadata(exported / "generator.onnx")
    assert meta["kind"] == "generator" and meta["mode"] == "conditional" and meta["class_names"] == ["0", "1", "2"]
    assert meta["size"] == 32 and meta["channels"] == 1 and meta["nz"] == 16 and meta["value_range"] == "-1,1"
    assert len(meta["data_fingerprint"]) == 16 and meta["augmentor_version"]
    assert read_metadata(exported / "discriminator.onnx")["kind"] == "discriminator"


def test_sampler_is_deterministic_and_honours_labels_and_ranges(exported):
    s = Sampler(exported, device="cpu", chunk=8)
    a, b = s.sample(20, seed=3), s.sample(20, seed=3)
    assert torch.equal(a, b) and a.shape == (20, 1, 32, 32) and a.dtype == torch.float32
    assert not torch.equal(a, s.sample(20, seed=4))
    assert a.min() >= -1 and a.max() <= 1
    unit = s.sample(20, seed=3, value_range="unit")
    assert torch.allclose(unit, (a + 1) / 2, atol=1e-6)
    u8 = s.sample(20, seed=3, value_range="uint8", numpy=True)
    assert isinstance(u8, np.ndarray) and u8.dtype == np.uint8
    # a chunk boundary does not change an image: the same noise in another chunking gives the same picture
    z, y = torch.randn(10, 16), torch.arange(10) % 3
    assert torch.allclose(
        Sampler(exported, "cpu", chunk=3).generate(z, y), Sampler(exported, "cpu", chunk=16).generate(z, y), atol=1e-5
    )
    by_name = s.sample(4, labels="2", seed=0)
    assert torch.equal(by_name, s.sample(4, labels=[2, 2, 2, 2], seed=0))


def test_sampler_refuses_foreign_models_and_unknown_labels(tmp_path, exported):
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(exported / "generator.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(ModelFileError, match="not made by augmentor"):
        Sampler(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not an ONNX file"):
        Sampler(tmp_path / "junk.onnx")
    assert Sampler(exported / "discriminator.onnx").path.name == "generator.onnx"  # its pair, named in its metadata
    lone = tmp_path / "lone" / "d.onnx"
    lone.parent.mkdir()
    shutil.copy(exported / "discriminator.onnx", lone)
    with pytest.raises(ModelFileError, match="not a generator"):
        Sampler(lone)
    with pytest.raises(ConfigError, match="label 5 is not a class"):
        Sampler(exported, "cpu").sample(2, labels=[0, 5])
    with pytest.raises(ConfigError, match="'cat' is not one of"):
        Sampler(exported, "cpu").sample(2, labels="cat")


def test_safe_class_folders():
    assert safe_name("../etc/passwd", "x") == ".._etc_passwd"  # one path component, never a way out of --out
    assert safe_name("/abs", "x") == "_abs" and safe_name("a\0b", "x") == "a_b" and safe_name("..", "x") == "x"
    assert safe_name("a\\b\tc\x7f", "x") == "a_b_c_" and safe_name(".", "x") == "x" and safe_name("  ", "x") == "x"
    assert safe_name("été chaud", "x") == "été chaud" and safe_name("雪", "x") == "雪"  # every character a file system takes
    assert len(safe_name("雪" * 100, "x").encode()) <= 200 and set(safe_name("雪" * 100, "x")) == {"雪"}  # cut between characters
    assert class_folders(["a/b", "a_b", "", "A_B"]) == ["a_b", "a_b_1", "class_2", "A_B_3"]


def test_sample_cli_writes_an_image_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "fit", "--out", run, "--steps", 2, "--classes", "0,1,2", *TINY)[0] == 0
    code, stdout, err = run_cli(capsys, "sample", run, "--n", 4, "--per-class", "--out", tmp_path / "syn")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == ["0", "1", "2"]
    files = sorted((tmp_path / "syn" / "1").glob("*.png"))
    assert len(files) == 4 and Image.open(files[0]).size == (32, 32)
    code, _, err = run_cli(capsys, "sample", run, "--n", 4, "--out", tmp_path / "syn")  # never overwrite
    assert code == 2 and "not an empty folder" in one_line_error(err)


def test_sample_keeps_non_ascii_class_names(tmp_path, capsys):
    from clihelp import TINY, run_cli
    from conftest import write_image

    for name in ("été chaud", "雪"):
        for i in range(3):
            write_image(tmp_path / "data" / name / f"{i}.png", seed=i)
    run = tmp_path / "run"
    assert run_cli(capsys, "fit", "--data", tmp_path / "data", "--out", run, "--steps", 2, *TINY)[0] == 0
    code, _, err = run_cli(capsys, "sample", run, "--n", 2, "--per-class", "--out", tmp_path / "syn")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == sorted(["été chaud", "雪"])
    assert all(len(list(p.iterdir())) == 2 for p in (tmp_path / "syn").iterdir())


@pytest.mark.slow
def test_export_out_never_overwrites_without_force_and_says_where_it_cannot_write(tmp_path, exported, capsys):
    target = tmp_path / "deploy" / "leaves.onnx"
    assert run_cli(capsys, "export", exported, "--out", target)[0] == 0
    assert read_metadata(target)["pair"] == "leaves-discriminator.onnx"
    before = target.read_bytes()
    code, _, err = run_cli(capsys, "export", exported, "--out", target)
    assert code == 2 and "exists" in one_line_error(err) and target.read_bytes() == before
    assert run_cli(capsys, "export", exported, "--out", target, "--force")[0] == 0
    folder = tmp_path / "deploy"  # a folder gets the run's file names, so score and Sampler find the pair there
    assert run_cli(capsys, "export", exported, "--out", folder)[0] == 0
    assert read_metadata(folder / "generator.onnx")["pair"] == "discriminator.onnx"
    assert run_cli(capsys, "export", exported, "--out", tmp_path / "new")[0] == 0  # a name without .onnx: a folder
    assert (tmp_path / "new" / "generator.onnx").is_file() and (tmp_path / "new" / "discriminator.onnx").is_file()
    assert run_cli(capsys, "export", exported, "--out", exported)[0] == 0  # the run's own files are its to replace
    (tmp_path / "a-file").write_text("mine")
    code, _, err = run_cli(capsys, "export", exported, "--out", tmp_path / "a-file" / "g.onnx")
    assert code == 2 and "cannot write here" in one_line_error(err) and (tmp_path / "a-file").read_text() == "mine"
