"""Images on disk into one uint8 tensor with labels and class names; subsets; classical augmentation."""

from __future__ import annotations

from .images import (  # noqa: F401
    BUILTIN_DIGITS,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    SUPPORTED_SIZES,
    VALUE_RANGES,
    ImageSet,
    convert_range,
    tanh_to_uint8,
    tanh_to_unit,
    uint8_to_tanh,
    unit_to_tanh,
)
from .sources import absolute_source, check_split, is_missing, load  # noqa: F401
from .splits import carve_validation, per_class_subset, select_classes, stratified_split  # noqa: F401
