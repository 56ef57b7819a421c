"""Project paths and the quick / cpu / full budgets, in one place.

Every notebook and command takes a ``profile`` name and reads its budgets from here, so
"how big a run is" is decided once and is the same everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fer_utils.errors import UsageError

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The 7 FER2013 classes, in label order (label 0 is angry … 6 is neutral)."""

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
"""FER2013's ``Usage`` values: train / validation (model selection) / test (final number)."""

IMAGE_SIZE = 48
EPS = 1e-7  # probabilities are clipped to [EPS, 1] before taking logs

AUGMENTATIONS: tuple[str, ...] = (
    "none",
    "light",
    "basic",
    "erasing",
    "strong",
    "mixup",
    "lighting",
)
"""Training-time augmentations (see :func:`fer_utils.training.augmenter`)."""

POLICIES: tuple[str, ...] = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
"""Dtype policies a run may ask for; ``auto`` picks :func:`fer_utils.devices.default_policy`
for the machine. ``mixed_bfloat16`` pays only on CPUs with AVX-512 BF16 / AMX and on TPUs."""


def project_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder at or above ``start`` (default: the working
    directory) that holds both ``fer_utils/`` and ``notebooks/``; else the package's parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "fer_utils").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


def _folder(variable: str, name: str, inside: str = "") -> Path:
    """``$variable``, else ``<root>/<name>``, created on demand (with ``inside`` in it); a folder
    that cannot be created is a :class:`UsageError` that names it and the variable."""
    path = Path(os.environ.get(variable, project_root() / name))
    try:
        (path / inside).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the {name} folder {path} ({error.strerror or error}): fix its "
            f"permissions or point {variable} at a writable folder"
        ) from None
    return path


def figures_dir() -> Path:
    """Where figures are saved (``FER_FIGURES`` or ``<root>/figures``), created on demand."""
    return _folder("FER_FIGURES", "figures")


def results_dir() -> Path:
    """Where run records go (``FER_RESULTS`` or ``<root>/results``), created on demand."""
    return _folder("FER_RESULTS", "results", "predictions")


def models_dir() -> Path:
    """Where trained models are saved (``FER_MODELS`` or ``<root>/models``)."""
    return _folder("FER_MODELS", "models")


def checkpoints_dir() -> Path:
    """Resumable training state and logs (``FER_CHECKPOINTS`` or ``<root>/checkpoints``)."""
    return _folder("FER_CHECKPOINTS", "checkpoints")


def cache_dir() -> Path:
    """Where parsed datasets and perceptual hashes are cached (``FER_CACHE``, else
    ``$XDG_CACHE_HOME/fer_utils``). Only the path: :func:`write_cache` creates the folder, so
    a folder that cannot be created never stops the work the cache only speeds up."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fer_utils"
    return Path(os.environ.get("FER_CACHE", default))


@dataclass(frozen=True)
class TransferBudget:
    """Notebook 03, part 1: ImageNet backbones, a head on the frozen backbone, then fine-tuning.

    ``data_profile`` names the profile whose data the transfer runs use (outside the GPU
    profile, the quick subset); ``tag`` ends their run names (``transfer-<backbone>-<tag>``),
    one per budget, so runs of different budgets never share a name.
    """

    data_profile: str
    tag: str
    backbones: tuple[str, ...]  # keras.applications backbones, in the order they are trained
    size: int  # the backbone's input size: the 48-pixel face is resized to it
    head_epochs: int  # stage 1, frozen backbone
    fine_tune_epochs: int  # stage 2, the backbone's top layers trainable
    batch_size: int


@dataclass(frozen=True)
class SimCLRBudget:
    """Notebook 03, part 2: SimCLR pretraining on the Training faces, without their labels."""

    epochs: int
    batch_size: int  # faces per batch (two views of each)


@dataclass(frozen=True)
class FeatureMapBudget:
    """Notebook 06: activation maximisation and the filters' facial-region preferences."""

    steps: int  # gradient-ascent steps per emotion image (half as many per filter image)
    filters: int  # filters of the middle convolution whose preferred input is drawn
    region_faces: int  # PrivateTest faces the region preferences are averaged over


@dataclass(frozen=True)
class ExplainBudget:
    """Notebook 07: the explanation methods and how faithful they are."""

    faithfulness_faces: int  # PrivateTest faces of the deletion / insertion table
    lime_samples: int  # perturbed copies of each face that LIME's surrogate is fitted on
    per_class: int  # correct predictions per emotion in its mean Grad-CAM map


