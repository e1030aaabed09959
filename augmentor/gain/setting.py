"""One (shot, seed) setting of the bench: its GANs, its arms' classifiers, their scores."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from .. import data, run
from ..config import InitConfig, TrainConfig, UnlabeledConfig
from ..data import augmentation as augmentation_
from ..gan import distributed
from ..gan.callbacks import logged_seconds
from ..onnx.sampler import Sampler
from ..semi.calibration import check_labels
from ..semi.classifier import Checkpoints, predict, train_classifier
from ..semi.fixmatch import MU_CHOICES, THRESHOLD, ConsistencyLoss, strong_augmentation
from ..semi.unlabeled import drop_labelled, pseudo_label, pseudo_labelled, read_pseudo_labels
from ..store.rundir import LOG
from .arms import ARM_BY_ID, ARMS, CHOSEN, Arm
from .options import Preset
from .protocol import (
    UNLABELED_REST,
    Split,
    choose_training_images,
    chosen_on_validation,
    classifier_batches,
    imbalanced,
    rest_of_pool,
    scores,
    train_protocol_classifier,
)
from .resume import GAN_CUT_OFF, GAN_FINISHED, SETTINGS, SettingStore, trained_gan


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
    # with unlabelled images, per labeller (classifier, gan, and FIX's classifier): kept, their check, share right
    pseudo_labels: Optional[dict]
    arms: dict  # arm name → scores on the held-out test set
    val_balanced_accuracy: dict  # ratio of arm E → balanced accuracy on the validation images
    chosen_ratio: float
    gan_run: str
    arm_seconds: dict = field(default_factory=dict)  # arm name → its classifier's training time (GANs: gan_seconds)
    fixmatch: Optional[dict] = None  # μ chosen on validation, its validation scores, the share of targets at the end
    unlabeled_gan_seconds: Optional[float] = None  # the U arms' GAN (its labellers' time: pseudo_labels' "seconds")


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
    resume: bool = False,
) -> tuple:
    """Train the GANs and every arm's classifier for one (shot, seed). Returns (SettingResult, SettingSamples).
    ``unlabeled``: unlabelled images for the U and SELF arms; ``UNLABELED_REST`` takes the pool images outside
    this setting's draw. ``init``: the run our GANs start from (fit --init; the model's width is then the run's).
    ``resume``: load the GANs, classifiers and labels an interrupted bench finished instead of training them."""
    pool = split.pool
    chosen = choose_training_images(pool, shot, seed)
    labels_known = unlabeled is UNLABELED_REST  # then how many pseudo-labels are right can be counted
    if unlabeled is UNLABELED_REST:
        unlabeled = rest_of_pool(pool, chosen)
    train, val = data.carve_validation(pool.subset(chosen), seed)
    x_test, y_test = data.uint8_to_tanh(split.test.images), split.test.labels.numpy()
    x_val, y_val = data.uint8_to_tanh(val.images), val.labels.numpy()
    k = pool.num_classes
    pseudo_options = UnlabeledConfig(  # the labellers augment as the arms do: with the user's --augment file, if any
        pseudo_threshold=preset.pseudo_threshold,
        pseudo_steps=preset.pseudo_steps,
        labeller_steps=preset.labeller_steps,
        pseudo_augment=str(augment_file) if augment_file is not None else None,
        unlabeled_shares=unlabeled_shares,
    )
    name = f"shot{str(shot).replace('%', 'pct')}-seed{seed}"
    gan = SettingGans(out / "runs", name, train, val, preset, device, progress, pseudo_options, resume)
    shape = (train.channels, pool.num_classes, train.images.shape[-1])
    store = SettingStore(out / SETTINGS / name, shape, device, checkpoint_every=max(1, preset.clf_steps // 10))

    # The GANs see this setting's training images only.
    ours = preset.gan_recipe(seed, coverage)
    on_labelled = gan.train("", ours, {}, init=init)
    gan_seconds = logged_seconds(on_labelled.path.parent / LOG)  # its training time, across interruptions
    gans = {"gan": on_labelled}
    pseudo_record, pseudo_sets, unlabeled_gan_seconds = None, {}, None
    if unlabeled is not None:  # the GAN that also learns from the unlabelled images, through pseudo-labels
        unlabeled = drop_labelled(unlabeled, train)
        gans["unlabeled"] = gan.train("unlabeled-", ours, {}, unlabeled, init=init)
        unlabeled_gan_seconds = logged_seconds(gans["unlabeled"].path.parent / LOG)
        by_gan = read_pseudo_labels(gans["unlabeled"].path.parent)
        # Self-training's labels, the baseline: the classifier alone (the same seed, so the same classifier the
        # semi-supervised GAN started from)
        by_classifier = store.pseudo_labels(
            "pseudo-classifier",
            lambda: pseudo_label(
                train, unlabeled, replace(pseudo_options, pseudo_labeller="classifier"), seed=seed, validation=val
            ),
        )
        pseudo_record = {}
        for source_name, labeller, pseudo in (("pseudo", "classifier", by_classifier), ("pseudo-gan", "gan", by_gan)):
            pseudo_sets[source_name] = pseudo_labelled(unlabeled, pseudo, train.class_names)
            record = pseudo_record[labeller] = pseudo.record(train.class_names)
            if labels_known:  # (--unlabeled-rest) how many are right
                record["right"] = share_right(unlabeled, pseudo.index, pseudo.labels)
    if preset.reference:  # the tutorials' recipe, same budget: per-class DCGANs, BCE, no DiffAugment, EMA or spectral norm
        gans["plain"] = gan.train(
            "plain-",
            TrainConfig(steps=preset.gan_steps, batch_size=preset.batch_size, seed=seed, diffaug="", ema_decay=0.0, coverage=0.0),
            {"mode": "per-class" if k >= 2 else "unconditional", "spectral_norm": False},
        )
    y_syn = torch.arange(preset.n_synthetic) % k
    x_syn = {name: g.sample(preset.n_synthetic, y_syn, seed=seed) for name, g in gans.items()}

    unlabelled_sources = {} if unlabeled is None else {"unlabeled-images": unlabeled}
    if labels_known:  # the ceiling: the same images with their true labels
        unlabelled_sources["true-labels"] = unlabeled
    sources = {**gans, **pseudo_sets, **unlabelled_sources}
    arms = ArmTraining(train, preset, seed, augment_file, sources, device, progress)
    seconds = {}

    def timed(arm_id: str, train, *args, key: Optional[str] = None, **kwargs) -> tuple:
        """(model, extras) of ``train(*args, **kwargs)``, or as saved; an arm's time adds up over its candidates."""
        model, extras, t = store.classifier(key or arm_id, lambda checkpoints: train(*args, checkpoints=checkpoints, **kwargs))
        seconds[arm_id] = seconds.get(arm_id, 0.0) + t
        return model, extras

    models = {"A": timed("A", arms.classifier, ARM_BY_ID["A"], "none")[0]}
    # The classical pipeline: the user's (--augment), else the preset or none, whichever scores better on validation.
    augmentation_val = None
    augmentation = str(augment_file) if augment_file is not None else "preset"
    if augment_file is None:
        with_preset = timed("B", arms.classifier, ARM_BY_ID["B"], "preset")[0]
        val_probs = {"none": predict(models["A"], x_val), "preset": predict(with_preset, x_val)}
        augmentation_val = {name: scores(probs, y_val)["balanced_accuracy"] for name, probs in val_probs.items()}
        # The preset unless "none" did better beyond the validation's noise: a narrow win on a few validation
        # images is no evidence against the domain default.
        augmentation = chosen_on_validation(val_probs, y_val, default="preset")
        models["B"] = with_preset if augmentation == "preset" else models["A"]
    fixmatch_record = None
    for arm in ARMS:
        if arm.id in models or not arms.runs(arm):
            continue
        if arm.cas:
            models[arm.id] = timed(
                arm.id, train_classifier, x_syn[arm.cas], y_syn, k, steps=preset.clf_steps, seed=seed, device=device,
                progress=arms.progress_label(arm),
            )[0]  # fmt: skip
        elif arm.fixmatch == "own":  # μ chosen on validation: the paper's 3 unless another is clearly better
            candidates = {
                mu: timed(arm.id, arms.fixmatch, arm, augmentation, mu, key=f"{arm.id}-mu{mu}")
                for mu in sorted(MU_CHOICES, reverse=True)
            }
            val_probs = {mu: predict(model, x_val) for mu, (model, _) in candidates.items()}
            mu = chosen_on_validation(val_probs, y_val, default=max(MU_CHOICES))
            models[arm.id], extras = candidates[mu]
            fixmatch_record = {
                "mu": mu,
                "val_balanced_accuracy": {str(m): scores(p, y_val)["balanced_accuracy"] for m, p in val_probs.items()},
                **extras,
            }
            # its classifier as a labeller too: how far its confident labels of the unlabelled images can be trusted
            pseudo_record["fixmatch"] = confident_labels(models[arm.id], unlabeled, val, val_probs[mu], labels_known)
        elif arm.fixmatch == "gan":  # the same μ; the GAN labeller's kept labels where the classifier is not sure
            known = torch.full((len(unlabeled),), -1, dtype=torch.long)
            known[by_gan.index] = by_gan.labels
            mu = fixmatch_record["mu"] if fixmatch_record else max(MU_CHOICES)
            models[arm.id] = timed(arm.id, arms.fixmatch, arm, augmentation, mu, known)[0]
        else:
            models[arm.id] = timed(arm.id, arms.classifier, arm, augmentation)[0]

    def evaluate(model):  # on the held-out test set
        return scores(predict(model, x_test), y_test)

    results = {arm_id: evaluate(m) for arm_id, m in models.items()}
    # E: the ratio is chosen on the validation images; the test set plays no part.
    e_models = {0.0: models["B"], **{a.ratio: models[a.id] for a in ARMS if a.mix == ("gan",) and a.classical}}
    e_probs = {r: predict(m, x_val) for r, m in e_models.items()}
    val_scores = {r: scores(probs, y_val)["balanced_accuracy"] for r, probs in e_probs.items()}
    best = chosen_on_validation(e_probs, y_val, default=0.0)  # ratios in increasing order: ties to the smaller
    results[CHOSEN.id] = evaluate(e_models[best])
    result = SettingResult(
        shot=shot,
        seed=seed,
        train_images=len(train),
        val_images=len(val),
        imbalanced=arms.imbalanced,
        augmentation=augmentation,
        augmentation_val=augmentation_val,
        gan_seconds=round(gan_seconds, 1),
        pseudo_labels=pseudo_record,
        arms={a.name: results[a.id] for a in (*ARMS, CHOSEN) if a.id in results},  # in table order
        val_balanced_accuracy={str(r): v for r, v in val_scores.items()},
        chosen_ratio=best,
        gan_run=str(gans["gan"].path.parent),
        arm_seconds={ARM_BY_ID[i].name: round(t, 1) for i, t in seconds.items()},
        fixmatch=fixmatch_record,
        unlabeled_gan_seconds=None if unlabeled_gan_seconds is None else round(unlabeled_gan_seconds, 1),
    )
    return result, SettingSamples(x_syn, train)


