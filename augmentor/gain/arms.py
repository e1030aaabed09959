"""The arms of the bench: what each classifier's training data holds, as records with a short id, a role and a
display label. Code finds arms by id and role; the label is what the report shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

RATIOS = (0.25, 0.5)  # the shares of a batch the mixing arms replace
ROLES = ("baseline", "control", "synthetic", "unlabelled", "reference", "ceiling")


@dataclass(frozen=True)
class Arm:
    """One way of training the classifier. ``role``: a baseline (real images, augmented or balanced), a control
    (re-drawn real images: what a share of extra images does by itself), synthetic (the user's GAN), unlabelled
    (the unlabelled images, by self-training or through a GAN that learnt from them), the reference (the
    tutorials' plain GAN), or the ceiling (the unlabelled images with their true labels, where a benchmark knows
    them: what perfect pseudo-labels would give; never a recipe). ``uses_gan`` decides which side of the verdict
    an arm is on.

    Sources of the images that replace ``ratio`` of each batch (``mix``, equal shares) or that a CAS arm trains
    on alone (``cas``): "gan" (the GAN on the labelled images), "plain" (the tutorials' recipe), "unlabeled"
    (the GAN that also learnt from the unlabelled images), "real" (labelled images re-drawn), "pseudo"
    (unlabelled images labelled by the classifier: self-training), "pseudo-gan" (labelled by the semi-supervised
    GAN), "true-labels" (the unlabelled images with their true labels: --unlabeled-rest only). An arm runs only
    where all its sources exist."""

    id: str
    role: str
    name: str  # the display label: report.md and results.json's keys
    uses_gan: bool  # a GAN made part of its training data (images, or labels): the verdict's GAN side
    classical: bool = False  # classical augmentation of the real images (the chosen pipeline)
    balanced: bool = False  # class-balanced sampling; trained only on imbalanced data
    mix: tuple = ()
    ratio: float = 0.0
    cas: Optional[str] = None
    # the generator's share goes through the classical pipeline too, as re-drawn real images always do. Data
    # decide whether that helps, so both are measured.
    synthetic_augmented: bool = False
    # FixMatch on the unlabelled images (semi/fixmatch.py): "own" targets only, or "gan": the GAN labeller's
    # confident labels where the classifier is not yet sure
    fixmatch: Optional[str] = None

    @property
    def sources(self) -> set:
        fixmatch = {"unlabeled-images", *(["pseudo-gan"] if self.fixmatch == "gan" else [])} if self.fixmatch else set()
        return {*self.mix, *([self.cas] if self.cas else []), *fixmatch}


ARMS = (
    Arm("A", "baseline", "A real", False),
    Arm("B", "baseline", "B real+aug", False, classical=True),
    Arm("C", "baseline", "C real+balanced", False, balanced=True),
    Arm("C'", "baseline", "C' real+aug+balanced", False, classical=True, balanced=True),
    *(
        Arm(f"DUP-{r}", "control", f"DUP real+aug+re-drawn real {r}", False, classical=True, mix=("real",), ratio=r)
        for r in RATIOS
    ),
    Arm("SELF", "unlabelled", "SELF real+aug+pseudo-labelled 0.5", False, classical=True, mix=("pseudo",), ratio=0.5),
    *(Arm(f"D-{r}", "synthetic", f"D real+syn {r}", True, mix=("gan",), ratio=r) for r in RATIOS),
    *(Arm(f"E-{r}", "synthetic", f"E real+aug+syn {r}", True, classical=True, mix=("gan",), ratio=r) for r in RATIOS),
    Arm("F", "synthetic", "F synthetic only (CAS)", True, cas="gan"),
    # SELF-G: self-training with the semi-supervised GAN's labels and none of its images: what its labels give
    Arm("SELF-G", "unlabelled", "SELF-G real+aug+GAN-pseudo-labelled 0.5", True, classical=True, mix=("pseudo-gan",), ratio=0.5),
    # what a user with unlabelled images would pick instead of a GAN, and the same seeded with the GAN's labels
    Arm("FIX", "unlabelled", "FIX real+aug+FixMatch", False, classical=True, fixmatch="own"),
    Arm("FIX+G", "unlabelled", "FIX+G real+aug+FixMatch from the GAN's labels", True, classical=True, fixmatch="gan"),
    Arm("U", "unlabelled", "U real+aug+syn(unlabeled GAN) 0.5", True, classical=True, mix=("unlabeled",), ratio=0.5),
    Arm(
        "SELF+U",
        "unlabelled",
        "SELF+U real+aug+GAN-pseudo-labelled 0.25+syn(unlabeled GAN) 0.25",
        True,
        classical=True,
        mix=("pseudo-gan", "unlabeled"),
        ratio=0.5,
    ),
    Arm(
        "U-aug",
        "unlabelled",
        "U-aug real+aug+syn(unlabeled GAN, augmented) 0.5",
        True,
        classical=True,
        mix=("unlabeled",),
        ratio=0.5,
        synthetic_augmented=True,
    ),
    Arm(
        "SELF+U-aug",
        "unlabelled",
        "SELF+U-aug real+aug+GAN-pseudo-labelled 0.25+syn(unlabeled GAN, augmented) 0.25",
        True,
        classical=True,
        mix=("pseudo-gan", "unlabeled"),
        ratio=0.5,
        synthetic_augmented=True,
    ),
    Arm("U-CAS", "unlabelled", "U synthetic only (CAS)", True, cas="unlabeled"),
    Arm(
        "POOL",
        "ceiling",
        "POOL real+aug+unlabelled with their true labels 0.5",
        False,
        classical=True,
        mix=("true-labels",),
        ratio=0.5,
    ),
    Arm("R", "reference", "R plain GAN: real+aug+syn 0.5", True, classical=True, mix=("plain",), ratio=0.5),
    Arm("R-CAS", "reference", "R plain GAN: synthetic only (CAS)", True, cas="plain"),
)


# Not trained on its own: arm E at the ratio chosen on validation (ratio 0 is arm B). What a user would deploy.
CHOSEN = Arm("E-chosen", "synthetic", "E real+aug+syn (chosen)", True, classical=True, mix=("gan",))

ARM_BY_ID = {a.id: a for a in (*ARMS, CHOSEN)}
ARM_BY_NAME = {a.name: a for a in (*ARMS, CHOSEN)}  # results.json is keyed by the labels
