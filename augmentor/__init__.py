"""augmentor: synthetic training images for scarce data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("augmentor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
