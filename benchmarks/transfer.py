"""Does a generator started from a run on related data make better training data? (`fit --init`)

MNIST digits 5-9 at 10 and 20 labelled images per class; our GAN from scratch, from a run on digits 0-4
(related: other digits) and, as the negative control, from a run on chest X-rays (gray, same size,
unrelated). Same bench, seeds, steps and classifier for all three; only `--init` differs.

    A=augmentor; D=../../shared/datasets
    $A fit --data $D/mnist-t10k --classes 0,1,2,3,4 --width 32 --steps 1500 --coverage 5 --out runs/digits04
    $A fit --data $D/pneumoniamnist/pneumoniamnist_scarce_normal.npz --width 32 --steps 1500 --out runs/xrays
    for init in scratch digits04 xrays; do
      $A bench --data $D/mnist-t10k --classes 5,6,7,8,9 --shots 10,20 --preset quick \\
               $( [ $init = scratch ] || echo --init runs/$init ) --out results/transfer-$init
      python nearcopies.py results/transfer-$init --data $D/mnist-t10k --classes 5,6,7,8,9
    done
    python transfer.py results/transfer-scratch results/transfer-digits04 results/transfer-xrays

The probes at 10 per class: FreezeD with `$A bench ... --shots 10 --init runs/digits04 --freeze-d 2` (run from
Python before `bench --freeze-d` existed), and, from Python, the quarter budget with `PRESETS["quick-200"] = dataclasses.replace(PRESETS["quick"], gan_steps=200)` and
`preset="quick-200"`, with and without `init`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ARMS = ("E real+aug+syn (chosen)", "E real+aug+syn 0.5", "F synthetic only (CAS)")


def cell(values, scale=100.0) -> str:
    values = [v * scale for v in values]
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benches", type=Path, nargs="+", help="the first is the from-scratch bench")
    args = ap.parse_args()
    results = {b.name: json.loads((b / "results.json").read_text()) for b in args.benches}
    near = {
        b.name: json.loads((b / "nearcopies.json").read_text()) if (b / "nearcopies.json").exists() else [] for b in args.benches
    }
    first = results[args.benches[0].name]
    metric = first["primary_metric"]
    print(f"| shots | GAN start | B real+aug | E chosen | E 0.5 | CAS | near-copies | E chosen − B |\n|{' --- |' * 8}")
    for shot in first["summary"]:
        b = first["summary"][shot]["B real+aug"][metric]["values"]
        for name, res in results.items():
            if shot not in res["summary"]:  # a probe at fewer shot counts
                continue
            s = res["summary"][shot]
            e = s[ARMS[0]][metric]["values"]
            copies = [r["near_copies"] for r in near[name] if str(r["shot"]) == shot and r["gan"] == "labelled only"]
            gain = [x - y for x, y in zip(e, b)]
            row = [shot, name, cell(b), cell(e), cell(s[ARMS[1]][metric]["values"]), cell(s[ARMS[2]][metric]["values"])]
            row += [cell(copies) if copies else "—", f"{statistics.mean(gain) * 100:+.1f}"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
