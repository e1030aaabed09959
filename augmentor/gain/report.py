"""The bench's report: statistics over seeds, the verdict, and report.md. Pure functions of the results, so
they can be rendered again from results.json."""

from __future__ import annotations

import statistics

from ..semi.calibration import LabelCheck
from ..store import legacy
from .arms import ARM_BY_NAME, CHOSEN
from .recipes import RECIPES, best_recipe, recipe_code, recorded_arms, winning_recipes

RESULTS, REPORT = "results.json", "report.md"  # what a bench writes beside its plots


def describe(shot) -> str:
    """A shot setting (or its key in results.json) in words."""
    shot = str(shot)
    if shot == "all":
        return "all training images"
    if shot.endswith("%"):
        return f"{shot} of the training images"
    return f"{shot} images per class"


def grid_name(shot) -> str:
    """The file of a shot setting's sample grid beside the report."""
    return f"samples_{str(shot).replace('%', 'pct')}.png"


def summarize(results: list) -> dict:
    """mean ± std over seeds, per shot and arm and metric (``results``: SettingResult records)."""
    table = {}
    for r in results:
        for arm, sc in r.arms.items():
            for metric, v in sc.items():
                table.setdefault(str(r.shot), {}).setdefault(arm, {}).setdefault(metric, []).append(v)
    return {
        shot: {
            arm: {
                m: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "values": v}
                for m, v in ms.items()
            }
            for arm, ms in arms.items()
        }
        for shot, arms in table.items()
    }


def verdict(summary: dict, metric: str, arms_by_name: dict, chosen: str) -> tuple:
    """(did synthetic data help, sentences). The synthetic side is ``chosen`` (arm E at the ratio chosen on
    validation: what a user would deploy, chosen without the test set); the other side is the best arm whose
    record says it uses no synthetic images (the duplicate-real control among them). It counts as a gain only
    when it beats that arm by more than the larger of the two seed spreads."""
    lines, helped = [], False
    for shot, arms in summary.items():
        real_arms = {a: v[metric] for a, v in arms.items() if not arms_by_name[a].uses_gan and arms_by_name[a].role != "ceiling"}
        best_real = max(real_arms, key=lambda a: real_arms[a]["mean"])
        gain = 100 * (arms[chosen][metric]["mean"] - real_arms[best_real]["mean"])
        noise = 100 * max(arms[chosen][metric]["std"], real_arms[best_real]["std"])
        if len(arms[chosen][metric]["values"]) < 2:
            lines.append(
                f"- {describe(shot)}: {chosen} vs the best arm without it ({best_real}): {gain:+.1f} points ({metric}); "
                "one seed only, so no spread to judge a gain by: run more seeds before relying on it."
            )
            lines.extend(_recipe(shot, arms, metric, arms_by_name))
            continue
        if gain > noise:
            helped = True
            lines.append(
                f"- {describe(shot)}: **synthetic data helped**: {chosen} beat {best_real} by {gain:+.1f} points ({metric}; seed spread {noise:.1f})."
            )
        else:
            lines.append(
                f"- {describe(shot)}: **synthetic data did not help**: {chosen} vs the best arm without it ({best_real}): "
                f"{gain:+.1f} points ({metric}), not more than the seed spread of {noise:.1f}."
            )
        lines.extend(_recipe(shot, arms, metric, arms_by_name))
    return helped, lines


