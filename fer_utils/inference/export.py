"""Export a saved Keras model for deployment: ONNX (onnxruntime) and, where this TensorFlow
supports it, TFLite / LiteRT; and check that the export computes what the Keras model does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_utils.inference.classifier import Classifier, ModelError, load_classifier

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}


def export_model(model_path: str | Path, out: str | Path | None = None, fmt: str = "onnx") -> Path:
    """Write ``model_path`` (a ``.keras`` file) as ``fmt`` via Keras' own ``model.export``
    (tf2onnx for ONNX); ``out`` defaults to the same name with the format's suffix."""
    import keras

    model_path = Path(model_path)
    out = Path(out) if out else model_path.with_suffix(FORMATS[fmt])
    model = keras.saving.load_model(model_path, safe_mode=True)
    if model.dtype_policy.name != "float32":  # export needs float32 weights and compute
        raise ModelError(f"{model_path}: export needs a float32 model, not {model.dtype_policy}")
    model(np.zeros((1, *model.input_shape[1:]), np.float32))  # export needs a called model
    try:
        model.export(str(out), format=fmt, verbose=False)
    except ImportError as error:
        raise ModelError(f"exporting to {fmt} needs an extra package: {error}") from error
    return out


def max_difference(a: Classifier, b: Classifier | str | Path, faces: np.ndarray) -> float:
    """Largest absolute difference between two models' probabilities on ``faces``."""
    b = b if isinstance(b, Classifier) else load_classifier(b)
    return float(np.abs(a(faces) - b(faces)).max())
