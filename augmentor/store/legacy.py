"""What older augmentor versions wrote, read as this version reads its own: every format shim is here, so the
rest of the code knows one format."""

from __future__ import annotations

from pathlib import Path


def model_config(d: dict) -> dict:
    """A ModelConfig's dict: runs written before 0.2 kept G's and D's widths apart (always equal). Returns
    ``d`` in today's form; a run with two widths is refused by the caller (``widths`` says which)."""
    d = dict(d)
    if "g_width" in d:
        d["width"], d["_d_width"] = d.pop("g_width"), d.pop("d_width", None)
    return d


def onnx_metadata(meta: dict) -> dict:
    """ONNX metadata exported before 0.2 had no ``unlabeled_images``, before 0.3 no ``init``."""
    return {"unlabeled_images": "0", "init": "", **meta}


def section(config: dict, name: str, default):
    """A section of config.json that runs older than it lack (``unlabeled`` before 0.2, ``init`` before 0.3)."""
    return config.get(name) or default


def files_by_name(out: Path, layout: dict) -> dict:
    """Runs before 0.11 listed nothing they wrote: their files are the ones named as a run names them
    (``layout``: rundir.RUN_LAYOUT)."""
    return {
        sub: {p.name for p in (out / sub).iterdir() if p.is_file() and (p.name in names or (pattern and pattern.match(p.name)))}
        if (out / sub).is_dir()
        else set()
        for sub, (names, pattern) in layout.items()
    }


def percent_or_dash(fraction) -> str:
    """A results.json from before 0.6 has no share where this version has one."""
    return "–" if fraction is None else f"{100 * fraction:.1f} %"


def arm_record(record: dict, arms_by_name: dict) -> dict:
    """A bench arm from results.json: before 0.11 arms had no id and role (taken from today's arm of that label)."""
    record = {**record, "mix": tuple(record["mix"])}
    if "id" not in record:
        today = arms_by_name.get(record["name"])
        record.update(id=today.id if today else record["name"], role=today.role if today else "synthetic")
    return record
