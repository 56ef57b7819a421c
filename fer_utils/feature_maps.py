"""What a trained network computes inside: first-layer filters, activation maps of every
convolution block, activation maximisation (tf-keras-vis), and which facial regions each
filter responds to."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy.ndimage import gaussian_filter
from tf_keras_vis.activation_maximization.input_modifiers import InputModifier

from fer_utils.config import IMAGE_SIZE
from fer_utils.data import as_batch
from fer_utils.models import flat_layers


@contextmanager
def quiet_keras_vis() -> Iterator[None]:
    """Silence tf-keras-vis under Keras 3: its input-structure warnings and progress bars."""
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            yield
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


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


def activations(
    model: keras.Model, faces: np.ndarray, layers: list[str], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Outputs (N, h, w, channels) of ``layers`` for faces (N, 48, 48[, 1]) in 0–255, by direct
    calls in batches (``predict`` would trace a new function for every probe)."""
    probe = keras.Model(model.input, [model.get_layer(n).output for n in layers])
    x = as_batch(faces)
    batches = []
    for start in range(0, len(x), batch_size):
        out = probe(x[start : start + batch_size], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        batches.append([keras.ops.convert_to_numpy(o) for o in out])
    return {
        name: np.concatenate([batch[k] for batch in batches]).astype(np.float32)
        for k, name in enumerate(layers)
    }


def upsampled(maps: np.ndarray) -> np.ndarray:
    """Maps (N, h, w) resized to the 48×48 face grid (bilinear)."""
    resized = tf.image.resize(maps[..., None], (IMAGE_SIZE, IMAGE_SIZE), method="bilinear")
    return resized.numpy()[..., 0]


def border_mask(grid: int, cells: int = 1) -> np.ndarray:
    """Boolean 48×48 mask of the pixels under the outer ``cells`` rings of a ``grid``×``grid``
    feature map: where a convolution's zero padding reaches, and the border of a 0–255 face
    reads as a strong edge."""
    ring = np.ones((grid, grid), dtype=bool)
    ring[cells : grid - cells, cells : grid - cells] = False
    return np.repeat(np.repeat(ring, -(-IMAGE_SIZE // grid), 0), -(-IMAGE_SIZE // grid), 1)[
        :IMAGE_SIZE, :IMAGE_SIZE
    ]


def block_maps(
    model: keras.Model, faces: np.ndarray, blocks: list[str], border: int = 1
) -> dict[str, np.ndarray]:
    """Per block, each face's activation averaged over the block's channels and upsampled to
    48×48, with the outer ``border`` cells of the block's grid set to NaN (0: keep them)."""
    maps = activations(model, faces, blocks)
    out = {}
    for name, values in maps.items():
        dense = upsampled(values.mean(axis=-1))
        if border:
            dense[:, border_mask(values.shape[1], border)] = np.nan
        out[name] = dense
    return out


def filter_activations(model: keras.Model, layer: str, images: np.ndarray) -> np.ndarray:
    """Each filter's activation of ``layer`` averaged over the positions, per image: (N,
    filters). On a block output (a ReLU) 0 means the filter is silent on that image."""
    return activations(model, images, [layer])[layer].mean(axis=(1, 2))


def liveliest_filters(activation: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` filters with the highest mean activation over the images
    (``activation`` from :func:`filter_activations`), most active first."""
    return np.argsort(-activation.mean(axis=0), kind="stable")[:k]


class GaussianBlur(InputModifier):
    """Blur the input with a Gaussian of ``sigma`` pixels every ``every`` steps (a tf-keras-vis
    input modifier): it removes the high-frequency patterns gradient ascent otherwise grows."""

    def __init__(self, sigma: float = 1.0, every: int = 4) -> None:
        self.sigma, self.every, self.step = sigma, every, 0

    def __call__(self, seed_input):
        self.step += 1
        if self.step % self.every:
            return seed_input
        blurred = gaussian_filter(np.asarray(seed_input), sigma=(0, self.sigma, self.sigma, 0))
        return tf.convert_to_tensor(blurred, dtype=seed_input.dtype)


class SeededJitter(InputModifier):
    """Roll the input by up to ±``jitter`` pixels in each direction (tf-keras-vis' ``Jitter``,
    but from its own random generator, so that a seed fixes the result)."""

    def __init__(self, jitter: int = 2, seed: int = 0) -> None:
        self.jitter, self.rng = jitter, np.random.default_rng(seed)

    def __call__(self, seed_input):
        shift = self.rng.integers(-self.jitter, self.jitter + 1, size=2)
        return tf.roll(seed_input, shift=tuple(int(s) for s in shift), axis=(1, 2))


class ClipRange(InputModifier):
    """Keep the input inside ``low``–``high`` at every step (tf-keras-vis clips only the
    returned image, so the optimised one could drift far outside what a face can be)."""

    def __init__(self, low: float = 0.0, high: float = 255.0) -> None:
        self.low, self.high = low, high

    def __call__(self, seed_input):
        return tf.clip_by_value(seed_input, self.low, self.high)


class Regularisation(NamedTuple):
    """What keeps an activation-maximisation image image-like: a random shift of up to
    ``jitter`` pixels every step, a Gaussian blur of ``blur`` pixels every ``blur_every``
    steps, and a total-variation penalty of weight ``tv``; the image stays in 0–255."""

    jitter: int
    blur: float
    blur_every: int
    tv: float


# Measured on the default model: a stronger blur (1 px every 4 steps) or total variation (0.05)
# left the filters' images below their activation on real faces; these let them rise well above.
FILTER_REGULARISATION = Regularisation(jitter=1, blur=0.5, blur_every=8, tv=0.005)
CLASS_REGULARISATION = Regularisation(jitter=2, blur=0.5, blur_every=8, tv=0.05)


def _maximise(
    model: keras.Model,
    modifier,
    score,
    count: int,
    steps: int,
    seed: int,
    regularisation: Regularisation,
    start: np.ndarray | None = None,
) -> np.ndarray:
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.regularizers import TotalVariation2D

    rng = np.random.default_rng(seed)
    base = 128.0 if start is None else np.asarray(start, np.float32)[None, ..., None]
    noise = rng.normal(0, 8, (count, IMAGE_SIZE, IMAGE_SIZE, 1))
    maximiser = ActivationMaximization(model, model_modifier=modifier, clone=True)
    jitter, blur, every, tv = regularisation
    with quiet_keras_vis():
        images = maximiser(
            score,
            seed_input=np.clip(base + noise, 0, 255).astype(np.float32),
            input_range=(0, 255),
            input_modifiers=[
                SeededJitter(jitter, seed),
                GaussianBlur(blur, every),
                ClipRange(0, 255),
            ],
            # tf-keras-vis' Norm regulariser pulls towards 0 (black on a 0–255 input), so total
            # variation and the blur keep the image smooth; ClipRange keeps it a possible face.
            regularizers=[TotalVariation2D(weight=tv)],
            optimizer=keras.optimizers.Adam(learning_rate=4.0),
            steps=steps,
        )
    return np.clip(np.asarray(images)[..., 0], 0, 255)


def maximise_classes(
    model: keras.Model,
    steps: int = 256,
    seed: int = 0,
    regularisation: Regularisation = CLASS_REGULARISATION,
) -> np.ndarray:
    """For each of the 7 emotions, the input (48×48, 0–255) that most raises its logit, from
    mid-grey noise, kept image-like by ``regularisation``."""
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = list(range(model.output_shape[-1]))
    score = CategoricalScore(classes)
    return _maximise(model, ReplaceToLinear(), score, len(classes), steps, seed, regularisation)


def maximise_filters(
    model: keras.Model,
    layer: str,
    filters: list[int],
    steps: int = 128,
    seed: int = 0,
    start: np.ndarray | None = None,
    regularisation: Regularisation = FILTER_REGULARISATION,
) -> np.ndarray:
    """For each filter of ``layer``, the input that maximises its mean activation, from
    ``start`` (a 48×48 face, e.g. the mean face; default mid-grey) plus noise. Read a block
    output (a ReLU): a filter silent on the start image gets no gradient and stays there."""
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer

    def score(output):
        return [tf.reduce_mean(output[i, ..., f]) for i, f in enumerate(filters)]

    extract = ExtractIntermediateLayer(layer)
    return _maximise(model, extract, score, len(filters), steps, seed, regularisation, start)


def filter_regions(
    model: keras.Model,
    faces: np.ndarray,
    layer: str,
    regions: dict[str, np.ndarray],
    border: int = 0,
) -> pd.DataFrame:
    """For every filter of ``layer``: the share of its mean (over ``faces``) activation that
    falls in each facial region (boolean 48×48 masks), relative to the region's share of the
    area, so 1 = no preference and 3 = three times denser there than on average. ``border``:
    leave out the pixels under the outer cells of the layer's grid (:func:`border_mask`), where
    the zero padding reads as an edge. A filter silent on every face has no preference: its
    row is NaN."""
    maps = activations(model, faces, [layer])[layer].mean(axis=0)  # (h, w, filters)
    dense = upsampled(np.moveaxis(maps, -1, 0))  # (filters, 48, 48)
    inside = ~border_mask(maps.shape[0], border) if border else np.ones(dense.shape[1:], bool)
    total = dense[:, inside].sum(axis=1)
    silent = total <= 0
    total[silent] = 1.0
    table = {}
    for name, mask in regions.items():
        kept = mask & inside
        table[name] = dense[:, kept].sum(axis=1) / total / (kept.sum() / inside.sum())
    table = pd.DataFrame(table).rename_axis("filter")
    table[silent] = np.nan
    return table.round(3)
