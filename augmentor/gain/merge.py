"""`augmentor bench-merge`: benches of one protocol run apart (a seed each, on other machines or days) judged as one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import ConfigError, writable_folder
from ..store import outputs
from . import report
from .arms import ARM_BY_NAME, CHOSEN
from .report import RESULTS, describe
from .runner import check_new_out, recommend_ratio, write_report
from .setting import SettingResult

# what must agree for benches run apart to be one bench; the preset's seeds are what they split
SAME_PROTOCOL = ("source", "size", "test_images", "pool_images", "primary_metric", "preset")


def merge(directories: list, out) -> dict:
    """One report from benches of the same data and protocol run apart (a seed each, on different machines or
    days): their settings together, the statistics, ratio and verdict over all of them, written into ``out``, a new
    folder. The sample pictures and quality measures are the first bench's. Returns the merged results.json."""
    out, directories = Path(out), [Path(d) for d in directories]
    if len(directories) < 2:
        raise ConfigError("give two or more bench folders to merge")
    check_new_out(out)
    parts = []
    for d in directories:
        if not (d / RESULTS).is_file():
            raise ConfigError(f"{d}: no {RESULTS}; give folders that augmentor bench wrote")
        try:
            parts.append(json.loads((d / RESULTS).read_text()))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{d / RESULTS}: cannot be read ({e})") from None
    first = parts[0]
    for d, part in zip(directories, parts):  # a file of another version, or not a bench's, fails here in one line
        try:
            part["env"]["preset"], [SettingResult(**s) for s in part["settings"]]
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{d / RESULTS}: not a results.json this augmentor can read ({e})") from None
    recipe = {k: v for k, v in first["env"]["preset"].items() if k != "seeds"}
    for d, part in zip(directories[1:], parts[1:]):
        for key in SAME_PROTOCOL:
            if part.get(key) != first.get(key):
                raise ConfigError(
                    f"{d}: {key} {part.get(key)!r}, not {first.get(key)!r} as in {directories[0]}; merge benches of one protocol only"
                )
        if {k: v for k, v in part["env"]["preset"].items() if k != "seeds"} != recipe:
            raise ConfigError(
                f"{d}: trained with other preset settings than {directories[0]}; merge benches of one protocol only"
            )
        if set(part["arms"]) != set(first["arms"]):
            raise ConfigError(
                f"{d}: other arms than {directories[0]} (another augmentor version?); merge benches of one protocol only"
            )
    shot_order = [str(s) for s in dict.fromkeys(s["shot"] for part in parts for s in part["settings"])]
    results = sorted(
        (SettingResult(**s) for part in parts for s in part["settings"]), key=lambda r: (shot_order.index(str(r.shot)), r.seed)
    )
    keys = [(str(r.shot), r.seed) for r in results]
    if len(set(keys)) < len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(
            f"{describe(twice[0])}, seed {twice[1]}: in more than one of the benches; merge benches of different seeds"
        )
    summary = report.summarize(results)
    helped, lines = report.verdict(summary, first["primary_metric"], ARM_BY_NAME, CHOSEN.name)
    seeds = sorted({r.seed for r in results})
    merged = {
        **first,
        "recommended_ratio": recommend_ratio(results) if helped else 0.0,
        "chosen_ratio_per_seed": [r.chosen_ratio for r in results],
        "augmentation_per_seed": [r.augmentation for r in results],
        "synthetic_helped": helped,
        "summary": summary,
        "notes": [*dict.fromkeys(n for part in parts for n in part["notes"])],
        "settings": [dataclasses.asdict(r) for r in results],
        "wall_seconds": round(sum(part["wall_seconds"] for part in parts), 1),
        "env": {
            **first["env"],
            "preset": {**first["env"]["preset"], "seeds": seeds},
            "merged_from": [str(d) for d in directories],
        },
    }
    writable_folder(out)
    grids = {shot: report.grid_name(shot) for shot in summary if (directories[0] / report.grid_name(shot)).is_file()}
    for name in ("nearest_neighbours.png", *grids.values()):
        if (directories[0] / name).is_file():
            outputs.write(out / name, lambda f, src=directories[0] / name: f.write(src.read_bytes()))
    write_report(out, merged, lines, grids)
    return merged
