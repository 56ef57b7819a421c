"""Architectures, built by name from one registry.

Every model is self-contained: it takes raw grey faces, float32 (N, 48, 48, 1) in 0–255, and
returns softmax probabilities over the 7 classes in FER2013 order. Scaling (and, for transfer
backbones, resizing and channel repetition) happens inside the model, so a saved ``.keras``
file needs no preprocessing code to be used.
"""

from __future__ import annotations

import inspect
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from fer_utils.config import EMOTIONS, IMAGE_SIZE
from fer_utils.errors import ModelError, UsageError
from fer_utils.files import atomic_path
from fer_utils.heads import emotion_head
from fer_utils.preprocessing import CORRECTIONS, correct
from fer_utils.transfer import build_transfer

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
N_CLASSES = len(EMOTIONS)

Builder = Callable[..., keras.Model]
REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make a builder available as ``build_model(name)``."""

    def add(builder: Builder) -> Builder:
        REGISTRY[name] = builder
        return builder

    return add


@contextmanager
def dtype_policy(policy: str):
    """Build layers under ``policy`` (e.g. ``mixed_bfloat16``), restoring the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@keras.saving.register_keras_serializable(package="fer_utils")
class IlluminationCorrection(layers.Layer):
    """Applies :func:`fer_utils.preprocessing.correct` to raw faces inside a model.

    The correction is the scikit-image / OpenCV code itself, run through
    ``tf.numpy_function``, so a model trained on corrected faces still takes raw faces and
    there is one implementation of each correction. It has no gradient (none is needed for
    training) and does not export to ONNX."""

    def __init__(self, method: str, **kwargs) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if method not in CORRECTIONS:
            raise ValueError(f"unknown correction {method!r}; choose one of {CORRECTIONS}")
        self.method = method

    def call(self, faces):
        corrected = tf.numpy_function(
            lambda x: correct(x, self.method).astype(np.float32), [faces], tf.float32,
            stateful=False,
        )  # fmt: skip
        corrected.set_shape(faces.shape)
        return corrected

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "method": self.method}


def check_model(name: str, kwargs: dict) -> None:
    """Raise :class:`UsageError` unless ``name`` is registered and takes every key of ``kwargs``
    (checked before any data is loaded, so a typo fails at once)."""
    if name not in REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    parameters = inspect.signature(REGISTRY[name]).parameters
    unknown = [key for key in kwargs if key not in parameters]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise UsageError(
            f"model {name!r} takes no {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(parameters) or 'none'}"
        )


def check_init(path: str | Path, name: str, correction: str = "none", **kwargs) -> None:
    """Raise :class:`ModelError` unless ``path`` is a ``.keras`` file whose weights load into
    the model ``name`` (with ``correction`` and ``kwargs``) as training will load them: checked
    before any data is loaded, not after it."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"--init {path}: no such file; give a .keras model (e.g. pretrain's)")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"--init {path} is not a .keras model file (a zip archive)")
    model = build_model(name, correction=correction, **kwargs)
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"--init {path}: its weights do not fit a {name!r} model ({reason}); give a model of "
            "the same architecture"
        ) from None
    finally:
        keras.backend.clear_session()


def build_model(
    name: str, policy: str = "float32", correction: str = "none", **kwargs
) -> keras.Model:
    """Build the registered architecture ``name`` (see :data:`REGISTRY`).

    ``policy`` is the Keras dtype policy of its layers: ``mixed_bfloat16`` computes in
    bfloat16 (about twice as fast on CPUs with AVX-512 BF16) and keeps float32 weights; the
    output softmax is always float32. ``correction`` (see
    :data:`fer_utils.preprocessing.CORRECTIONS`) puts an illumination correction in front of
    the network, inside the model."""
    check_model(name, kwargs)
    with dtype_policy(policy):
        model = REGISTRY[name](**kwargs)
    if correction == "none":
        return model
    faces = keras.Input(INPUT_SHAPE, name="raw_faces")
    corrected = IlluminationCorrection(correction, name=f"correct_{correction}")(faces)
    return keras.Model(faces, model(corrected), name=f"{name}_{correction}")


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The raw-face input and the same faces scaled to 0–1."""
    faces = keras.Input(INPUT_SHAPE, name="faces")
    return faces, layers.Rescaling(1 / 255, name="scale")(faces)


def _dense_head(x: keras.KerasTensor, units: int, dropout: float) -> keras.KerasTensor:
    """Flatten, a dense–BN–ReLU layer of ``units``, dropout, and the softmax classifier."""
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    return emotion_head(layers.Dropout(dropout, name="dropout")(x))


