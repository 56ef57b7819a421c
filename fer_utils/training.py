"""Training: input pipeline, augmentation, losses, class weights, schedules, checkpoints and
resume, and the results record of every run."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from fer_utils.config import AUGMENTATIONS, project_root
from fer_utils.data import Dataset
from fer_utils.errors import UsageError
from fer_utils.models import N_CLASSES, build_model

LOSSES = ("ce", "focal")


def set_threads(threads: int | None = None) -> None:
    """Use ``threads`` cores for TensorFlow's ops (default: all). TensorFlow fixes its thread
    pools at its first op: after that (a notebook cell run again, several runs in one
    process) a different count only draws a warning, and the pools stay as they are."""
    threads = threads or os.cpu_count() or 1
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        warnings.warn(
            f"TensorFlow is already running with {current or 'its default'} intra-op threads; "
            f"{threads} would take a fresh process (or a restarted kernel)",
            stacklevel=2,
        )


@keras.saving.register_keras_serializable(package="fer_utils")
class FocalLoss(keras.losses.Loss):
    """Categorical focal loss with a per-class weight ``alpha``:
    ``-sum_c alpha_c * (1 - p_c)**gamma * y_c * log(p_c)``.

    Keras' own ``CategoricalFocalCrossentropy`` takes one scalar alpha for all classes, so
    class-balanced alpha needs this small class. With ``gamma = 0`` it is class-weighted
    cross-entropy."""

    def __init__(self, alpha: list[float] | None = None, gamma: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha = list(alpha) if alpha is not None else [1.0] * N_CLASSES
        self.gamma = gamma

    def call(self, y_true, y_pred):
        y_pred = keras.ops.clip(keras.ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        y_true = keras.ops.cast(y_true, "float32")
        weight = keras.ops.convert_to_tensor(self.alpha, "float32") * (1 - y_pred) ** self.gamma
        return -keras.ops.sum(weight * y_true * keras.ops.log(y_pred), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


def class_weights(labels: np.ndarray) -> np.ndarray:
    """'Balanced' class weights n / (7 · n_c) for the 7 classes (scikit-learn's formula)."""
    classes = np.arange(N_CLASSES)
    return compute_class_weight("balanced", classes=classes, y=labels)


SOFT_TARGETS = ("none", "ferplus", "teacher")


def teacher_targets(dataset: Dataset, teacher: str | Path) -> np.ndarray:
    """Knowledge-distillation targets: the mean of the one-hot label and the teacher's
    probabilities, stored as ``source_index`` + ``probabilities`` in an .npz file."""
    how = "write one with: python -m fer_utils ensemble RUN... --teacher-out PATH"
    if not Path(teacher).is_file():
        raise UsageError(f"teacher file {teacher} not found; {how}")
    with np.load(teacher) as stored:
        if not {"source_index", "probabilities"} <= set(stored.files):
            raise UsageError(
                f"{teacher} is not a teacher file (no source_index, probabilities); {how}"
            )
        rows = {int(i): k for k, i in enumerate(stored["source_index"])}
        missing = [int(i) for i in dataset.source_index if int(i) not in rows]
        if missing:
            raise UsageError(
                f"{teacher} has no teacher probabilities for {len(missing)} of the training rows "
                f"(made from other data?); {how}"
            )
        probabilities = stored["probabilities"][[rows[int(i)] for i in dataset.source_index]]
    return 0.5 * probabilities.astype(np.float32) + 0.5 * np.eye(N_CLASSES)[dataset.labels]


def targets(dataset: Dataset, soft: str = "none", teacher: str | Path | None = None) -> np.ndarray:
    """Training targets, float32 (N, 7): one-hot labels; with ``soft="ferplus"`` the FER+
    vote distribution (one-hot where FER+ has no vote for any of the 7 classes); with
    ``soft="teacher"`` :func:`teacher_targets` of the ``teacher`` file."""
    one_hot = np.eye(N_CLASSES, dtype=np.float32)[dataset.labels]
    if soft == "none":
        return one_hot
    if soft == "teacher":
        if teacher is None:
            raise ValueError("soft targets 'teacher' need a teacher file (--teacher)")
        return teacher_targets(dataset, teacher).astype(np.float32)
    if soft != "ferplus":
        raise ValueError(f"soft targets must be one of {SOFT_TARGETS}, not {soft!r}")
    if dataset.ferplus is None:
        raise ValueError("FER+ soft targets need fer2013new.csv beside the data (FERPLUS_PATH)")
    votes = dataset.ferplus.soft_labels()
    return np.where(votes.sum(axis=1, keepdims=True) > 0, votes, one_hot)


def augmenter(kind: str, seed: int = 0) -> keras.Sequential | None:
    """The batch augmentation for ``kind``: ``light`` = horizontal flip and ±5 % shift (for
    nets that underfit under more); ``basic`` = horizontal flip, ±10° rotation, ±10 % zoom
    and shift; ``erasing`` = basic + random erasing; ``lighting`` = basic + random
    brightness (±40 %) and contrast (±50 %); ``mixup`` is basic here, mixing is applied to
    (image, target) pairs by :func:`make_dataset`; ``none`` = nothing."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, not {kind!r}")
    if kind == "none":
        return None
    if kind == "light":
        return keras.Sequential(
            [
                keras.layers.RandomFlip("horizontal", seed=seed),
                keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed),
            ],
            name="augment_light",
        )
    steps = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
    ]
    if kind == "lighting":
        steps += [
            keras.layers.RandomBrightness(0.4, value_range=(0, 255), seed=seed),
            keras.layers.RandomContrast(0.5, value_range=(0, 255), seed=seed),
        ]
    if kind == "erasing":
        steps.append(
            keras.layers.RandomErasing(
                factor=0.5, scale=(0.02, 0.2), value_range=(0, 255), seed=seed
            )
        )
    return keras.Sequential(steps, name=f"augment_{kind}")


def make_dataset(
    images: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    augment: str = "none",
    shuffle: bool = False,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> tf.data.Dataset:
    """A tf.data pipeline of (float32 faces (B, 48, 48, 1) in 0–255, targets[, weights]).

    Faces stay uint8 in memory; batches are cast and augmented on the fly by parallel map
    calls, and prefetched so that augmentation overlaps the training step."""
    faces = images[..., None] if images.ndim == 3 else images
    columns = (faces, y) if sample_weight is None else (faces, y, sample_weight.astype(np.float32))
    data = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        data = data.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=shuffle)
    pipeline = augmenter(augment, seed)

    def prepare(x, *rest):
        x = tf.cast(x, tf.float32)
        if pipeline is not None:
            x = tf.clip_by_value(pipeline(x, training=True), 0.0, 255.0)
        return (x, *rest)

    data = data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if augment == "mixup":
        mix = keras.layers.MixUp(alpha=0.2, seed=seed)

        def mixup(x, y, *weights):
            mixed = mix({"images": x, "labels": y}, training=True)
            return (mixed["images"], mixed["labels"], *weights)

        data = data.map(mixup, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in its results JSON)."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 256
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum 0.9)
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine (one warm-up epoch) | plateau (ReduceLROnPlateau)
    loss: str = "ce"  # ce | focal
    focal_gamma: float = 2.0
    class_weighting: bool = False
    label_smoothing: float = 0.0
    augment: str = "basic"
    correction: str = "none"  # illumination correction inside the model (preprocessing.py)
    init: str | None = None  # .keras model of the same architecture whose weights start training
    label_fraction: float = 1.0  # stratified fraction of the Training labels used
    soft_targets: str = "none"  # none | ferplus | teacher
    teacher: str | None = None  # .npz of teacher probabilities (soft_targets="teacher")
    clean: bool = False
    patience: int = 10
    policy: str = "float32"  # mixed_bfloat16 pays only on CPUs with AVX-512 BF16 / AMX
    jit_compile: bool = False  # XLA measured slower than oneDNN here (bench_training.py)
    time_budget_minutes: float | None = None  # stop after the epoch that crosses it
    precise_bn: bool = False  # recompute BatchNorm statistics before each validation
    seed: int = 0

    def describe(self) -> str:
        """The model as results tables name it, e.g. ``five_layer + clahe`` or
        ``fast_cnn (from simclr-fast_cnn-cpu), 10% labels``."""
        text = self.model
        if self.correction != "none":
            text += f" + {self.correction}"
        if self.augment == "lighting":
            text += " + lighting aug."
        if self.init:
            text += f" (from {Path(self.init).stem})"
        if self.label_fraction < 1:
            text += f", {self.label_fraction:.0%} labels"
        return text

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, not {self.augment!r}")


def warmup_cosine(
    rate: float, epochs: int, steps_per_epoch: int
) -> keras.optimizers.schedules.CosineDecay:
    """One linear warm-up epoch (when there are more than two) up to ``rate``, then cosine
    decay to zero at the end of the last epoch."""
    warmup = steps_per_epoch if epochs > 2 else 0
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else rate,
        decay_steps=max(1, epochs * steps_per_epoch - warmup),
        warmup_target=rate if warmup else None,
        warmup_steps=warmup,
    )


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    if config.schedule == "cosine":
        rate = warmup_cosine(config.learning_rate, config.epochs, steps_per_epoch)
    elif config.schedule != "plateau":
        raise ValueError(f"schedule must be 'cosine' or 'plateau', not {config.schedule!r}")
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', not {config.optimizer!r}")


def _loss(config: TrainConfig, labels: np.ndarray) -> keras.losses.Loss:
    if config.loss == "focal":
        alpha = class_weights(labels) if config.class_weighting else np.ones(N_CLASSES)
        return FocalLoss(alpha=(alpha / alpha.mean()).tolist(), gamma=config.focal_gamma)
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)


class TimeBudget(keras.callbacks.Callback):
    """Stop training after the epoch during which ``minutes`` of wall-clock time ran out."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.seconds = 60 * minutes
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.start > self.seconds:
            print(f"time budget of {self.seconds / 60:.0f} min reached after epoch {epoch + 1}")
            self.model.stop_training = True


def _nested_layers(layer: keras.Layer) -> list[keras.Layer]:
    """``layer`` and every layer inside it, through nested models."""
    return [layer] + [
        sub for child in getattr(layer, "layers", []) for sub in _nested_layers(child)
    ]


def recalibrate_batchnorm(
    model: keras.Model, images: np.ndarray, batches: int = 16, batch_size: int = 256, seed: int = 0
) -> int:
    """Precise BatchNorm (Wu & Johnson, 2021, "Rethinking 'Batch' in BatchNorm"): set each
    trainable BatchNorm layer's moving mean and variance to their average over ``batches``
    random batches of ``images`` under the current weights. Training's moving averages lag
    weights that change fast (few steps, small data, a high learning rate), and a network
    evaluated with them can score near chance while its batch statistics are fine. Frozen
    layers (``trainable=False``, e.g. an ImageNet backbone's) keep theirs. Returns how many
    layers were updated. (Keras has no built-in for this; the running mean is the momentum.)"""
    norms = [
        layer
        for layer in _nested_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return 0
    momenta = [layer.momentum for layer in norms]
    rng = np.random.default_rng(seed)
    x = np.asarray(images, np.float32)
    x = x[..., None] if x.ndim == 3 else x
    try:
        for i in range(batches):
            for layer in norms:  # moving = (i·moving + batch) / (i + 1): the running mean
                layer.momentum = i / (i + 1)
            batch = x[rng.choice(len(x), min(batch_size, len(x)), replace=False)]
            model(batch, training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return len(norms)


class PreciseBatchNorm(keras.callbacks.Callback):
    """:func:`recalibrate_batchnorm` on the (unaugmented) training faces before every
    validation, so early stopping, checkpoints and the saved model all use precise statistics."""

    def __init__(self, images: np.ndarray, seed: int = 0) -> None:
        super().__init__()
        self.images, self.seed = images, seed

    def on_test_begin(self, logs: dict | None = None) -> None:
        recalibrate_batchnorm(self.model, self.images, seed=self.seed)


@dataclass
class TrainResult:
    """The trained model (best PublicTest weights), its history, wall-clock seconds, epochs
    run by this call and the optimizer's step count at the end (it carries over a resume)."""

    model: keras.Model
    history: dict[str, list[float]]
    seconds: float
    epochs_run: int
    optimizer_steps: int


def train(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    checkpoint_dir: Path,
    verbose: int | str = "auto",
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> TrainResult:
    """Fit ``config.model`` on ``train_set``, early-stopping on ``val_set`` (PublicTest).

    ``checkpoint_dir`` holds the resumable state (``backup/``: weights, optimizer, epoch), the
    best model so far (``best.keras``) and the per-epoch log (``log.csv``). Running again with
    the same folder resumes where an interrupted run stopped."""
    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.model, policy=config.policy, correction=config.correction, **config.model_kwargs
    )
    if config.init:
        model.load_weights(config.init)  # e.g. a SimCLR-pretrained encoder (selfsupervised.py)
    y = targets(train_set, config.soft_targets, config.teacher)
    weights = None
    if config.class_weighting and config.loss == "ce":
        weights = class_weights(train_set.labels)[train_set.labels]
    batch_size = min(config.batch_size, len(train_set))  # a tiny subset still gets one step
    data = make_dataset(train_set.images, y, batch_size, config.augment, True, config.seed, weights)
    val_y = np.eye(N_CLASSES, dtype=np.float32)[val_set.labels]
    val_data = make_dataset(val_set.images, val_y, 512)
    steps = len(train_set) // batch_size
    model.compile(
        optimizer=_optimizer(config, steps),
        loss=_loss(config, train_set.labels),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    callbacks = resumable(checkpoint_dir)
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            str(checkpoint_dir / "best.keras"),
            monitor="val_accuracy",
            save_best_only=True,
            # A resumed run's checkpoint starts from the best epoch before the interruption.
            initial_value_threshold=best_logged(checkpoint_dir, "val_accuracy"),
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy",
            patience=config.patience,
            restore_best_weights=True,
            start_from_epoch=stopping_starts(config),
        ),
    ]
    if config.precise_bn:
        callbacks.append(PreciseBatchNorm(train_set.images, config.seed))
    callbacks.extend(extra_callbacks)
    if config.time_budget_minutes:
        callbacks.append(TimeBudget(config.time_budget_minutes))
    if config.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau("val_accuracy", factor=0.5, patience=3, min_lr=1e-5)
        )
    start = time.perf_counter()
    history = model.fit(
        data,
        validation_data=val_data,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # tf.data already reshuffles every epoch; Keras would only warn
    )
    seconds = time.perf_counter() - start
    steps_done = int(model.optimizer.iterations.numpy())
    if (checkpoint_dir / "best.keras").is_file():
        # After a resume, EarlyStopping only knows the epochs since; best.keras knows them all.
        model = keras.saving.load_model(checkpoint_dir / "best.keras", safe_mode=True)
    epochs_run = len(history.history.get("loss", []))
    return TrainResult(model, history.history, seconds, epochs_run, steps_done)


def resumable(checkpoint_dir: Path) -> list[keras.callbacks.Callback]:
    """Backup-and-restore plus the per-epoch CSV log, in ``checkpoint_dir``.

    With a backup there (an interrupted run) the log is appended to; without one the run starts
    afresh, so a stale log and best model of an earlier run under the same name are removed
    first (else its epochs would mix with the new ones in the learning curves)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if not (checkpoint_dir / "backup").is_dir():
        for stale in ("log.csv", "best.keras"):
            (checkpoint_dir / stale).unlink(missing_ok=True)
    return [
        keras.callbacks.BackupAndRestore(str(checkpoint_dir / "backup")),
        keras.callbacks.CSVLogger(str(checkpoint_dir / "log.csv"), append=True),
    ]


def read_log(checkpoint_dir: Path) -> pd.DataFrame:
    """The per-epoch log (``log.csv``) in ``checkpoint_dir``; empty if there is none."""
    path = checkpoint_dir / "log.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def best_logged(checkpoint_dir: Path, metric: str) -> float | None:
    """The highest ``metric`` in ``checkpoint_dir``'s log (epochs before a resume), if any."""
    values = read_log(checkpoint_dir).get(metric, pd.Series(dtype=float)).dropna()
    return float(values.max()) if len(values) else None


def stopping_starts(config: TrainConfig) -> int:
    """The first epoch early stopping may count from. A cosine schedule's early epochs run at a
    high, noisy learning rate (PublicTest accuracy swings by points from epoch to epoch), so
    stopping waits until two thirds of the epochs, when the rate is down to a quarter of its
    peak; best.keras still keeps the best epoch of the whole run."""
    return (2 * config.epochs) // 3 if config.schedule == "cosine" else 0


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as JSON (for the record and for resuming)."""
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2))


def command_line() -> str:
    """The command that started this process, relative to the project root where possible."""
    root = str(project_root())
    args = [a.replace(root + os.sep, "") for a in sys.argv]
    if args and args[0].endswith("__main__.py"):
        args = ["python", "-m", "fer_utils", *args[1:]]
    return shlex.join(args)