def _recipe(shot, arms: dict, metric: str, arms_by_name: dict) -> list:
    """With unlabelled images: does the GAN add to what they give by themselves or to FixMatch, and which recipe
    wins?"""
    ids = {arms_by_name[a].id: a for a in arms}
    self_arm = ids.get("SELF")
    m = {a: arms[a][metric] for a in arms if arms_by_name[a].cas is None}  # recipes that train on real images
    both = max((ids[i] for i in ("SELF+U", "SELF+U-aug") if i in ids), key=lambda a: m[a]["mean"], default=None)
    if self_arm is None or both is None:
        return []

    one_seed = len(m[self_arm]["values"]) < 2

    def versus(a: str, b: str, wins: str, ties: str, loses: str) -> str:
        """'wins', 'ties' or 'loses' (beyond the larger seed spread) with the figures; one seed: no judgement."""
        gain, noise = 100 * (m[a]["mean"] - m[b]["mean"]), 100 * max(m[a]["std"], m[b]["std"])
        if one_seed:
            return f"{a} vs {b} {gain:+.1f} points ({metric}; one seed, no spread to judge by)"
        outcome = wins if gain > noise else loses if -gain > noise else ties
        return f"{outcome}: {a} vs {b} {gain:+.1f} points ({metric}; seed spread {noise:.1f})"

    lines = [
        f"- {describe(shot)}, unlabelled images: the GAN that learnt from them, against self-training, "
        + versus(both, self_arm, "adds to it", "adds nothing measurable", "costs accuracy")
        + "."
    ]
    if "FIX" in ids:
        unlabelled_with_gan = [a for a in m if arms_by_name[a].role == "unlabelled" and arms_by_name[a].uses_gan]
        best_gan = max(unlabelled_with_gan, key=lambda a: m[a]["mean"])
        lines.append(
            "  The best recipe with the GAN, against FixMatch, "
            + versus(best_gan, ids["FIX"], "beats it", "does not beat it measurably", "loses to it")
            + "."
        )
    best = best_recipe(arms, metric, arms_by_name)
    if "POOL" in ids:
        ceiling = m[ids["POOL"]]["mean"]
        lines.append(
            f"  The ceiling, the unlabelled images with their true labels ({ids['POOL']}, {100 * ceiling:.1f}): "
            f"the best recipe {100 * (m[best]['mean'] - ceiling):+.1f} points from it."
        )
    caveat = " (one seed: run more before relying on it)" if one_seed else ""
    lines.append(
        f"  Best recipe here{caveat}: **{RECIPES.get(arms_by_name[best].id, best)}** ({best}, {100 * m[best]['mean']:.1f})."
    )
    return lines


