"""Every fit option, declared once in config.py, walked through --resume with a value that contradicts the
stored run: run-time settings are accepted, --steps may only grow, everything else is refused by its flag."""

import json
import shutil

import pytest
from clihelp import one_line_error, run_cli

from augmentor.config import FIT_CONFIGS, FIXED, FREE, GROW, MOVE, SECTIONS, declared

OPTIONS = declared(*FIT_CONFIGS)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    code = _cli(["fit", "--out", out, "--steps", 4, "--checkpoint-every", 2, "--width", 8, "--nz", 16, "--batch-size", 8])
    assert code == 0
    return out


def _cli(argv) -> int:
    from augmentor.cli import main

    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return 0


def _stored(run, d):
    cfg = json.loads((run / "config.json").read_text())
    have = cfg[SECTIONS[d.owner]].get(d.name) if d.owner in SECTIONS else d.default
    return cfg["model"].get(d.name, cfg["train"].get(d.name)) if have is None else have


def _other(d, have):
    """A value of the option's type that differs from ``have``."""
    if d.option.choices:
        return next(c for c in d.option.choices if c != have)
    if "bool" in d.field.type:
        return not have
    if "int" in d.field.type:
        return (have or 4) + 1
    if "float" in d.field.type:
        return (have or 0.0) + 0.125
    return "cpu" if d.name == "device" else f"{have}-other"


def _argv(d, value) -> list:
    if "bool" in d.field.type:
        return [d.flag if value else f"--no-{d.flag[2:]}"] if d.option.switch else ([d.flag] if value else [])
    return [d.flag, value]


def test_every_option_is_covered_by_a_resume_rule():
    assert {d.option.on_resume for d in OPTIONS} <= {FIXED, FREE, GROW, MOVE}
    assert len({d.name for d in OPTIONS}) == len(OPTIONS)  # field names are the CLI's parameter names: unique
    assert len(OPTIONS) >= 25  # data, model, train and run-time options, all declared


@pytest.mark.parametrize("d", OPTIONS, ids=[d.flag for d in OPTIONS])
def test_resume_with_a_contradicting_value(d, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = (run / "config.json").read_text()
    have = _stored(run, d)
    if d.option.on_resume == GROW:
        code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", "--no-export", d.flag, have - 1)
        assert code == 2 and f"{d.flag} {have - 1}" in one_line_error(err)
        assert (run / "config.json").read_text() == before
        code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", "--no-export", d.flag, have + 2)
        assert code == 0, err
        assert json.loads((run / "config.json").read_text())["train"]["steps"] == have + 2
        return
    value = _other(d, have)
    no_export = [] if d.name == "export" else ["--no-export"]
    code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", *no_export, *_argv(d, value))
    if d.option.on_resume == FREE:
        assert code == 0, err
        assert (run / "config.json").read_text() == before  # run-time settings are not part of the run
    else:
        assert code == 2, err
        line = one_line_error(err)
        assert " ".join(map(str, _argv(d, value))) in line, line  # the flag as the user typed it
        moved = d.option.on_resume == MOVE and have is not None  # a new place for images the run has: it must hold them
        assert ("no such file" if moved else "contradicts") in line, line
        assert (run / "config.json").read_text() == before


def test_resume_accepts_the_values_the_run_already_has(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    same = [
        a
        for d in declared(*SECTIONS)
        if d.option.on_resume == FIXED and _stored(run, d) is not None
        for a in _argv(d, _stored(run, d))
    ]
    code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", "--no-export", *same)
    assert code == 0, err


def test_config_json_is_the_source_of_truth(finished_run, tmp_path, capsys):
    """A checkpoint whose model disagrees with config.json (an altered run directory) is refused."""
    import torch

    from augmentor.store import checkpoint

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for path in checkpoint.list_checkpoints(run / "checkpoints"):
        state = torch.load(path, weights_only=True)
        state["model_config"]["nz"] = 99
        torch.save(state, path)
    code, _, err = run_cli(capsys, "fit", "--out", run, "--resume", "--no-export", "--steps", 6)
    assert code == 2 and "differs from" in one_line_error(err)
