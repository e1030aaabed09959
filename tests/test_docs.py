"""The documentation and the public surface cannot drift from the code."""

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch

import augmentor
from augmentor.cli import cli

REPO = Path(__file__).resolve().parents[1]


def _reference_section(command: str) -> str:
    text = (REPO / "docs" / "cli.md").read_text()
    reference = text[text.index("## Options reference") :]
    match = re.search(rf"### `augmentor {command}\b.*?(?=\n### |\Z)", reference, re.S)
    assert match, f"docs/cli.md has no reference section for `augmentor {command}`"
    return match.group(0)


@pytest.mark.parametrize("name", list(cli.commands))
def test_docs_cli_lists_every_option_help_prints(name):
    command = cli.commands[name]
    with click.Context(command, info_name=name, terminal_width=10_000, max_content_width=10_000) as ctx:  # no wrapping
        help_text = command.get_help(ctx)
    options = help_text[help_text.index("Options:") :].splitlines()[1:]
    columns = [re.match(r"\s+((?:-[-\w]+(?: [A-Z_\[\]|0-9]+)?\s*(?:/|,)?\s*)+)", line) for line in options]
    printed = {flag for m in columns if m for flag in re.findall(r"--[a-z][a-z0-9-]*", m.group(1))} - {"--help"}
    assert len(printed) >= len([p for p in command.params if isinstance(p, click.Option)]) - 1
    section = _reference_section(name)
    missing = sorted(flag for flag in printed if f"`{flag}`" not in section)
    assert not missing, f"docs/cli.md lacks {missing} of `augmentor {name}`: run scripts/cli_reference.py"


def test_docs_cli_reference_is_what_the_cli_declares():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    assert cli_reference.documented() == (REPO / "docs" / "cli.md").read_text(), "run scripts/cli_reference.py"


def test_readme_is_short_and_examples_use_the_root_api():
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 10_000
    code = (
        "\n".join(re.findall(r"```python\n(.*?)```", readme, re.S)) + (REPO / "examples" / "mix_into_dataloader.py").read_text()
    )
    assert "from augmentor import" in code
    assert not re.search(r"(from|import) augmentor\.\w+", code), "README and examples import from the package root only"


def test_root_exports_the_public_api_lazily():
    probe = "import sys, augmentor; print(sorted(m for m in ('torch', 'onnxruntime', 'albumentations') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"  # the root is cheap: heavy modules load on first use of a name
    for name in augmentor.__all__:
        assert getattr(augmentor, name) is not None
    from augmentor.mix.loader import SyntheticMix

    assert augmentor.SyntheticMix is SyntheticMix and "SyntheticMix" in dir(augmentor)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        augmentor.Nope  # noqa: B018
    # no subpackage shares a public name: importing every one leaves each export what it was
    probe = "import pkgutil, importlib, augmentor; [importlib.import_module(m.name) for m in pkgutil.walk_packages(augmentor.__path__, 'augmentor.') if not m.name.endswith('__main__')]; import augmentor as a; print(callable(a.bench), callable(a.fit))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split() == [
        "True",
        "True",
    ]


def test_distribution_name_is_declared_once():
    import tomllib  # noqa: F401 (py3.11+; CI runs 3.11)

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == augmentor.DISTRIBUTION != "augmentor"


@pytest.mark.slow
def test_the_example_script_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """examples/mix_into_dataloader.py at a tiny budget: fits its GAN on the 200 digits, trains both arms, and
    prints two held-out accuracies well above chance (0.1)."""
    import runpy

    from conftest import dataset

    monkeypatch.setenv("AUGMENTOR_DATASETS", str(dataset("mnist-t10k").parent))
    monkeypatch.setattr(
        sys, "argv", ["mix_into_dataloader.py", "--run", str(tmp_path / "run"), "--gan-steps", "2", "--epochs", "3"]
    )
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(REPO / "examples" / "mix_into_dataloader.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # the script sets its own
    out = capsys.readouterr().out
    accuracies = [float(line.split()[-1]) for line in out.splitlines() if line.startswith(("real only:", "real + 30 %"))]
    assert len(accuracies) == 2 and all(a > 0.3 for a in accuracies), out
    assert len(json.loads((tmp_path / "run" / "holdout.json").read_text())["train_index"]) == 200
