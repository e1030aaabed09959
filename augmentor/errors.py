"""The exceptions a user can cause. The CLI prints their message on one line and exits 2."""

from pathlib import Path


class AugmentorError(Exception):
    """Base class: bad input, never a bug. The message tells the user what to do."""

    exit_code = 2  # what the CLI exits with


class DataError(AugmentorError, ValueError):
    """The dataset cannot be read or is unusable (missing, empty, corrupt, wrong layout)."""


class ConfigError(AugmentorError, ValueError):
    """A flag or argument has a value we do not support."""


class ModelFileError(AugmentorError, ValueError):
    """A checkpoint, run directory or ONNX file is missing, torn, foreign or incompatible."""


class RunDirError(AugmentorError, OSError):
    """The run directory cannot be used (exists, locked, not writable, is a file)."""


class TrainingDiverged(AugmentorError):
    """The loss went NaN/inf again right after a rollback; the good checkpoints are kept."""

    exit_code = 1


class Interrupted(AugmentorError):
    """Ctrl-C during fit: a checkpoint was written; the message says how to resume."""

    exit_code = 130


def writable_folder(folder, error_class=None):
    """Create ``folder`` (and its parents) for an output, or raise the one-line error every command gives."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(folder, e, error_class) from None


def cannot_write(path, error: OSError, error_class=None) -> AugmentorError:
    """The one wording for an output that cannot be written (``error_class``: ConfigError by default)."""
    return (error_class or ConfigError)(f"{path}: cannot write here ({error.strerror or error})")
