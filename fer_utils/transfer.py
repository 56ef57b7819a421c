"""ImageNet backbones from ``keras.applications`` as self-contained FER models.

Inside the model: resize 48 → ``size``, repeat the grey channel to RGB, the backbone's own
``preprocess_input``, the backbone in inference mode (its BatchNorm statistics stay the
ImageNet ones), dropout and a 7-way softmax. Training is two ordinary runs of
:func:`fer_utils.training.train`: first the head on the frozen backbone
(``trainable_layers=0``), then the top layers fine-tuned from that model (``init``) at a lower
learning rate.

Weights are found as Keras finds them: its cache (``$KERAS_HOME/models`` or
``~/.keras/models``), an explicit file, or Keras' own download where the machine is online.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from fer_utils.config import IMAGE_SIZE
from fer_utils.errors import FerError
from fer_utils.heads import emotion_head
from fer_utils.settings import TrainConfig


@dataclass(frozen=True)
class Backbone:
    """One ``keras.applications`` network and the file name of its no-top ImageNet weights
    in the Keras cache (``{size}`` is the input size, for MobileNetV2's per-size files)."""

    name: str
    module: str
    constructor: str
    weights_file: str


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("vgg16", "vgg16", "VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        Backbone(
            "resnet50", "resnet", "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        ),
        Backbone(
            "mobilenetv2",
            "mobilenet_v2",
            "MobileNetV2",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
        ),
        Backbone("efficientnetb0", "efficientnet", "EfficientNetB0", "efficientnetb0_notop.h5"),
    )
}


class WeightsError(FerError, FileNotFoundError):
    """Pretrained weights were asked for and cannot be found or downloaded."""


def _backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "models"


def cached_weights(backbone: str, size: int) -> Path:
    """The path of ``backbone``'s no-top ImageNet weights in the Keras cache (may not exist)."""
    return keras_cache() / _backbone(backbone).weights_file.format(size=size)


def resolve_weights(backbone: str, weights: str | None, size: int) -> tuple[str | None, str]:
    """What to pass as ``keras.applications``' ``weights`` argument, and a sentence saying
    which weights those are.

    ``weights``: ``None`` (random), a file path, ``"imagenet"`` (the cached file, else Keras'
    download) or ``"auto"`` (the cached file, else random weights, said plainly)."""
    if weights is None:
        return None, f"{backbone}: random initialisation (no pretrained weights)"
    cached = cached_weights(backbone, size)
    if weights in ("imagenet", "auto"):
        if cached.is_file():
            return str(cached), f"{backbone}: ImageNet weights from the Keras cache ({cached})"
        if weights == "auto":
            return None, (
                f"{backbone}: RANDOM initialisation - no ImageNet weights in the Keras cache "
                f"({cached}); on a machine with internet, weights='imagenet' downloads them"
            )
        return "imagenet", f"{backbone}: ImageNet weights, downloaded by Keras into {cached}"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} not found. Pass the no-top ImageNet weights of {backbone} "
            f"(Keras names it {cached.name}), or put that file in {cached.parent} and use "
            f"weights='imagenet'."
        )
    return str(path), f"{backbone}: weights from {path}"


@keras.saving.register_keras_serializable(package="fer_utils")
class BackbonePreprocess(layers.Layer):
    """The backbone's own ``keras.applications.<module>.preprocess_input`` as a layer (a
    Lambda would not load in safe mode), so saved models take raw 0–255 faces."""

    def __init__(self, backbone: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self._preprocess = getattr(keras.applications, _backbone(backbone).module).preprocess_input

    def call(self, images):
        return self._preprocess(images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone": self.backbone}


def build_transfer(
    backbone: str = "mobilenetv2",
    size: int = 96,
    weights: str | None = None,
    trainable_layers: int = 0,
    dropout: float = 0.3,
) -> keras.Model:
    """A self-contained FER model on an ImageNet backbone (see the module's docstring).

    ``trainable_layers``: how many of the backbone's last layers train (0 = frozen: stage one;
    BatchNorm layers always stay frozen, and run in inference mode)."""
    spec = _backbone(backbone)
    source, _ = resolve_weights(backbone, weights, size)
    application = getattr(keras.applications, spec.constructor)
    try:
        net = application(
            include_top=False, weights=source, input_shape=(size, size, 3), pooling="avg"
        )
    except Exception as error:  # urllib / OSError / ValueError, depending on what failed
        raise WeightsError(
            f"could not get {backbone}'s ImageNet weights ({type(error).__name__}: {error}). "
            f"Without internet, download {spec.weights_file.format(size=size)} elsewhere and "
            f"put it in {keras_cache()}, or pass its path as weights."
        ) from error
    net.trainable = trainable_layers > 0
    if trainable_layers > 0:
        for k, layer in enumerate(net.layers):
            top = k >= len(net.layers) - trainable_layers
            layer.trainable = top and not isinstance(layer, layers.BatchNormalization)

    faces = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="faces")
    x = layers.Resizing(size, size, name="resize")(faces)
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = BackbonePreprocess(backbone, name="preprocess")(x)
    x = net(x, training=False)  # BatchNorm keeps its ImageNet statistics, also when fine-tuning
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(faces, emotion_head(x), name=f"transfer_{backbone}")


def backbone_weights(config: TrainConfig) -> str:
    """What a transfer run's backbone started from (``config``: its TrainConfig), in words for
    its record: ImageNet weights (and from where), random weights, or the model it continues."""
    if config.init:
        return f"continues {Path(config.init).name}"
    kwargs = config.model_kwargs
    defaults = {k: v.default for k, v in inspect.signature(build_transfer).parameters.items()}
    options = defaults | kwargs
    return resolve_weights(options["backbone"], options["weights"], options["size"])[1]


def two_stage(
    backbone: str, size: int, weights: str | None, epochs: tuple[int, int], batch_size: int,
    seed: int, head_model: Path, fine_tune_layers: int = 20,
) -> tuple[TrainConfig, TrainConfig]:  # fmt: skip
    """The two TrainConfigs of the transfer recipe: a new head on the frozen backbone (learning
    rate 1e-3), then the backbone's last ``fine_tune_layers`` fine-tuned from the first stage's
    saved model ``head_model`` at a tenth of it (BatchNorm stays frozen)."""
    head = TrainConfig(
        "transfer", {"backbone": backbone, "size": size, "weights": weights},
        epochs=epochs[0], batch_size=batch_size, learning_rate=1e-3, seed=seed,
    )  # fmt: skip
    tune = TrainConfig(
        "transfer", {"backbone": backbone, "size": size, "trainable_layers": fine_tune_layers},
        epochs=epochs[1], batch_size=batch_size, learning_rate=1e-4, seed=seed,
        init=str(head_model),
    )  # fmt: skip
    return head, tune
