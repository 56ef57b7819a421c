"""From a user's own photos, videos or webcam to emotion predictions, and model export.

``classifier`` loads a saved model (Keras or ONNX), ``faces`` finds and crops faces, ``media``
reads images, videos and webcams, ``predict`` ties them together, ``export`` writes ONNX.
"""

from fer_utils.inference.classifier import (
    Classifier,
    ModelError,
    default_model_path,
    load_classifier,
    set_default_model,
)
from fer_utils.inference.faces import DETECTORS, crop_faces, make_detector
from fer_utils.inference.media import MediaError
from fer_utils.inference.predict import predict_sources

__all__ = [
    "DETECTORS",
    "Classifier",
    "MediaError",
    "ModelError",
    "crop_faces",
    "default_model_path",
    "load_classifier",
    "make_detector",
    "predict_sources",
    "set_default_model",
]