def share_right(unlabeled: data.ImageSet, index: torch.Tensor, labels: torch.Tensor) -> Optional[float]:
    """(--unlabeled-rest, where the unlabelled images' true labels are known) the share of ``labels`` right."""
    return round(float((unlabeled.labels[index] == labels).float().mean()), 4) if len(index) else None


def confident_labels(model, unlabeled: data.ImageSet, val: data.ImageSet, val_probs, labels_known: bool) -> dict:
    """A classifier's labels of the unlabelled images it is at least FixMatch's THRESHOLD sure of, as the labellers'
    records: how many, checked on the validation images (``val_probs``: its probabilities there), and (with
    ``labels_known``) the share right."""
    probs = torch.from_numpy(predict(model, data.uint8_to_tanh(unlabeled.images)))
    confidence, labels = probs.max(1)
    kept = torch.nonzero(confidence >= THRESHOLD).flatten()
    record = {
        "considered": len(probs),
        "kept": len(kept),
        "mean_confidence": round(float(confidence[kept].mean()), 4) if len(kept) else None,
        "check": check_labels(torch.from_numpy(val_probs), val.labels, probs[kept]).record(),
    }
    if labels_known:
        record["right"] = share_right(unlabeled, kept, labels[kept])
    return record


@dataclass(frozen=True)
class SettingGans:
    """Trains a setting's GANs on its training images, each in its own run folder under ``runs``."""

    runs: Path
    name: str  # the setting's: its runs are named by it, after a prefix per GAN
    train_images: data.ImageSet
    validation: data.ImageSet  # the labellers' kept labels are checked on these
    preset: Preset
    device: str
    progress: bool
    pseudo_options: UnlabeledConfig
    reuse: bool = False  # a GAN an interrupted bench finished is loaded, not trained again

    def train(self, prefix: str, train_cfg: TrainConfig, model: dict, unlabeled=None, init=None) -> Sampler:
        directory = self.runs / f"{prefix}{self.name}"
        done = trained_gan(directory, train_cfg) if self.reuse else None
        options = {
            "device": self.device,
            "sample_every": max(1, self.preset.gan_steps // 4),
            "checkpoint_every": max(1, self.preset.gan_steps // 10),  # a bench's GAN may train for an hour on a CPU
            "keep_checkpoints": 1,  # written atomically: the newest is whole
        }
        world = distributed.World()  # a setting's GANs train in its own process, whatever torchrun says
        if done == GAN_CUT_OFF:  # continued from its last checkpoint, with the pseudo-labels it started with
            run.resume(directory, options, images=self.train_images, unlabeled=unlabeled, progress=self.progress, world=world)
        elif done != GAN_FINISHED:
            run.fit(
                directory,
                self.train_images,
                train_cfg,
                model if init else {"width": self.preset.width, **model},
                unlabeled=unlabeled,
                init=init,
                pseudo_options=self.pseudo_options,
                labeller_validation=self.validation,
                force=True,
                progress=self.progress,
                world=world,
                **options,
            )
        return Sampler(directory, device="cpu")


class ArmTraining:
    """Trains an arm's classifier by the protocol (protocol.classifier_batches) on a setting's training images,
    with a share of each batch from the arm's sources: "real" (the training images re-drawn), a generator, or
    pseudo-labelled images (``sources``: name → Sampler or ImageSet)."""

    def __init__(
        self,
        train: data.ImageSet,
        preset: Preset,
        seed: int,
        augment_file: Optional[Path],
        sources: dict,
        device: str = "cpu",
        progress: bool = False,
    ):
        self.train, self.preset, self.seed, self.augment_file, self.device = train, preset, seed, augment_file, device
        self.progress = progress
        self.x = data.uint8_to_tanh(train.images)
        self.sources = {"real": train, **sources}
        self.imbalanced = imbalanced(train)

    def progress_label(self, arm: Arm, detail: str = "") -> Optional[str]:
        """The label of an arm's progress bar (None: no bars)."""
        return f"arm {arm.id}{detail} (seed {self.seed})" if self.progress else None

    def runs(self, arm: Arm) -> bool:
        """Balanced arms run on imbalanced data only; every arm needs all its sources."""
        return (self.imbalanced or not arm.balanced) and arm.sources <= set(self.sources)

    def classifier(self, arm: Arm, augmentation: str, checkpoints: Optional[Checkpoints] = None):
        """``augmentation``: the classical pipeline of the arms that use one: "none", "preset" or the user's file.
        ``checkpoints``: train_classifier's."""
        aug = None
        if arm.classical and augmentation != "none":
            aug = augmentation_.pipeline_or_preset(self.augment_file, self.train.channels, self.seed)
        extra = None
        if arm.mix:
            parts = [self.source(name, aug, arm.synthetic_augmented) for name in arm.mix]
            extra = parts[0] if len(parts) == 1 else augmentation_.SharedSource(parts)
            if self.device != "cpu" and isinstance(extra, Sampler):
                extra = extra.path  # SyntheticMix opens it with onnxruntime's CUDA provider, beside the batches
        return train_protocol_classifier(
            self.x,
            self.train.labels,
            self.train.num_classes,
            self.preset,
            self.seed,
            device=self.device,
            balanced=arm.balanced,
            augment=aug,
            extra=extra,
            ratio=arm.ratio,
            labels="balanced" if self.imbalanced else "match",  # imbalanced data: the extra images top up rare classes
            progress=self.progress_label(arm),
            checkpoints=checkpoints,
        )

    def fixmatch(
        self,
        arm: Arm,
        augmentation: str,
        mu: int,
        known: Optional[torch.Tensor] = None,
        checkpoints: Optional[Checkpoints] = None,
    ) -> tuple:
        """(classifier, what its record keeps of its consistency term): the arm's labelled batches as ``classifier`` makes them, class-balanced on
        imbalanced data (the unlabelled images cannot top up the rare classes as the mixing arms' extra images do,
        and their pseudo-labels would pull the classifier towards the common ones), plus μ unlabelled images per
        labelled one (weak view: the arms' classical pipeline; strong: fixmatch.strong_augmentation)."""
        channels = self.train.channels
        classical = arm.classical and augmentation != "none"
        aug = augmentation_.pipeline_or_preset(self.augment_file, channels, self.seed) if classical else None
        weak = augmentation_.pipeline_or_preset(self.augment_file, channels, self.seed + 1) if classical else None
        term = ConsistencyLoss(
            self.sources["unlabeled-images"].images,
            mu * self.preset.batch_size,
            weak,
            strong_augmentation(channels, self.seed),
            self.seed,
            known,
        )
        batches = classifier_batches(
            self.x,
            self.train.labels,
            self.train.num_classes,
            self.preset,
            self.seed,
            balanced=self.imbalanced,
            augment=aug,
            device=self.device,
        )
        model = train_classifier(
            self.x,
            self.train.labels,
            self.train.num_classes,
            steps=self.preset.clf_steps,
            batch_size=self.preset.batch_size,
            seed=self.seed,
            batches=batches,
            device=self.device,
            extra_loss=term,
            progress=self.progress_label(arm, f", μ {mu}"),
            checkpoints=checkpoints,
        )
        return model, {"targets_at_end": term.share_with_targets()}

    def source(self, name: str, aug, synthetic_augmented: bool):
        """Real images (re-drawn or pseudo-labelled) go through ``aug`` like the rest of the batch; a generator's
        images only where the arm says so."""
        found = self.sources[name]
        if isinstance(found, data.ImageSet):
            return augmentation_.RealResampler(found, aug)
        return augmentation_.AugmentedSamples(found, aug) if synthetic_augmented and aug is not None else found
