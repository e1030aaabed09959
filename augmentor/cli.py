"""`augmentor` command line: each subcommand maps its flags to one library call.

User mistakes (AugmentorError) print one line and exit 2; Ctrl-C during fit exits 130.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from . import __version__
from .anomaly.scorer import DEFAULT_METHOD, METHODS, SCORED_SPLIT
from .config import FIT_CONFIGS, DataConfig, InitConfig, ModelConfig, RunOptions, TrainConfig, UnlabeledConfig, declared
from .errors import AugmentorError
from .gain.options import BenchOptions

log = logging.getLogger("augmentor")


class _OneLine(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        return f"{record.levelname.lower()}: {msg}" if record.levelno >= logging.WARNING else msg


def _setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _click_options(*config_classes, only=None):
    """The click options of every field declared with an Option in config.py (flag, help, type, default);
    ``only``: of these fields."""

    def decorate(f):
        for d in reversed([d for d in declared(*config_classes) if only is None or d.name in only]):
            opt, kind = d.option, d.field.type
            kw = {"help": opt.help, "default": d.default, "show_default": d.default not in (None, "")}
            if "bool" in kind:
                decls = [f"{d.flag}/--no-{d.flag[2:]}" if opt.switch else d.flag]
                kw["is_flag"] = True
            else:
                decls = [d.flag]
                python_type = int if "int" in kind else float if "float" in kind else str
                kw["type"] = click.Choice([str(c) for c in opt.choices]) if opt.choices else python_type
            f = click.option(*decls, d.name, **kw)(f)
        return f

    return decorate


def _rank_zero() -> bool:
    """Under torchrun every process runs the same command: rank 0 speaks for the job."""
    return os.environ.get("RANK", "0") == "0"


def _say(line: str, err: bool = False) -> None:
    if _rank_zero():
        click.echo(line, err=err)


def _typed(values: dict) -> dict:
    """click.Choice hands back strings: give the declared type back (e.g. --size 64 → 64)."""
    by_name = {d.name: d for d in declared(*FIT_CONFIGS)}
    out = {}
    for k, v in values.items():
        d = by_name[k]
        out[k] = int(v) if v is not None and d.option.choices and "int" in d.field.type else v
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="augmentor")
def cli():
    """Synthetic training images for scarce data: fit small GANs, export to ONNX, mix into your DataLoader."""
    _setup_logging()


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/latest"), show_default=True, help="Run directory.")
@_click_options(*FIT_CONFIGS)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest good checkpoint.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace the run in --out, or write beside your files in --out: removes only the files a run listed as its own.",
)
@click.pass_context
def fit(ctx, out, resume, force, **values):
    """Train a GAN on a small image dataset."""
    from . import run

    values = _typed(values)
    if resume:
        # only what the user typed: --resume checks it against the stored run
        given = {k: v for k, v in values.items() if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        done = run.resume(out, given)
    else:
        if values["source"] is None:
            _say("no --data given: using the built-in sklearn:digits (1,797 8×8 digits, 10 classes)")
            values["source"] = DataConfig.source
        pick = lambda cls: {d.name: values[d.name] for d in declared(cls)}  # noqa: E731
        data_cfg = DataConfig(**pick(DataConfig), seed=values["seed"])
        train_cfg = TrainConfig(**pick(TrainConfig))
        unlabeled = UnlabeledConfig(**pick(UnlabeledConfig))
        init = InitConfig(**pick(InitConfig))
        model_options = pick(ModelConfig)
        if init.init:  # the model options not typed come from the run it starts from
            model_options = {
                k: v for k, v in model_options.items() if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE
            }
        done = run.fit(out, data_cfg, train_cfg, model_options, unlabeled=unlabeled, init=init, force=force, **pick(RunOptions))
    _print_run(done)


def _print_run(out: Path) -> None:
    if not _rank_zero():
        return
    from .store.rundir import CHECKPOINTS, LOG, LOSSES_PLOT, MODEL_FILES, PROGRESS_GIF, SAMPLES, sample_grids

    samples = sample_grids(out / SAMPLES)
    click.echo(f"\nrun finished: {out}")
    for label, path in [
        ("samples", samples[-1][1] if samples else None),
        ("progress", out / PROGRESS_GIF),
        ("losses", out / LOSSES_PLOT),
        ("log", out / LOG),
        ("checkpoints", out / CHECKPOINTS),
        ("generator", out / MODEL_FILES["generator"]),
    ]:
        if path is not None and path.exists():
            click.echo(f"  {label:<12}{path}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Generator file (NAME.onnx), or a folder for generator.onnx and discriminator.onnx (default: RUN_DIR).",
)
@click.option("--fp16", is_flag=True, help="Half-precision weights and arithmetic (float32 inputs and outputs).")
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing --out files (the generator, its discriminator, the anomaly files beside them).",
)
def export(run_dir, out, fp16, force):
    """Export a run's EMA generator and its discriminator to ONNX."""
    from .onnx.export import export_run

    res = export_run(run_dir, out, fp16=fp16, force=force)
    click.echo(
        f"generator      {res['generator']}\ndiscriminator  {res['discriminator']}\n"
        f"parity vs torch: max abs diff {res['max_abs_diff']:.2e}"
    )
    if res["anomaly"]:  # so that `augmentor score --model` the exported folder needs no training images
        click.echo("anomaly scoring: " + ", ".join(str(p) for p in res["anomaly"]))


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
def info(model):
    """Print an ONNX model's (or a run's) metadata."""
    from .onnx.metadata import find_model, read_metadata

    for k, v in read_metadata(find_model(model, "generator") if model.is_dir() else model).items():
        click.echo(f"{k:<18}{v}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, required=True, help="Images in all (classes in turn), or per class with --per-class.")
@click.option("--per-class", is_flag=True, help="--n images for every class.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New folder: an ImageFolder tree of PNGs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def sample(model, n, per_class, out, seed, device):
    """Write generated images as an ImageFolder tree (one folder per class)."""
    from .onnx.sampler import Sampler, write_image_folder
    from .store.rundir import check_outside_run_sources

    check_outside_run_sources(out, model)
    counts = write_image_folder(Sampler(model, device=device), n, out, per_class=per_class, seed=seed)
    click.echo(f"wrote {sum(counts.values())} images to {out}/ ({', '.join(f'{k}: {v}' for k, v in counts.items())})")


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="New (or empty) folder for report.md, results.json, plots, GAN runs.",
)
@_click_options(BenchOptions)
@_click_options(UnlabeledConfig, only=("unlabeled_shares",))
@_click_options(InitConfig)  # our GANs start from a run fitted on related data, as with fit
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted bench in --out with the options it started with (give no others): what it finished is loaded, a classifier or GAN cut off goes on from its last checkpoint.",
)
def bench(out, init, freeze_d, resume, **options):
    """Measure the gain of synthetic data for a classifier, against real data, classical augmentation and balancing."""
    from .gain.runner import bench as run_bench

    if resume:
        ctx = click.get_current_context()
        given = [
            p.opts[0]
            for p in ctx.command.params
            if p.name not in ("out", "resume") and ctx.get_parameter_source(p.name).name != "DEFAULT"
        ]
        if given:
            raise click.BadParameter(
                f"--resume continues the bench with the options it started with; leave out {', '.join(given)}",
                param_hint="--resume",
            )
        report = run_bench(out, resume=True)
    else:
        if options["source"] is None:
            _say("no --data given: benchmarking on the built-in sklearn:digits")
        report = run_bench(out, BenchOptions(**options), init=InitConfig(init=init, freeze_d=freeze_d))
    if report:  # else another process of a torchrun job: rank 0 reports
        _print_bench(report, out)


