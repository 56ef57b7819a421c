"""Self-supervised pretraining on the faces themselves (SimCLR) and linear probes.

ImageNet weights cannot be downloaded on every machine, but FER2013's Training faces are
always there: SimCLR (Chen et al. 2020) learns an encoder without labels by pulling two
augmented views of the same face together and pushing the other faces of the batch apart.
The pretrained encoder then starts a normal training run (``TrainConfig.init``) or is read
out by a linear probe (:func:`linear_probe`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fer_utils.checkpoints import RunState, SaveState
from fer_utils.data import as_batch
from fer_utils.heads import encoder
from fer_utils.models import build_model
from fer_utils.settings import PretrainConfig
from fer_utils.training import TimeBudget, progress_verbosity, warmup_cosine


def face_views(seed: int = 0) -> keras.Sequential:
    """SimCLR's augmentation, made face-safe: horizontal flip, zoom-in crops (down to half
    the side, a quarter of the face; SimCLR's own crops go down to 8 % of the image),
    ±10 % shifts, ±10° rotation, brightness and contrast ±40 %, Gaussian blur.

    Left out on purpose: vertical flips and large rotations (an upside-down mouth reads as
    the opposite expression) and colour jitter (the faces are grey)."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomZoom((-0.5, 0.0), fill_mode="reflect", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            layers.RandomRotation(10 / 360, fill_mode="reflect", seed=seed),
            layers.RandomBrightness(0.4, value_range=(0, 255), seed=seed),
            layers.RandomContrast(0.4, value_range=(0, 255), seed=seed),
            layers.RandomGaussianBlur(0.5, kernel_size=3, value_range=(0, 255), seed=seed),
        ],
        name="face_views",
    )


def pair_dataset(images: np.ndarray, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """Batches of 2·``batch_size`` views: two augmentations of the same ``batch_size`` faces,
    first views then second views, with a dummy target (the loss needs none)."""
    views = face_views(seed)
    faces = as_batch(images, dtype=None)
    data = tf.data.Dataset.from_tensor_slices(faces).shuffle(len(faces), seed=seed)

    def two_views(x):
        x = tf.cast(x, tf.float32)
        pair = tf.concat([views(x, training=True), views(x, training=True)], axis=0)
        return tf.clip_by_value(pair, 0.0, 255.0), tf.zeros((2 * tf.shape(x)[0], 1))

    data = data.batch(batch_size, drop_remainder=True)
    return data.map(two_views, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="fer_utils")
class NTXentLoss(keras.losses.Loss):
    """SimCLR's normalised-temperature cross-entropy over a batch of 2N projections laid out
    as (first views, second views): each view's positive is the other view of its face, the
    2N − 2 other views are its negatives. ``y_true`` is ignored."""

    def __init__(self, temperature: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        z = keras.ops.normalize(keras.ops.cast(y_pred, "float32"), axis=-1)
        n = keras.ops.shape(z)[0]
        similarity = keras.ops.matmul(z, keras.ops.transpose(z)) / self.temperature
        similarity = similarity - 1e9 * keras.ops.eye(n)  # a view is not its own positive
        half = n // 2
        positives = keras.ops.concatenate([keras.ops.arange(half) + half, keras.ops.arange(half)])
        return keras.losses.sparse_categorical_crossentropy(positives, similarity, from_logits=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def projection_model(model: keras.Model, hidden: int = 256, out: int = 128) -> keras.Model:
    """SimCLR's network: ``model``'s encoder (its layers shared, so training this trains
    them) and a two-layer projection head that is thrown away after pretraining."""
    features = encoder(model).output
    x = layers.Dense(hidden, use_bias=False, name="projection_1")(features)
    x = layers.BatchNormalization(name="projection_bn")(x)
    x = layers.ReLU(name="projection_relu")(x)
    z = layers.Dense(out, dtype="float32", name="projection_2")(x)
    return keras.Model(model.inputs, z, name=f"{model.name}_simclr")


@dataclass
class PretrainResult:
    """The classifier whose encoder is pretrained (its softmax head is untrained), the loss
    history and the wall-clock seconds."""

    model: keras.Model
    history: dict[str, list[float]]
    seconds: float


def pretrain(
    config: PretrainConfig,
    images: np.ndarray,
    checkpoint_dir: Path,
    verbose: int | str = "auto",
) -> PretrainResult:
    """SimCLR on ``images`` (no labels used); resumable from ``checkpoint_dir``."""
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, **config.model_kwargs)
    network = projection_model(model)
    steps_per_epoch = len(images) // config.batch_size
    rate = warmup_cosine(config.learning_rate, config.epochs, steps_per_epoch)
    network.compile(
        optimizer=keras.optimizers.AdamW(rate, weight_decay=config.weight_decay),
        loss=NTXentLoss(config.temperature),
    )
    run = RunState(checkpoint_dir)
    first_epoch, epochs = run.begin(network, config.epochs)
    callbacks: list[keras.callbacks.Callback] = []
    if config.time_budget_minutes:
        callbacks.append(TimeBudget(config.time_budget_minutes))
    callbacks.append(SaveState(run, monitor=None))  # no validation: no best model
    network.fit(
        pair_dataset(images, config.batch_size, config.seed),
        epochs=epochs,
        initial_epoch=first_epoch,
        callbacks=callbacks,
        verbose=progress_verbosity(verbose),
        shuffle=False,  # pair_dataset shuffles; Keras would only warn
    )
    run.finish_training(int(network.optimizer.iterations.numpy()))
    return PretrainResult(model, run.history(), run.totals()[1])


def features(model: keras.Model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The encoder's features of raw faces (N, 48, 48[, 1]) in 0–255."""
    return encoder(model).predict(as_batch(images), batch_size=batch_size, verbose=0)


def linear_probe(
    model: keras.Model,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    eval_images: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Fit a logistic regression (scikit-learn, on standardised features) on the frozen
    encoder's features of the training faces; return its probabilities on each eval split."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    probe.fit(features(model, train_images), train_labels)
    probabilities = {}
    for split, images in eval_images.items():
        proba = np.zeros((len(images), 7), np.float32)
        proba[:, probe.classes_] = probe.predict_proba(features(model, images))
        probabilities[split] = proba
    return probabilities


def random_probe(
    name: str,
    kwargs: dict,
    seed: int,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    eval_images: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """:func:`linear_probe` of the network ``name`` with random weights drawn from ``seed``
    (the same on every run): how much a pretrained encoder's features add."""
    keras.utils.set_random_seed(seed)
    return linear_probe(build_model(name, **kwargs), train_images, train_labels, eval_images)
