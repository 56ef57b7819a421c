"""What a trained network computes inside: first-layer filters, activation maps of every
convolution block, activation maximisation (tf-keras-vis), and which facial regions each
filter responds to."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from fer_utils.config import IMAGE_SIZE
from fer_utils.data import as_batch
from fer_utils.models import flat_layers


def conv_layers(model: keras.Model) -> list[str]:
    """Names of the model's Conv2D layers, input to output (nested models' included)."""
    return [layer.name for layer in flat_layers(model) if isinstance(layer, keras.layers.Conv2D)]


def block_outputs(model: keras.Model) -> list[str]:
    """One layer per convolution block: the activation that follows each Conv2D (its ReLU or
    residual output), where the block's feature maps are read."""
    names = [layer.name for layer in model.layers]
    blocks = []
    for conv in conv_layers(model):
        after = names[names.index(conv) + 1 :]
        relu = next((n for n in after if isinstance(model.get_layer(n), keras.layers.ReLU)), conv)
        if relu not in blocks:
            blocks.append(relu)
    return blocks


def first_layer_filters(model: keras.Model) -> np.ndarray:
    """The first convolution's kernels as (filters, k, k) images (single input channel)."""
    kernel = model.get_layer(conv_layers(model)[0]).kernel.numpy()
    return np.moveaxis(kernel[:, :, 0, :], -1, 0)


def activations(model: keras.Model, faces: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """Outputs (N, h, w, channels) of ``layers`` for faces (N, 48, 48[, 1]) in 0–255."""
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in layers])
    x = as_batch(faces)
    outputs = probe.predict(x, verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return {n: np.asarray(o, np.float32) for n, o in zip(layers, outputs, strict=True)}


def upsampled(maps: np.ndarray) -> np.ndarray:
    """Maps (N, h, w) resized to the 48×48 face grid (bilinear)."""
    resized = tf.image.resize(maps[..., None], (IMAGE_SIZE, IMAGE_SIZE), method="bilinear")
    return resized.numpy()[..., 0]


def _maximise(model: keras.Model, modifier, score, count: int, steps: int, seed: int):
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.input_modifiers import Jitter
    from tf_keras_vis.activation_maximization.regularizers import TotalVariation2D

    rng = np.random.default_rng(seed)
    start = (128 + rng.normal(0, 8, (count, IMAGE_SIZE, IMAGE_SIZE, 1))).astype(np.float32)
    maximiser = ActivationMaximization(model, model_modifier=modifier, clone=True)
    images = maximiser(
        score,
        seed_input=start,
        input_range=(0, 255),
        input_modifiers=[Jitter(jitter=2)],
        # tf-keras-vis' Norm regulariser pulls towards 0 (black on a 0–255 input), so only total
        # variation keeps the image smooth; the input range clips it.
        regularizers=[TotalVariation2D(weight=0.05)],
        optimizer=keras.optimizers.Adam(learning_rate=4.0),
        steps=steps,
    )
    return np.clip(np.asarray(images)[..., 0], 0, 255)


def maximise_classes(model: keras.Model, steps: int = 256, seed: int = 0) -> np.ndarray:
    """For each of the 7 emotions, the input (48×48, 0–255) that most raises its logit,
    regularised by total variation and jitter so that it stays image-like."""
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = list(range(model.output_shape[-1]))
    return _maximise(model, ReplaceToLinear(), CategoricalScore(classes), len(classes), steps, seed)


def maximise_filters(
    model: keras.Model, layer: str, filters: list[int], steps: int = 128, seed: int = 0
) -> np.ndarray:
    """For each filter of ``layer``, the input that maximises its mean activation."""
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer

    def score(output):
        return [tf.reduce_mean(output[i, ..., f]) for i, f in enumerate(filters)]

    return _maximise(model, ExtractIntermediateLayer(layer), score, len(filters), steps, seed)


def filter_regions(
    model: keras.Model, faces: np.ndarray, layer: str, regions: dict[str, np.ndarray]
) -> pd.DataFrame:
    """For every filter of ``layer``: the share of its mean (over ``faces``) activation that
    falls in each facial region (boolean 48×48 masks), relative to the region's area share, so
    1 = no preference and 3 = three times denser there than on average."""
    maps = activations(model, faces, [layer])[layer].mean(axis=0)  # (h, w, filters)
    dense = upsampled(np.moveaxis(maps, -1, 0))  # (filters, 48, 48)
    total = dense.sum(axis=(1, 2)) + 1e-12
    table = {
        name: dense[:, mask].sum(axis=1) / total / mask.mean() for name, mask in regions.items()
    }
    return pd.DataFrame(table).rename_axis("filter").round(3)
