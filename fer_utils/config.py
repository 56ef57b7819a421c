"""Project paths and the quick / cpu / full budgets, in one place.

Every notebook and command takes a ``profile`` name and reads its budgets from here, so
"how big a run is" is decided once and is the same everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The 7 FER2013 classes, in label order (label 0 is angry … 6 is neutral)."""

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
"""FER2013's ``Usage`` values: train / validation (model selection) / test (final number)."""

IMAGE_SIZE = 48

AUGMENTATIONS: tuple[str, ...] = ("none", "light", "basic", "erasing", "mixup", "lighting")
"""Training-time augmentations (see :func:`fer_utils.training.augmenter`)."""


def project_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder at or above ``start`` (default: the working
    directory) that holds both ``fer_utils/`` and ``notebooks/``; else the package's parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "fer_utils").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


def figures_dir() -> Path:
    """Where figures are saved (``FER_FIGURES`` or ``<root>/figures``), created on demand."""
    path = Path(os.environ.get("FER_FIGURES", project_root() / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Where run records go (``FER_RESULTS`` or ``<root>/results``), created on demand."""
    path = Path(os.environ.get("FER_RESULTS", project_root() / "results"))
    (path / "predictions").mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Where trained models are saved (``FER_MODELS`` or ``<root>/models``)."""
    path = Path(os.environ.get("FER_MODELS", project_root() / "models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    """Resumable training state and logs (``FER_CHECKPOINTS`` or ``<root>/checkpoints``)."""
    path = Path(os.environ.get("FER_CHECKPOINTS", project_root() / "checkpoints"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Where parsed datasets are cached (``FER_CACHE``, else ``$XDG_CACHE_HOME/fer_utils``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fer_utils"
    path = Path(os.environ.get("FER_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Profile:
    """Budgets for one size of run.

    ``train_per_class`` / ``eval_per_class`` cap the rows per class drawn (stratified) from
    Training and from each test split; ``None`` means all rows.
    """

    name: str
    description: str
    train_per_class: int | None
    eval_per_class: int | None
    epochs: int
    batch_size: int

    def caps(self) -> dict[str, int | None]:
        """Rows per class to keep in each split (for ``Dataset.stratified_subset``)."""
        return {
            split: self.train_per_class if split == "Training" else self.eval_per_class
            for split in SPLITS
        }


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "quick", "small stratified subset, 1–2 epochs: minutes on 2 CPU cores", 300, 60, 2, 128
        ),
        Profile("cpu", "full data, budgets sized for 2 CPU cores", None, None, 30, 256),
        Profile("full", "full data, GPU (Colab) budgets", None, None, 120, 128),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``, or a ValueError that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
