"""A run: fit, resume, and what it kept."""

from __future__ import annotations

from .fit import fit, train_run  # noqa: F401
from .prepare import (  # noqa: F401
    DEFAULT_COVERAGE,
    SCARCE_PER_CLASS,
    PreparedData,
    model_config_for,
    prepare_data,
    rebuild_gan_set,
    resolve_coverage,
    resolve_device,
    start_from,
    stored_training_images,
    stored_unlabeled,
)
from .pseudo import pseudo_labelled_images, pseudo_labels_table  # noqa: F401
from .resume import resume  # noqa: F401
