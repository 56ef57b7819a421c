"""The project's layers that saved models hold beyond Keras' own (the networks' building
blocks are in :mod:`fer_utils.models`): importing this module registers them for loading, so
that loading a model needs nothing heavier.

* :class:`Temperature`: the calibration inside a shipped model (:mod:`fer_utils.calibration`);
* :class:`FaceView` and :class:`EnsemblePool`: an ensemble exported as one model
  (:mod:`fer_utils.inference.export`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fer_utils.config import EPS

TAPS = 4  # input pixels behind each pixel of a bilinear view (a mirror or a shift needs 1)
POOLS = ("linear", "log")  # how fer_utils.ensemble.Ensemble combines its members


@keras.saving.register_keras_serializable(package="fer_utils")
class Temperature(keras.layers.Layer):
    """Probabilities p → softmax(log(max(p, eps)) / temperature): temperature scaling of a
    softmax model's output, its order (argmax) unchanged. Nothing in it is trained."""

    def __init__(self, temperature: float, eps: float = EPS, **kwargs) -> None:
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.eps = float(eps)

    def call(self, probabilities):
        logits = ops.log(ops.maximum(probabilities, self.eps)) / self.temperature
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature, "eps": self.eps}


@keras.saving.register_keras_serializable(package="fer_utils")
class FaceView(keras.layers.Layer):
    """One fixed test-time view of faces (N, 48, 48, 1): each output pixel a weighted sum of
    at most ``taps`` input pixels (``index``, ``weight``: saved with the model, never
    trained), which an affine warp with replicated edges (bilinear: 4 pixels) and its mirror
    image are. Gather, multiply and sum: it exports to ONNX."""

    def __init__(self, taps: int = TAPS, **kwargs) -> None:
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.taps = taps

    def build(self, input_shape) -> None:
        self.face_shape = tuple(input_shape[1:])
        shape = (int(np.prod(self.face_shape)), self.taps)
        self.index = self.add_weight(shape, "zeros", dtype="int32", trainable=False, name="index")
        self.weight = self.add_weight(shape, "zeros", trainable=False, name="weight")

    def call(self, faces):
        flat = ops.reshape(faces, (-1, self.index.shape[0]))
        view = ops.sum(ops.take(flat, self.index, axis=1) * self.weight, axis=-1)
        return ops.reshape(view, (-1, *self.face_shape))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "taps": self.taps}


@keras.saving.register_keras_serializable(package="fer_utils")
class EnsemblePool(keras.layers.Layer):
    """Members' probabilities (a list of (N, 7)) pooled as :class:`fer_utils.ensemble.Ensemble`
    pools them: ``linear``, the mean weighted by ``member_weights`` (normalised); ``log``, the
    softmax of the weighted sum of their log-probabilities (clipped at ``eps``)."""

    def __init__(
        self, member_weights: list[float], pool: str = "linear", eps: float = EPS, **kwargs
    ) -> None:
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if pool not in POOLS:
            raise ValueError(f"pool {pool!r} is not one of {POOLS}")
        self.member_weights = [float(w) for w in member_weights]
        self.pool = pool
        self.eps = float(eps)

    def call(self, members):
        stacked = ops.stack(list(members), axis=0)
        weights = ops.reshape(ops.convert_to_tensor(self.member_weights, "float32"), (-1, 1, 1))
        if self.pool == "log":
            logs = ops.log(ops.clip(stacked, self.eps, 1.0))
            return ops.softmax(ops.sum(weights * logs, axis=0), axis=-1)
        return ops.sum(weights * stacked, axis=0) / sum(self.member_weights)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "member_weights": self.member_weights,
            "pool": self.pool,
            "eps": self.eps,
        }