@dataclass(frozen=True)
class Profile:
    """Every budget of one size of run, read by the notebooks and commands (none of them
    compares a profile's name).

    ``train_per_class`` / ``eval_per_class`` cap the rows per class drawn (stratified) from
    Training and from each test split; ``None`` means all rows. ``epochs`` / ``batch_size`` are
    a plain training run's (``fer train``, notebooks 02 and 05). ``smoke`` marks a profile whose
    runs only show that the code works: notebooks then train what they would otherwise find
    among finished runs. The other fields are one notebook's budgets each.
    """

    name: str
    description: str
    train_per_class: int | None
    eval_per_class: int | None
    epochs: int
    batch_size: int
    smoke: bool
    tta: str  # the test-time augmentation (fer_utils.tta.TTA_SETS) of every run's -tta record
    loss_comparison_epochs: int  # notebook 02: five_layer with ce, class weights, focal loss
    transfer: TransferBudget
    simclr: SimCLRBudget
    label_curve: tuple[tuple[float, int], ...]  # notebook 03: (share of the labels, epochs)
    label_seeds: tuple[int, ...]  # notebook 03: seeds the curve's repeated point is run again with
    illumination_epochs: int  # notebook 04: one fast_cnn per illumination correction
    feature_maps: FeatureMapBudget
    explain: ExplainBudget

    def caps(self) -> dict[str, int | None]:
        """Rows per class to keep in each split (for ``Dataset.stratified_subset``)."""
        return {
            split: self.train_per_class if split == "Training" else self.eval_per_class
            for split in SPLITS
        }


_BACKBONES = ("vgg16", "resnet50", "mobilenetv2")

_CPU_TRANSFER = TransferBudget(
    "quick", "quick", _BACKBONES, size=64, head_epochs=2, fine_tune_epochs=2, batch_size=64
)
"""The backbones on the quick subset, two epochs a stage: all two CPU cores can afford (the
committed ``transfer-*-quick`` runs)."""

_LABEL_CURVE = ((0.05, 40), (0.1, 30), (0.25, 12), (1.0, 48))
"""Fewer labels, more epochs; all labels is ``fast_cnn-ls``'s own recipe (48 epochs)."""

_LABEL_SEEDS = (14, 15)
"""The committed 10 % point's two repeats: with the notebook's seed 13, three seeds."""

_FEATURE_MAPS = FeatureMapBudget(steps=256, filters=16, region_faces=2000)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "quick",
            "small stratified subset, 1–2 epochs: minutes on 2 CPU cores",
            train_per_class=300,
            eval_per_class=60,
            epochs=2,
            batch_size=128,
            smoke=True,
            tta="flip",  # 2 views, not 10: a smoke run shows the code path, not the gain
            loss_comparison_epochs=1,
            # MobileNetV2 alone at 32 pixels, the smallest input keras.applications accepts
            transfer=TransferBudget(
                "quick",
                "smoke",
                ("mobilenetv2",),
                size=32,
                head_epochs=1,
                fine_tune_epochs=1,
                batch_size=64,
            ),
            simclr=SimCLRBudget(epochs=1, batch_size=64),
            label_curve=((0.25, 1), (1.0, 1)),
            label_seeds=(14,),
            illumination_epochs=1,
            feature_maps=FeatureMapBudget(steps=64, filters=8, region_faces=300),
            explain=ExplainBudget(faithfulness_faces=8, lime_samples=50, per_class=10),
        ),
        Profile(
            "cpu",
            "full data, budgets sized for 2 CPU cores",
            train_per_class=None,
            eval_per_class=None,
            epochs=30,
            batch_size=256,
            smoke=False,
            tta="shifts",
            loss_comparison_epochs=12,  # the committed five_layer-{ce,class_weights,focal}-e12-cpu
            transfer=_CPU_TRANSFER,
            simclr=SimCLRBudget(epochs=32, batch_size=256),  # ~1 h of two cores
            label_curve=_LABEL_CURVE,
            label_seeds=_LABEL_SEEDS,
            illumination_epochs=10,
            feature_maps=_FEATURE_MAPS,
            explain=ExplainBudget(faithfulness_faces=500, lime_samples=500, per_class=200),
        ),
        Profile(
            "full",
            "full data, GPU (Colab) budgets: the published recipes' epochs and input sizes",
            train_per_class=None,
            eval_per_class=None,
            epochs=300,  # Khaireddin & Chen 2021 (VGGNet, 73.28 %): 300 epochs, batches of 64
            batch_size=64,
            smoke=False,
            tta="shifts",
            loss_comparison_epochs=300,
            # CS230 (seed 004): ResNet50 / VGG16 fine-tuned 50 epochs in batches of 128, on
            # inputs of 197 pixels; 224, ImageNet's own size, is the nearest one that MobileNetV2
            # also has ImageNet weights for
            transfer=TransferBudget(
                "full",
                "full",
                _BACKBONES,
                size=224,
                head_epochs=10,
                fine_tune_epochs=50,
                batch_size=128,
            ),
            simclr=SimCLRBudget(epochs=200, batch_size=512),  # SimCLR: hundreds, large batches
            label_curve=_LABEL_CURVE,
            label_seeds=_LABEL_SEEDS,
            illumination_epochs=300,  # CS523 (seed 000): 300 epochs with early stopping
            feature_maps=_FEATURE_MAPS,
            # all of PrivateTest; LIME's own default of 1000 samples per face
            explain=ExplainBudget(faithfulness_faces=3589, lime_samples=1000, per_class=200),
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``, or a ValueError that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