def render(report: dict, lines: list) -> str:
    """report.md from results.json's contents and the verdict's sentences."""
    m = report["primary_metric"]
    md = [
        f"# augmentor bench: {report['source']}",
        "",
        f"Preset `{report['preset']}`, {report['size']} px, {report['pool_images']} pool images, {report['test_images']} held-out "
        f"test images ({'; '.join(report['notes'])}). Seeds {report['env']['preset']['seeds']}; mean ± std over seeds. "
        f"Primary metric: {m.replace('_', ' ')}.",
        "",
        "## Verdict",
        "",
        *lines,
        "",
        *_recipe_section(report),
        f"Recommended mix ratio: **{report['recommended_ratio']}**"
        + (
            " (synthetic data did not help here, so: none)."
            if not report["synthetic_helped"]
            else " (the ratio with the best mean validation score over all settings)."
        ),
        "",
        f"Classical augmentation in the arms: {_augmentation_used(report['augmentation_per_seed'])}.",
        "",
        "Arms: A real · B + classical augmentation · C class-balanced sampling (imbalanced data) · DUP the same batches as E "
        "with the share replaced by re-drawn (augmented) real images instead of synthetic ones — the control that tells "
        '"synthetic helped" from "more real images helped" · D real + synthetic · E real + classical + synthetic '
        "(chosen: the ratio picked on validation, 0 unless a share beat it beyond the validation's noise) · "
        "F synthetic only (CAS) · with unlabelled images: SELF self-training (unlabelled images labelled by the classifier, "
        "mixed in), SELF-G the same with the semi-supervised GAN's labels "
        "(its labels, none of its images), FIX FixMatch (a confident label of a weakly augmented unlabelled image must "
        "hold for a strongly augmented copy), FIX+G the same with the GAN labeller's labels where the classifier is "
        "not yet sure, U the GAN that also learnt from them, SELF+U the GAN's labels and images "
        "(-aug: its images through the classical pipeline too, like the real ones beside them), POOL (--unlabeled-rest) "
        "the unlabelled images with their true labels: the ceiling of the pseudo-label recipes · R "
        "the tutorials' plain GAN at the same budget.",
        "",
        "## Classifier arms (held-out test set)",
        "",
    ]
    for shot, arms in report["summary"].items():
        metric_names = list(next(iter(arms.values())))
        md += [
            f"### {describe(shot)}",
            "",
            "| arm | " + " | ".join(_metric_label(k, report.get("class_names")) for k in metric_names) + " |",
            "| --- |" + " --- |" * len(metric_names),
        ]
        for arm, ms in arms.items():
            md.append(
                f"| {arm} | " + " | ".join(f"{100 * ms[k]['mean']:.1f} ± {100 * ms[k]['std']:.1f}" for k in metric_names) + " |"
            )
        md.append("")
    md += _wall_times(report)
    md += _label_quality(report)
    md += [
        "## Sample quality (first seed; features of a SmallCNN trained on the real pool)",
        "",
        "| shots | FID | KID | precision | recall | near-copies (held-out real) | median NN distance: synthetic→train / test→train |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shot, q in report["quality"].items():
        for label, m in ((shot, q), (f"{shot}, GAN with unlabelled images", q.get("unlabeled_gan"))):
            if m is None:
                continue
            mem = m["memorization"]
            md.append(
                f"| {label} | {m['fid']:.2f} | {m['kid']:.4f} | {m['precision']:.2f} | {m['recall']:.2f} | "
                f"{100 * mem['near_copy_fraction']:.1f} % ({legacy.percent_or_dash(mem.get('test_near_copy_fraction'))}) | "
                f"{mem['syn_to_train_median']:.3f} / {mem['test_to_train_median']:.3f} |"
            )
    md += [
        "",
        "Near-copies: synthetic images nearer to a training image than the median train-to-train nearest-neighbour "
        "distance; in brackets, held-out real images by the same rule (the share a generator that copies nothing "
        "would still show).",
        "",
        "![gain](gain.png)",
        "",
        "![nearest neighbours](nearest_neighbours.png)",
        "",
    ]
    for shot, name in report["sample_grids"].items():
        md += [f"Samples, {describe(shot)} (first seed; one row per class):", "", f"![samples]({name})", ""]
    md += [
        f"GAN runs (checkpoints, all sample grids, logs): {_runs(report)}. Wall time {report['wall_seconds']:.0f} s; "
        f"torch {report['env']['torch']}, augmentor {report['env']['augmentor']}, {env_cpu(report['env'])}.",
        "",
    ]
    return "\n".join(md)


def _runs(report: dict) -> str:
    """Where the GAN runs are: beside the report, or beside each merged bench's."""
    merged = report["env"].get("merged_from")
    return " · ".join(f"`{d}/runs/`" for d in merged) + " (merged benches; wall time their sum)" if merged else "`runs/`"


def _metric_label(metric: str, class_names) -> str:
    """A table header: recall_K names class K where results.json knows the names (benches from 0.13 on)."""
    if metric.startswith("recall_") and class_names:
        return f"recall {class_names[int(metric[len('recall_') :])]}"
    return metric


def _wall_times(report: dict) -> list:
    """What each recipe cost: a recipe that wins by spending ten times as long must say so."""
    settings = [r for r in report.get("settings", []) if r.get("arm_seconds")]  # benches before 0.12 did not time arms
    if not settings:
        return []
    arms = {
        a: statistics.mean(r["arm_seconds"][a] for r in settings if a in r["arm_seconds"]) for a in settings[0]["arm_seconds"]
    }
    waits = [f"the GAN on the labelled images took {statistics.mean(r['gan_seconds'] for r in settings):.0f} s"]
    for what, seconds in (
        ("the classifier labelling the unlabelled images (SELF)", lambda r: r["pseudo_labels"]["classifier"].get("seconds")),
        ("the classifier and the semi-supervised GAN (SELF-G, FIX+G, U)", lambda r: r["pseudo_labels"]["gan"].get("seconds")),
        ("the GAN on the pseudo-labelled images after them (U)", lambda r: r.get("unlabeled_gan_seconds")),
    ):
        timed = [seconds(r) for r in settings if r.get("pseudo_labels")]
        if timed and None not in timed:  # benches before 0.17 did not time the labellers
            waits.append(f"{what} {statistics.mean(timed):.0f} s")
    mus = [r["fixmatch"]["mu"] for r in settings if r.get("fixmatch")]
    lines = [
        f"Wall time per arm (mean over settings, s; an arm that needs a GAN or a labeller also waits for it — {'; '.join(waits)}): "
        + " · ".join(f"{ARM_BY_NAME[a].id if a in ARM_BY_NAME else a} {t:.0f}" for a, t in arms.items()),
    ]
    if mus:
        lines.append(f"FIX trains once per μ it chooses from on validation (both count in its time); μ chosen: {mus}.")
    return lines + [""]


def _recipe_section(report: dict) -> list:
    """With unlabelled images: the recipe that won each shot setting, and the lines of code that use it."""
    winners = {}
    for shot, arm_id in winning_recipes(report).items():
        winners.setdefault(arm_id, []).append(shot)
    if not winners:
        return []
    mus = [r["fixmatch"]["mu"] for r in report.get("settings", []) if r.get("fixmatch")]
    md = ["## The recipe that won on your data", ""]
    for arm_id, shots in winners.items():
        md += [f"{', '.join(describe(s) for s in shots)}: **{RECIPES.get(arm_id, arm_id)}**.", ""]
        md += [*recipe_code(arm_id, statistics.mode(mus) if mus else 3), ""]
    return md


def _label_quality(report: dict) -> list:
    """How many of each labeller's kept labels are right: the estimate from the validation images (what a user
    without true labels gets) and, with --unlabeled-rest, the truth beside it."""
    settings = [r for r in report.get("settings", []) if r.get("pseudo_labels")]
    if not settings:
        return []
    md = [
        "## Pseudo-labels: how many are right",
        "",
        "| labeller | kept | mean confidence | estimated right (calibrated on the validation images) | right (true labels) |",
        "| --- | --- | --- | --- | --- |",
    ]
    warnings = []
    for labeller, name in LABELLERS.items():
        records = [r["pseudo_labels"][labeller] for r in settings if labeller in r["pseudo_labels"]]
        if not records:
            continue
        kept = _mean(records, "kept") / _mean(records, "considered")
        estimate = _mean([r.get("check") or {} for r in records], "estimated_precision")
        right, confidence = _mean(records, "right"), _mean(records, "mean_confidence")
        md.append(
            f"| {name} | {100 * kept:.0f} % | {legacy.percent_or_dash(confidence)} | {legacy.percent_or_dash(estimate)} "
            f"| {legacy.percent_or_dash(right)} |"
        )
        checks = [r["check"] for r in records if r.get("check")]
        if checks:
            fewest = min(c["validation_images"] for c in checks)
            warning = LabelCheck(fewest, None, 1.0, estimate).warning(name, "the recipes built on them may lose to B")
            warnings += [f"- {warning}"] if warning else []
    return md + ["", *warnings, *([""] if warnings else [])]


def _mean(records: list, key: str):
    """The mean of ``key`` over the records that have it (None where none has)."""
    found = [r[key] for r in records if r.get(key) is not None]
    return statistics.mean(found) if found else None


LABELLERS = {  # results.json's labellers, as report.md names them
    "classifier": "the classifier (SELF)",
    "gan": "the semi-supervised GAN (SELF-G, FIX+G, SELF+U)",
    "fixmatch": "FIX's classifier, where ≥ 0.95 sure",
}


def _augmentation_used(per_seed: list) -> str:
    counts = {a: per_seed.count(a) for a in dict.fromkeys(per_seed)}
    if len(counts) == 1:
        (name,) = counts
        detail = " (the default: none did not beat it beyond the validation images' noise)" if name == "preset" else ""
        return f"`{name}`{detail}" if name != "none" else "none (the built-in preset scored lower on the validation images)"
    return ", ".join(f"`{a}` in {n} of {len(per_seed)} settings" for a, n in counts.items()) + " (chosen on validation)"


def rerender(directory) -> str:
    """report.md again from a bench's results.json (e.g. after the wording of the verdict changed)."""
    import json
    from pathlib import Path

    directory = Path(directory)
    results = json.loads((directory / RESULTS).read_text())
    arms = recorded_arms(results)
    _, lines = verdict(results["summary"], results["primary_metric"], arms, CHOSEN.name)
    results.setdefault("sample_grids", {})
    for shot in results["summary"]:
        if (directory / grid_name(shot)).exists():
            results["sample_grids"][shot] = grid_name(shot)
    text = render(results, lines)
    (directory / REPORT).write_text(text)
    return text


def env_cpu(env: dict) -> str:
    """The machine a wall time was measured on (reports written before 0.5 name no CPU model)."""
    cpu = f"CPU {env['cpu']} ({env['cpu_precision']} by default), " if "cpu" in env else ""
    return f"{cpu}{env['threads']} thread(s)"
