"""The winning recipe in the user's own code: what each unlabelled-image arm means to a user, which arm won a
shot setting, and the few lines of report.md that follow it."""

from __future__ import annotations

from ..semi.fixmatch import THRESHOLD
from ..store import legacy
from .arms import ARM_BY_ID, ARM_BY_NAME, CHOSEN, Arm

# What a user does to follow a winning arm, in words (the report's code shows how)
RECIPES = {
    "A": "neither: the labelled images alone",
    "B": "neither: the labelled images alone, with classical augmentation",
    "C": "neither: the labelled images alone, class-balanced",
    "C'": "neither: the labelled images alone, with classical augmentation, class-balanced",
    "DUP-0.25": "neither: the labelled images alone, with classical augmentation",
    "DUP-0.5": "neither: the labelled images alone, with classical augmentation",
    "SELF": "self-training alone: the classifier's pseudo-labelled images, no GAN",
    "SELF-G": "the GAN labeller's pseudo-labelled images",
    "FIX": "FixMatch (consistency training; no GAN)",
    "FIX+G": "FixMatch started from the GAN labeller's labels",
    "U": "synthetic images of the GAN that learnt from the unlabelled images",
    "U-aug": "synthetic images of the GAN that learnt from the unlabelled images",
    "SELF+U": "the GAN labeller's pseudo-labelled images and the GAN's synthetic images",
    "SELF+U-aug": "the GAN labeller's pseudo-labelled images and the GAN's synthetic images",
}


def recipe_code(arm_id: str, mu: int = 3) -> list:
    """report.md's lines that show how to use a winning recipe with one's own classifier and DataLoader."""
    fit = "augmentor fit --data LABELLED/ --unlabeled UNLABELLED/ --out run"
    if arm_id in ("SELF", "SELF-G"):
        labeller = " --pseudo-labeller classifier" if arm_id == "SELF" else ""
        return [
            "```bash",
            fit + labeller,
            "augmentor pseudo-labels run --out pseudo-labels.csv   # look through some of them",
            "```",
            "```python",
            "from augmentor import PseudoLabelMix",
            "",
            'loader = PseudoLabelMix(loader, "run", ratio=0.5)  # half of each batch: pseudo-labelled unlabelled images',
            "```",
        ]
    if arm_id in ("U", "U-aug", "SELF+U", "SELF+U-aug"):
        mixes = ['loader = SyntheticMix(loader, "run", ratio=0.5)']
        if arm_id.startswith("SELF+U"):
            mixes = ['loader = PseudoLabelMix(loader, "run", ratio=0.25)', 'loader = SyntheticMix(loader, "run", ratio=0.25)']
        return ["```bash", fit, "```", "```python", "from augmentor import PseudoLabelMix, SyntheticMix", "", *mixes, "```"]
    if arm_id in ("FIX", "FIX+G"):
        lines = [
            "augmentor does not train your classifier: train it with FixMatch, e.g. USB's `fixmatch` "
            f"(`pip install semilearn`), threshold {THRESHOLD}, μ = {mu} unlabelled images per labelled one, your classical "
            "augmentation as the weak view and RandAugment + cutout as the strong one."
        ]
        if arm_id == "FIX+G":
            lines += [
                "",
                "Start its unlabelled targets from the GAN labeller's labels:",
                "```bash",
                fit,
                "augmentor pseudo-labels run --out pseudo-labels.csv",
                "```",
            ]
        return lines
    arm = ARM_BY_ID.get(arm_id)
    if arm is not None and arm.mix and arm.role in ("synthetic", "reference"):  # the GAN on the labelled images
        return [
            "```bash",
            "augmentor fit --data LABELLED/ --out run",
            "```",
            "```python",
            "from augmentor import SyntheticMix",
            "",
            f'loader = SyntheticMix(loader, "run", ratio={arm.ratio})',
            "```",
        ]
    return [f"Train on {RECIPES[arm_id][len('neither: ') :]}: nothing from augmentor helped here."]


def best_recipe(arms: dict, metric: str, arms_by_name: dict) -> str:
    """The arm with the best mean among the recipes that train on real images (CAS arms train on synthetic ones only;
    the ceiling knows labels a user does not)."""
    trained_on_real = [
        a for a in arms if arms_by_name[a].cas is None and arms_by_name[a].id != CHOSEN.id and arms_by_name[a].role != "ceiling"
    ]
    return max(trained_on_real, key=lambda a: arms[a][metric]["mean"])


def recorded_arms(report: dict) -> dict:
    """results.json's arms as records, by their labels (older files' records brought up to date)."""
    return {name: Arm(**legacy.arm_record(a, ARM_BY_NAME)) for name, a in report["arms"].items()}


def winning_recipes(report: dict) -> dict:
    """With unlabelled images: shot setting → the id of the arm that won it (best_recipe)."""
    arms_by_name = recorded_arms(report)
    return {
        shot: arms_by_name[best_recipe(arms, report["primary_metric"], arms_by_name)].id
        for shot, arms in report["summary"].items()
        if any(arms_by_name[a].role == "unlabelled" for a in arms)
    }
