"""Unlabelled images: pseudo-labels from a classifier or a semi-supervised GAN."""
