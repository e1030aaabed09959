"""``python -m augmentor`` and ``torchrun ... -m augmentor fit ...``: the command line."""

from .cli import main

main()
