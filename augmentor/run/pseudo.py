"""The unlabelled images a `fit --unlabeled` run kept, with their pseudo-labels."""

from __future__ import annotations

from pathlib import Path

from .. import data
from ..errors import ConfigError
from ..semi.unlabeled import pseudo_labelled
from ..store import legacy
from ..store.rundir import read_config
from .prepare import stored_training_images, stored_unlabeled


def _kept_unlabeled(run_dir) -> tuple:
    """(the unlabelled images, their stored PseudoLabels, the class names) of a `fit --unlabeled` run."""
    out = Path(run_dir)
    config = read_config(out)
    if not legacy.section(config, "unlabeled", {}).get("unlabeled"):
        raise ConfigError(f"{out}: did not learn from unlabelled images (fit it with --unlabeled SOURCE)")
    data_cfg, labelled = stored_training_images(out, config)
    return (*stored_unlabeled(out, config, labelled, data_cfg), labelled.class_names)


def pseudo_labelled_images(run_dir) -> data.ImageSet:
    """The unlabelled images a `fit --unlabeled` run kept, with their pseudo-labels: self-training data, which
    `augmentor bench` found to help a classifier more than synthetic images. Mix them into
    your training batches as you would more labelled images."""
    images, pseudo, names = _kept_unlabeled(run_dir)
    return pseudo_labelled(images, pseudo, names)


def pseudo_labels_table(run_dir) -> tuple:
    """The unlabelled images a run kept, as rows (file path or index in the source, class name, confidence), and
    the check of their labels on held-out labelled images (a LabelCheck; None for a run fitted before there was
    one): what `augmentor pseudo-labels` writes and says."""
    images, pseudo, names = _kept_unlabeled(run_dir)
    rows = [
        (images.paths[i] if images.paths else i, names[label], round(confidence, 5))
        for i, label, confidence in zip(pseudo.index.tolist(), pseudo.labels.tolist(), pseudo.confidence.tolist())
    ]
    return rows, pseudo.check
