"""Training: the tf.data pipeline, augmentation, losses, class weights, schedules, time
budgets, precise BatchNorm and the training loop (one code path on one device or many). Its
settings are :class:`~fer_utils.settings.TrainConfig`; its resumable state lives in
:mod:`fer_utils.checkpoints`; records are written by :mod:`fer_utils.experiment`."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from fer_utils.checkpoints import RunState, SaveState
from fer_utils.config import AUGMENTATIONS
from fer_utils.data import Dataset, as_batch
from fer_utils.devices import Placement, choose_strategy, describe, resolve_policy
from fer_utils.errors import UsageError, require_choice
from fer_utils.models import N_CLASSES, build_model, flat_layers
from fer_utils.settings import SOFT_TARGETS, TrainConfig


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
            raise UsageError("soft targets 'teacher' need a teacher file (--teacher)")
        return teacher_targets(dataset, teacher).astype(np.float32)
    require_choice("soft_targets", soft, SOFT_TARGETS)
    if dataset.ferplus is None:
        raise UsageError("FER+ soft targets need fer2013new.csv beside the data (FERPLUS_PATH)")
    votes = dataset.ferplus.soft_labels()
    return np.where(votes.sum(axis=1, keepdims=True) > 0, votes, one_hot)


def augmenter(kind: str, seed: int = 0) -> keras.Sequential | None:
    """The batch augmentation for ``kind``: ``light`` = horizontal flip and ±5 % shift (for
    nets that underfit under more); ``basic`` = horizontal flip, ±10° rotation, ±10 % zoom
    and shift; ``erasing`` = basic + random erasing; ``strong`` = flip, ±10° rotation, ±20 %
    zoom and shift and random erasing (Khaireddin & Chen's VGG recipe); ``lighting`` = basic
    + random brightness (±40 %) and contrast (±50 %); ``mixup`` is basic here, mixing is applied to
    (image, target) pairs by :func:`make_dataset`; ``none`` = nothing."""
    require_choice("augmentation", kind, AUGMENTATIONS)
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
    if kind == "strong":  # Khaireddin & Chen (2021): ±20 % zoom and shift, erasing half the time
        steps[2:] = [
            keras.layers.RandomZoom(0.2, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.2, 0.2, fill_mode="nearest", seed=seed),
        ]
    if kind in ("erasing", "strong"):
        area = (0.02, 0.2) if kind == "erasing" else (0.02, 0.33)  # the paper's: torchvision's
        steps.append(
            keras.layers.RandomErasing(factor=0.5, scale=area, value_range=(0, 255), seed=seed)
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
    faces = as_batch(images, dtype=None)
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
    # Several workers (tf.distribute) each take every n-th batch: the arrays are in memory,
    # not in files to share out
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)


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


def _optimizer(
    config: TrainConfig, steps_per_epoch: int, replicas: int = 1
) -> keras.optimizers.Optimizer:
    """The optimizer, its learning rate scaled linearly with the number of replicas (Goyal et
    al., 2017): ``replicas`` times the batch takes ``replicas`` times the step."""
    peak = config.learning_rate * replicas
    rate: float | keras.optimizers.schedules.LearningRateSchedule = peak
    if config.schedule == "cosine":
        rate = warmup_cosine(peak, config.epochs, steps_per_epoch)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)


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
        for layer in flat_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return 0
    momenta = [layer.momentum for layer in norms]
    rng = np.random.default_rng(seed)
    x = as_batch(images)
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
    """The trained model (best PublicTest weights), its per-epoch history, and the seconds,
    epochs and optimizer steps of the whole run, across resumes."""

    model: keras.Model
    history: dict[str, list[float]]
    seconds: float
    epochs_run: int
    optimizer_steps: int
    placement: Placement  # where it trained


def progress_verbosity(verbose: int | str) -> int | str:
    """Keras' ``verbose`` for ``fit``: ``auto`` is a live progress bar in a terminal and one
    line per epoch elsewhere (a notebook, a log file), where a bar's redraws would pile up."""
    if verbose == "auto" and not sys.stdout.isatty():
        return 2
    return verbose


def train(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    checkpoint_dir: Path,
    verbose: int | str = "auto",
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    strategy: tf.distribute.Strategy | None = None,
) -> TrainResult:
    """Fit ``config.model`` on ``train_set``, early-stopping on ``val_set`` (PublicTest), on
    every replica of ``strategy`` (default: :func:`~fer_utils.devices.choose_strategy`).

    ``checkpoint_dir`` holds the run's state (:class:`~fer_utils.checkpoints.RunState`: weights
    and optimizer per epoch, the best model so far, the per-epoch log). Running again with the
    same folder resumes where an interrupted run stopped; a finished run trains afresh."""
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or choose_strategy()
    replicas = strategy.num_replicas_in_sync
    policy = resolve_policy(config.policy)
    y = targets(train_set, config.soft_targets, config.teacher)
    weights = None
    if config.class_weighting and config.loss == "ce":
        weights = class_weights(train_set.labels)[train_set.labels]
    # config.batch_size is per replica: the global batch, and the learning rate, grow with them
    batch_size = min(config.batch_size * replicas, len(train_set))  # a tiny subset: one step
    data = make_dataset(train_set.images, y, batch_size, config.augment, True, config.seed, weights)
    val_y = np.eye(N_CLASSES, dtype=np.float32)[val_set.labels]
    val_data = make_dataset(val_set.images, val_y, 512)
    steps = len(train_set) // batch_size
    run = RunState(checkpoint_dir)
    with strategy.scope():
        model = build_model(
            config.model, policy=policy, correction=config.correction, **config.model_kwargs
        )
        if config.init:
            model.load_weights(config.init)  # e.g. a SimCLR-pretrained encoder (selfsupervised)
        model.compile(  # mixed_float16: Keras adds dynamic loss scaling to the optimizer
            optimizer=_optimizer(config, steps, replicas),
            loss=_loss(config, train_set.labels),
            metrics=["accuracy"],
            jit_compile=config.jit_compile,
        )
        first_epoch, epochs = run.begin(model, config.epochs)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy",
            patience=config.patience,
            restore_best_weights=True,
            start_from_epoch=stopping_starts(config),
        ),
    ]
    if config.precise_bn:
        callbacks.append(PreciseBatchNorm(train_set.images, config.seed))
    if config.time_budget_minutes:
        callbacks.append(TimeBudget(config.time_budget_minutes))
    if config.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                "val_accuracy", config.plateau_factor, config.plateau_patience, min_lr=1e-5
            )
        )
    # Last but the caller's: it saves what the callbacks above decided (learning rate, stop).
    callbacks += [SaveState(run), *extra_callbacks]
    model.fit(
        data,
        validation_data=val_data,
        epochs=epochs,
        initial_epoch=first_epoch,
        callbacks=callbacks,
        verbose=progress_verbosity(verbose),
        shuffle=False,  # tf.data already reshuffles every epoch; Keras would only warn
    )
    steps_done = int(model.optimizer.iterations.numpy())
    run.finish_training(steps_done)
    placement = describe(strategy, policy, model.jit_compile)
    if run.best_path.is_file():  # the best epoch of the whole run, those before a resume too
        model = keras.saving.load_model(run.best_path, safe_mode=True)
    epochs, seconds = run.totals()
    return TrainResult(model, run.history(), seconds, epochs, steps_done, placement)


def stopping_starts(config: TrainConfig) -> int:
    """The first epoch early stopping may count from. A cosine schedule's early epochs run at a
    high, noisy learning rate (PublicTest accuracy swings by points from epoch to epoch), so
    stopping waits until two thirds of the epochs, when the rate is down to a quarter of its
    peak; best.keras still keeps the best epoch of the whole run."""
    return (2 * config.epochs) // 3 if config.schedule == "cosine" else 0


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as JSON (for the record and for resuming)."""
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2))