@cli.command("bench-merge")
@click.argument("benches", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="New (or empty) folder for the merged report.md and results.json.",
)
def bench_merge(benches, out):
    """One report from benches of the same data and preset run apart, e.g. a seed each on different machines."""
    from .gain.merge import merge

    _print_bench(merge(list(benches), out), out)


def _print_bench(report: dict, out: Path) -> None:
    """The verdict in a few lines, and where the report is."""
    from .gain.recipes import RECIPES, winning_recipes
    from .gain.report import describe

    verdict = "helped" if report["synthetic_helped"] else "did NOT help"
    click.echo(f"\nsynthetic data {verdict}; recommended ratio {report['recommended_ratio']}")
    for shot, arm_id in winning_recipes(report).items():
        click.echo(f"with unlabelled images, {describe(shot)}: {RECIPES.get(arm_id, arm_id)} won ({arm_id})")
    click.echo(f"report: {out / 'report.md'}")


@cli.command()
@click.option("--model", type=click.Path(path_type=Path), required=True, help="Run directory (or an ONNX file in it).")
@click.option("--data", required=True, help="Images to score (any --data source of fit).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CSV: image, label, score (higher = more anomalous).")
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default=DEFAULT_METHOD,
    show_default=True,
    help="; ".join(f"{name}: {m.summary}" for name, m in METHODS.items())
    + " (check how well each separates on labelled images first).",
)
@click.option("--split", default=SCORED_SPLIT, show_default=True, help="Split of an .npz / IDX source.")
@click.option(
    "--normal-classes",
    default=None,
    help="With labelled data: these classes are normal; prints AUROC/AUPRC and a per-class table, writes an ROC plot.",
)
@click.option(
    "--heatmaps",
    type=click.Path(path_type=Path),
    default=None,
    help="New folder: per image, the image, the generator's reconstruction and where they differ, most anomalous first.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace --out and its OUT.roc.png; in --heatmaps, replace the heat maps an earlier score wrote (your files stay).",
)
def score(model, data, out, method, split, normal_classes, heatmaps, force):
    """Anomaly scores from a trained GAN (the first call on a run computes its references, then reuses them)."""
    from .anomaly.score import score_dataset

    res = score_dataset(model, data, out, method, split, normal_classes, heatmaps, force)
    click.echo(f"scored {res['n']} images → {res['csv']}")
    if "auroc" in res:
        click.echo(f"AUROC {res['auroc']:.4f}   AUPRC {res['auprc']:.4f}   ROC plot: {res['roc_plot']}")
        click.echo(f"{'class':<20} {'n':>6} {'mean score':>11} {'AUROC vs normal':>16}")
        for row in res["per_class"]:
            vs = "(normal)" if row["normal"] else f"{row['auroc']:.4f}"
            click.echo(f"{row['class'][:20]:<20} {row['n']:>6} {row['mean_score']:>11.4g} {vs:>16}")
    if "heatmaps" in res:
        click.echo(f"heat maps: {res['heatmaps']}")


