"""A semi-supervised GAN as the pseudo-labeller: a discriminator that is also a K-class classifier.

Salimans et al. 2016 ("Improved techniques for training GANs"): D's K class logits ℓ(x) double as its
real/fake score, D(x) = Z / (Z + 1) with Z = Σ exp ℓ(x). Labelled images teach the classes (cross-entropy),
every unlabelled image is pushed towards "some class" (high log Σ exp ℓ), the generator's samples towards "no
class", and the generator matches the mean of D's features on real images (feature matching). The samples
land between the classes' dense regions, where the decision boundaries then settle. The classifier's own
confident pseudo-labels are a second supervised term, so this starts from what self-training knows.
`augmentor bench --unlabeled` tells whether its labels or the classifier's serve the user's data better.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..config import SHORT_RUN_LR, ModelConfig
from ..data import augmentation
from ..gan.diffaug import diff_augment
from ..gan.models import Discriminator, Generator
from ..gan.train import resolve_precision
from .classifier import balanced_indices, predict
from .shares import labelled_shares, reweighted

WIDTH = 32  # a small model: it only has to label, and it trains before the user's GAN
BATCH = 64
DIFFAUG = ("translation", "cutout")  # no colour: it is a class cue on leaves
# FixMatch's confidence threshold, and the consistency term's weight against the supervised terms
CONSISTENCY_CONFIDENCE, CONSISTENCY_WEIGHT = 0.95, 3.0


class LabellingGAN(nn.Module):
    """The generator and the classifier-discriminator (D's body, then K logits)."""

    def __init__(self, size: int, channels: int, class_names):
        super().__init__()
        # Batch norm, not spectral norm, in D: spectral norm limits how far apart the K logits can go
        cfg = ModelConfig(size, channels, tuple(class_names), mode="unconditional", width=WIDTH, spectral_norm=False)
        self.cfg = cfg
        self.G, D = Generator(cfg), Discriminator(cfg)
        self.body = D.body
        self.head = nn.Linear(D.feature_dim, len(class_names))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # class logits, as a classifier
        return self.head(self.features(x))


def train_labelling_gan(
    labelled: data.ImageSet,
    unlabeled: data.ImageSet,
    pseudo_images: torch.Tensor,
    pseudo_labels: torch.Tensor,
    steps: int,
    seed: int = 0,
    lr: float = SHORT_RUN_LR,
    without_generator: bool = False,
    consistency: float = CONSISTENCY_WEIGHT,
    augment=None,
    shares=None,
    device="cpu",
) -> LabellingGAN:
    """Train on ``labelled`` (with their labels), ``pseudo_images`` (uint8, with the classifier's confident
    ``pseudo_labels``) and every ``unlabeled`` image. ``without_generator``: no samples and no "generated = no
    class" term, the rest the same: the control that tells what the generator adds. ``consistency``: the weight
    of ``consistency_loss`` on the unlabelled images (0: none, the labeller of augmentor 0.4–0.5). ``augment``: a
    saved albumentations pipeline for the classical augmentation (default: the preset). ``shares``: the class
    shares expected among the unlabelled images (unlabeled.expected_shares; default: the labelled images')."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # layers initialise from the global generator: not the user's
        torch.manual_seed(seed)
        # channels-last, as the user's GAN trains: faster convolutions on the CPU
        model = LabellingGAN(labelled.size, labelled.channels, labelled.class_names).to(device, memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(seed)  # batch draws (on the CPU, where the images are)
    g_device = torch.Generator(device=device).manual_seed(seed)  # noise and DiffAugment
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision("auto", device) == "bf16")
    aug = augmentation.pipeline_or_preset(augment, labelled.channels, seed, "--pseudo-augment")
    shares = labelled_shares(labelled, labelled.num_classes) if shares is None else shares
    shares = None if shares is None else shares.to(device)
    d_params = [*model.body.parameters(), *model.head.parameters()]
    opt_d = torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.G.parameters(), lr=lr, betas=(0.5, 0.999))
    x_lab, x_pseudo, x_unl = (data.uint8_to_tanh(t) for t in (labelled.images, pseudo_images, unlabeled.images))

    def batch(x, labels):  # class-balanced (scarce classes seen as often), classical augmentation
        idx = balanced_indices(labels, BATCH, g)
        return augmentation.augment_batch(aug, x[idx]).to(device), labels[idx].to(device)

    def d_view(x):  # D sees every image through DiffAugment, as in the user's GAN
        with autocast:
            return model.features(diff_augment(x, DIFFAUG, g_device)).float()

    no_labels = torch.zeros(BATCH, dtype=torch.long, device=device)  # the generator is unconditional
    for _ in tqdm(range(steps), desc="pseudo-labelling GAN", unit="step", leave=False):
        (xl, yl), (xp, yp) = batch(x_lab, labelled.labels), batch(x_pseudo, pseudo_labels)
        xu = x_unl[torch.randint(len(x_unl), (BATCH,), generator=g)].to(device)
        z = torch.randn(BATCH, model.cfg.nz, generator=g_device, device=device)  # drawn either way: same random stream
        supervised = F.cross_entropy(model.head(d_view(xl)), yl) + F.cross_entropy(model.head(d_view(xp)), yp)
        loss_d = supervised + F.softplus(-torch.logsumexp(model.head(d_view(xu)), 1)).mean()  # real: some class
        if consistency:
            with torch.no_grad(), autocast:
                plain = model.head(model.features(xu))
            strong = augmentation.augment_batch(aug, xu.cpu()).to(device)
            loss_d = loss_d + consistency * consistency_loss(plain, model.head(d_view(strong)), shares)
        if not without_generator:
            with autocast:
                fake = model.G(z, no_labels).float()
            loss_d = loss_d + F.softplus(torch.logsumexp(model.head(d_view(fake.detach())), 1)).mean()  # fake: none
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if without_generator:
            continue
        for p in d_params:
            p.requires_grad_(False)
        with torch.no_grad():
            target = d_view(xu).mean(0)
        loss_g = (d_view(fake).mean(0) - target).pow(2).mean()  # feature matching
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
    return model.eval()


def consistency_loss(plain_logits: torch.Tensor, augmented_logits: torch.Tensor, shares=None) -> torch.Tensor:
    """FixMatch (Sohn et al. 2020): the class D is sure of on the plain image (≥ CONSISTENCY_CONFIDENCE) is the
    target for the same image augmented; images it is unsure of add nothing but still count in the mean, so the
    term grows as D grows sure. It carries D's labels of the unlabelled images forward as D learns, where the
    classifier's pseudo-labels stay as they were. ``shares``: the labelled class shares, where unequal; D learns
    from balanced batches, so its guesses are reweighted by them first (as its final labels are,
    unlabeled.with_labelled_prior), or it would teach itself to over-call a rare class."""
    confidence, guess = reweighted(plain_logits.detach().float().softmax(1), shares).max(1)
    sure = (confidence >= CONSISTENCY_CONFIDENCE).float()
    return (F.cross_entropy(augmented_logits.float(), guess, reduction="none") * sure).mean()


def label_probabilities(model: LabellingGAN, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, K) of the classifier-discriminator for ``images`` (uint8)."""
    return torch.from_numpy(predict(model, data.uint8_to_tanh(images)))