def _conv_bn_relu(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
    x = layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


@register("baseline")
def baseline(dropout: float = 0.5, dense: int = 1024) -> keras.Model:
    """Stanford CS230's baseline: four 3×3×32 same-padding ReLU convolutions interleaved with
    two 2×2 max-pools, batch normalisation, 50 % dropout, a 1024-unit dense layer, softmax.
    One dropout, before the dense layer, where the report lists it."""
    faces, x = _inputs()
    for block in range(2):
        for k in range(2):
            x = _conv_bn_relu(x, 32, name=f"block{block + 1}_{k + 1}")
        x = layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    return keras.Model(faces, emotion_head(x), name="baseline")


@register("five_layer")
def five_layer(dropout: float = 0.3, dense: int = 1024) -> keras.Model:
    """Stanford CS230's five-layer net: convolutions of 32 5×5, 32 4×4 and 64 5×5 filters, each
    followed by a 3×3 max-pool with stride 2; batch normalisation at every layer; a 1024-unit
    dense layer with 30 % dropout; softmax."""
    faces, x = _inputs()
    for k, (filters, kernel) in enumerate(((32, 5), (32, 4), (64, 5)), start=1):
        x = _conv_bn_relu(x, filters, kernel, name=f"conv{k}")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{k}")(x)
    return keras.Model(faces, _dense_head(x, dense, dropout), name="five_layer")


@register("vgg")
def vgg(width: float = 1.0, dropout: float = 0.5, dense: int = 1024, crop: int = 48) -> keras.Model:
    """VGG-style net after Khaireddin & Chen (2021, 73.28 % on FER2013): four stages of two
    3×3 conv–BN–ReLU layers and a 2×2 max-pool, with 64·width … 512·width filters, then two
    dense layers with dropout. ``width`` scales every layer's filters. ``crop`` < 48 makes the
    net see the central ``crop``×``crop`` pixels of each face (the paper's 40): training's
    shifts then are random crops, and the ``ten_crop`` TTA set its ten-crop averaging."""
    faces, x = _inputs()
    if crop < IMAGE_SIZE:
        x = layers.CenterCrop(crop, crop, name="centre_crop")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for k in range(2):
            x = _conv_bn_relu(x, max(8, round(filters * width)), name=f"stage{stage}_{k + 1}")
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for k in range(2):
        x = layers.Dense(max(32, round(dense * width)), activation="relu", name=f"fc{k + 1}")(x)
        x = layers.Dropout(dropout, name=f"dropout{k + 1}")(x)
    return keras.Model(faces, emotion_head(x), name="vgg")


@register("fast_cnn")
def fast_cnn(
    width: int = 32, depth: tuple[int, ...] = (1, 1, 1, 1), dense: int = 512, dropout: float = 0.4
) -> keras.Model:
    """This project's CPU-efficient net: plain conv–BN–ReLU stages at 48, 24, 12 and 6 pixels
    (a 5×5 stem, then 3×3) with width·(1, 2, 4, 8) filters, each stage ``depth[i]`` convolutions
    and a 3×3 stride-2 max-pool, then a dense layer on the 3×3 map. Few, wide layers: on a CPU
    time follows multiply-adds, and each extra layer also costs a memory round trip, so the
    budget goes to width at low resolution rather than to depth at high resolution."""
    faces, x = _inputs()
    for stage, count in enumerate(depth):
        for k in range(count):
            kernel = 5 if stage == k == 0 else 3
            x = _conv_bn_relu(x, width * 2**stage, kernel, name=f"stage{stage + 1}_{k + 1}")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"stage{stage + 1}_pool")(x)
    return keras.Model(faces, _dense_head(x, dense, dropout), name="fast_cnn")


def _residual(x, filters: int, strides: int, name: str):
    """A basic pre-activation-free residual block: two 3×3 conv–BN, projection when needed."""
    shortcut = x
    y = _conv_bn_relu(x, filters, 3, strides, name=f"{name}_a")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(
            x
        )
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")(
        [y, shortcut]))  # fmt: skip


@register("resnet_lite")
def resnet_lite(
    width: int = 32, blocks: tuple[int, ...] = (1, 2, 2), dropout: float = 0.3
) -> keras.Model:
    """A small residual net, the encoder SimCLR pretrains in notebook 03: a 3×3 stem at 48×48,
    then residual stages at 24×24, 12×12 and 6×6 with width·(2, 4, 8) filters, global average
    pooling (no large dense layer) and dropout. At width 16 it has a third more multiply-adds
    than :func:`fast_cnn`, and its many narrow layers train several times slower on a CPU."""
    faces, x = _inputs()
    x = _conv_bn_relu(x, width, name="stem")
    for stage, count in enumerate(blocks):
        for k in range(count):
            strides = 2 if k == 0 else 1
            x = _residual(x, width * 2 ** (stage + 1), strides, name=f"stage{stage + 1}_{k + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(faces, emotion_head(x), name="resnet_lite")


@register("transfer")
def transfer(**kwargs) -> keras.Model:
    """An ImageNet backbone from ``keras.applications`` with the FER input and head; the
    arguments are those of :func:`fer_utils.transfer.build_transfer`."""
    return build_transfer(**kwargs)


def is_nested(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is a functional model used as a layer (a transfer backbone, the
    network behind an illumination correction)."""
    return isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential)


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """``model``'s layers in order, each nested model's layers (:func:`is_nested`) in its place."""
    return [
        inner
        for layer in model.layers
        for inner in (flat_layers(layer) if is_nested(layer) else [layer])
    ]


def forward_flops(model: keras.Model) -> float:
    """FLOPs (multiply-adds × 2) of the convolution and dense layers for one face."""
    total = 0.0
    for layer in flat_layers(model):
        if isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            total += 2 * h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def save_for_inference(model: keras.Model, path) -> None:
    """Save ``model`` without its optimizer state (a third of the size, same predictions),
    atomically: an interrupted save leaves the previous file, never a torn one.

    Rebuilt from its config: ``clone_model`` of a compiled model keeps the optimizer."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    with atomic_path(path) as temp:
        copy.save(temp)
