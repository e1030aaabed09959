"""Run the CLI in-process and collect exit code and output."""

from augmentor.cli import main

TINY = ["--width", "8", "--nz", "16", "--batch-size", "8"]


def run_cli(capsys, *args):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]
