"""The GAN: models, losses, DiffAugment, the trainer and its callbacks, warm starts, torchrun."""
