"""The exceptions a user can cause. The CLI prints their message on one line and exits 2."""


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
