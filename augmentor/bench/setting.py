"""One (shot, seed) setting of the bench: its GANs, its arms' classifiers, their scores."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from .. import data, run
from ..config import InitConfig, TrainConfig, UnlabeledConfig
from ..data import augmentation as augmentation_
from ..gan import distributed
from ..mix.loader import SyntheticMix
from ..onnx.sampler import Sampler
from ..semi.classifier import predict, train_classifier
from ..semi.unlabeled import drop_labelled, pseudo_label, pseudo_labelled, read_pseudo_labels
from .arms import ARM_BY_ID, ARMS, CHOSEN, Arm
from .presets import Preset
from .protocol import (
    UNLABELED_REST,
    Split,
    carve_validation,
    choose_training_images,
    chosen_on_validation,
    imbalanced,
    rest_of_pool,
    scores,
)


@dataclass
class SettingResult:
    """The numbers of one (shot, seed) setting: what results.json keeps."""

    shot: object
    seed: int
    train_images: int
    val_images: int
    imbalanced: bool
    augmentation: str  # the classical pipeline the arms used: a file, "preset" or "none" (chosen on validation)
    augmentation_val: Optional[dict]  # the validation scores that chose it (None for a user's file)
    gan_seconds: float
    pseudo_labels: Optional[dict]  # with unlabelled images, per labeller (classifier, gan): kept, per class, right
    arms: dict  # arm name → scores on the held-out test set
    val_balanced_accuracy: dict  # ratio of arm E → balanced accuracy on the validation images
    chosen_ratio: float
    gan_run: str


@dataclass
class SettingSamples:
    """The tensors of one setting, for the quality measures and pictures; never written to JSON."""

    synthetic: dict  # generator name ("gan", "unlabeled", "plain") → its samples
    train: data.ImageSet


def run_setting(
    split: Split,
    shot,
    seed: int,
    preset: Preset,
    out: Path,
    device: str,
    progress: bool,
    coverage: Optional[float] = None,
    augment_file: Optional[Path] = None,
    unlabeled: Optional[data.ImageSet] = None,
    init: Optional[InitConfig] = None,
    unlabeled_shares: Optional[str] = None,
) -> tuple:
    """Train the GANs and every arm's classifier for one (shot, seed). Returns (SettingResult, SettingSamples).
    ``unlabeled``: unlabelled images for the U and SELF arms; ``UNLABELED_REST`` takes the pool images outside
    this setting's draw. ``init``: the run our GANs start from (fit --init; the model's width is then the run's)."""
    pool = split.pool
    chosen = choose_training_images(pool, shot, seed)
    labels_known = unlabeled is UNLABELED_REST  # then how many pseudo-labels are right can be counted
    if unlabeled is UNLABELED_REST:
        unlabeled = rest_of_pool(pool, chosen)
    train, val = carve_validation(pool.subset(chosen), seed)
    x_train, y_train = data.uint8_to_tanh(train.images), train.labels
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    x_val, y_val = data.uint8_to_tanh(val.images), val.labels.numpy()
    k = pool.num_classes
    is_imbalanced = imbalanced(train)

    # The GANs see this setting's training images only.
    def train_gan(name: str, train_cfg: TrainConfig, options: dict, unlabeled_images=None, start=None) -> Sampler:
        directory = out / "runs" / f"{name}shot{str(shot).replace('%', 'pct')}-seed{seed}"
        run.fit(
            directory,
            train,
            train_cfg,
            options if start else {"width": preset.width, **options},
            unlabeled=unlabeled_images,
            init=start,
            pseudo_options=pseudo_options,
            device=device,
            force=True,
            progress=progress,
            sample_every=max(1, preset.gan_steps // 4),
            checkpoint_every=preset.gan_steps,
            world=distributed.World(),  # a setting's GANs train in its own process, whatever torchrun says
        )
        return Sampler(directory, device="cpu")

    pseudo_options = UnlabeledConfig(  # the labellers augment as the arms do: with the user's --augment file, if any
        pseudo_threshold=preset.pseudo_threshold,
        pseudo_steps=preset.pseudo_steps,
        labeller_steps=preset.labeller_steps,
        pseudo_augment=str(augment_file) if augment_file is not None else None,
        unlabeled_shares=unlabeled_shares,
    )
    t0 = time.time()
    ours = TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, lr=preset.gan_lr, seed=seed, coverage=coverage)
    gans = {"gan": train_gan("", ours, {}, start=init)}
    gan_seconds = time.time() - t0
    pseudo_record, pseudo_sets = None, {}
    if unlabeled is not None:  # the GAN that also learns from the unlabelled images, through pseudo-labels
        unlabeled = drop_labelled(unlabeled, train)
        gans["unlabeled"] = train_gan("unlabeled-", ours, {}, unlabeled, start=init)
        by_gan = read_pseudo_labels(gans["unlabeled"].path.parent)
        # Self-training's labels, the baseline: the classifier alone (the same seed, so the same classifier the
        # semi-supervised GAN started from)
        by_classifier = pseudo_label(train, unlabeled, replace(pseudo_options, pseudo_labeller="classifier"), seed=seed)
        pseudo_record = {}
        for source_name, labeller, pseudo in (("pseudo", "classifier", by_classifier), ("pseudo-gan", "gan", by_gan)):
            pseudo_sets[source_name] = pseudo_labelled(unlabeled, pseudo, train.class_names)
            record = pseudo_record[labeller] = pseudo.record(train.class_names)
            if labels_known:  # (--unlabeled-rest) how many are right
                record["right"] = round(float((unlabeled.labels[pseudo.index] == pseudo.labels).float().mean()), 4)
    if preset.reference:  # the tutorials' recipe, same budget: per-class DCGANs, BCE, no DiffAugment, EMA or spectral norm
        gans["plain"] = train_gan(
            "plain-",
            TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, seed=seed, diffaug="", ema_decay=0.0, coverage=0.0),
            {"mode": "per-class" if k >= 2 else "unconditional", "spectral_norm": False},
        )
    y_syn = torch.arange(preset.n_synthetic) % k
    x_syn = {name: g.sample(preset.n_synthetic, y_syn, seed=seed) for name, g in gans.items()}

    def source(name: str, aug, synthetic_augmented: bool):
        """What replaces a share of the batches: real images re-drawn (augmented like the rest of the batch,
        ``aug``), or a generator's images, through ``aug`` too where the arm says so."""
        if name == "real":
            return augmentation_.RealResampler(train, aug)
        if name in pseudo_sets:
            return augmentation_.RealResampler(pseudo_sets[name], aug)
        return augmentation_.AugmentedSamples(gans[name], aug) if synthetic_augmented and aug is not None else gans[name]

    def evaluate(model):  # on the held-out test set
        return scores(predict(model, x_test), y_test)

    def fit_clf(arm: Arm):
        return train_classifier(
            x_train, y_train, k, steps=preset.clf_steps, batch_size=preset.batch_size, seed=seed, batches=batches(arm)
        )

    # The classical pipeline: the user's (--augment), else the preset or none, whichever scores better on validation.
    augmentation_val = None
    augmentation = str(augment_file) if augment_file is not None else "preset"  # no file: validation decides, below
    make_aug = lambda: augmentation_.pipeline_or_preset(augment_file, pool.channels, seed)  # noqa: E731

    def batches(arm: Arm):
        """The arm's training batches: real (balanced or not), classically augmented, a share replaced."""
        ds = TensorDataset(x_train, y_train)
        weights = (
            (1.0 / torch.bincount(y_train, minlength=k).clamp(min=1).float())[y_train] if arm.balanced else torch.ones(len(ds))
        )
        draw = WeightedRandomSampler(
            weights, preset.clf_steps * preset.batch_size, replacement=True, generator=torch.Generator().manual_seed(seed)
        )
        loader = DataLoader(ds, batch_size=preset.batch_size, sampler=draw)
        aug = make_aug() if arm.classical and augmentation != "none" else None
        base = augmentation_.AugmentedBatches(loader, aug) if aug is not None else loader
        if not arm.mix:
            return iter(base)
        sources = [source(name, aug, arm.synthetic_augmented) for name in arm.mix]
        extra = sources[0] if len(sources) == 1 else augmentation_.SharedSource(sources)
        labels = "balanced" if is_imbalanced else "match"  # imbalanced data: the extra images top up the rare classes
        return iter(SyntheticMix(base, extra, ratio=arm.ratio, labels=labels, transform=data.unit_to_tanh, seed=seed))

    models = {ARM_BY_ID["A"].name: fit_clf(ARM_BY_ID["A"])}
    if augment_file is None:
        with_preset = fit_clf(ARM_BY_ID["B"])
        val_probs = {"none": predict(models[ARM_BY_ID["A"].name], x_val), "preset": predict(with_preset, x_val)}
        augmentation_val = {name: scores(probs, y_val)["balanced_accuracy"] for name, probs in val_probs.items()}
        # The preset unless "none" did better beyond the validation's noise: a narrow win on a few validation
        # images is no evidence against the domain default.
        augmentation = chosen_on_validation(val_probs, y_val, default="preset")
        models[ARM_BY_ID["B"].name] = with_preset if augmentation == "preset" else models[ARM_BY_ID["A"].name]

    available = {"real", *gans, *pseudo_sets}
    for arm in ARMS:
        if arm.name in models or (arm.balanced and not is_imbalanced) or not arm.sources <= available:
            continue
        if arm.cas:
            models[arm.name] = train_classifier(x_syn[arm.cas], y_syn, k, steps=preset.clf_steps, seed=seed)
        else:
            models[arm.name] = fit_clf(arm)
    arms = {name: evaluate(m) for name, m in models.items()}

    # E: the ratio is chosen on the validation images; the test set plays no part.
    e_models = {0.0: models[ARM_BY_ID["B"].name], **{a.ratio: models[a.name] for a in ARMS if a.mix == ("gan",) and a.classical}}
    e_probs = {r: predict(m, x_val) for r, m in e_models.items()}
    val_scores = {r: scores(probs, y_val)["balanced_accuracy"] for r, probs in e_probs.items()}
    best = chosen_on_validation(e_probs, y_val, default=0.0)  # ratios in increasing order: ties to the smaller
    arms[CHOSEN.name] = evaluate(e_models[best])
    result = SettingResult(
        shot=shot,
        seed=seed,
        train_images=len(train),
        val_images=len(val),
        imbalanced=is_imbalanced,
        augmentation=augmentation,
        augmentation_val=augmentation_val,
        gan_seconds=round(gan_seconds, 1),
        pseudo_labels=pseudo_record,
        arms={a.name: arms[a.name] for a in (*ARMS, CHOSEN) if a.name in arms},  # in table order
        val_balanced_accuracy={str(r): v for r, v in val_scores.items()},
        chosen_ratio=best,
        gan_run=str(gans["gan"].path.parent),
    )
    return result, SettingSamples(x_syn, train)