@cli.command("pseudo-labels")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New CSV: image (path or index), label, confidence.")
def pseudo_labels(run_dir, out):
    """The unlabelled images a `fit --unlabeled` run kept, with their pseudo-labels (self-training data)."""
    import csv
    import io

    from .run.pseudo import pseudo_labels_table
    from .store import outputs

    if out.exists():
        raise click.BadParameter(f"{out} exists; choose a new file", param_hint="--out")
    outputs.check_writable(out.parent, "--out")
    rows, check = pseudo_labels_table(run_dir)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "label", "confidence"])
    writer.writerows(rows)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        outputs.write(out, lambda f: f.write(buf.getvalue().encode()))
    except OSError as e:
        raise click.BadParameter(f"cannot write {out} ({e.strerror or e})", param_hint="--out") from None
    click.echo(f"wrote {len(rows)} pseudo-labelled images to {out}")
    if check is None:
        click.echo(
            "warning: their labels were not checked on held-out labelled images (too few labelled images, or a run "
            "fitted before augmentor checked them); look through some of them before relying on them",
            err=True,
        )
    else:
        if check.estimated_precision is not None:
            click.echo(
                f"an estimated {100 * check.estimated_precision:.0f} % of them are labelled right "
                f"(calibrated on {check.validation_images} labelled validation images the labellers did not learn from)"
            )
        warning = check.warning("pseudo-labels")
        if warning:
            click.echo("warning: " + warning, err=True)


def main(argv=None) -> None:
    from .errors import Interrupted

    try:
        cli.main(args=argv, standalone_mode=False)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(e.exit_code)
    except AugmentorError as e:
        _say(f"error: {e}", err=True)  # under torchrun every rank refuses alike: rank 0 says it once
        _record_for_torchrun(f"error: {e}")
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:  # a flag click rejected: one line too, with where to look
        ctx = getattr(e, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # under torchrun: a collective that failed because another process died or hung
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise
        w = f"rank {dist.get_rank()} of {dist.get_world_size()}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        message = (f"error: {w}: another process of this job failed or stopped answering ({first[:200]}); "
                   "the newest checkpoint is kept: run the same command with --resume")  # fmt: skip
        click.echo(message, err=True)
        _record_for_torchrun(message)
        sys.exit(1)
    sys.exit(0)


def _record_for_torchrun(message: str) -> None:
    """Under torchrun, leave our one line in the job's error record, so its failure summary names it (and
    shows no Python traceback: a refused input is not a crash)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        import json
        import time

        record = {"message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(int(time.time()))}}}
        with open(path, "w") as f:
            json.dump(record, f)


if __name__ == "__main__":
    main()
