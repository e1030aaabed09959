"""A run: fit, resume, and what it kept."""

from __future__ import annotations

from .fit import fit  # noqa: F401
from .prepare import resolve_device  # noqa: F401
from .pseudo import pseudo_labelled_images  # noqa: F401
from .resume import resume  # noqa: F401
