"""Face detection (OpenCV Haar cascade, MTCNN, or none for ready-cropped faces) and cropping
to the 48×48 grey faces the models take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fer_utils.config import IMAGE_SIZE

DETECTORS = ("haar", "mtcnn", "none")
DETECT_MAX_SIDE = 1280  # detection runs on a copy no larger than this; boxes map back
HAAR_WINDOW = 24  # pixels: the detection window of OpenCV's default frontal-face cascade
HAAR_STEP = 1.2  # ratio between successive face sizes the cascade searches
MTCNN_WINDOW = 12  # pixels: the smallest face MTCNN's first stage (P-Net) looks at


@dataclass(frozen=True)
class Face:
    """A detected face: box in pixels of the original image and the detector's score."""

    x: int
    y: int
    w: int
    h: int
    score: float


Detector = Callable[[np.ndarray], list[Face]]  # BGR uint8 image → faces


def _downscaled(image: np.ndarray, limit: float = 1.0) -> tuple[np.ndarray, float]:
    """``image`` shrunk to at most :data:`DETECT_MAX_SIDE` pixels and by at least ``limit``;
    never below one pixel a side (a 20000×1 strip stays 1 pixel high)."""
    scale = min(1.0, limit, DETECT_MAX_SIDE / max(image.shape[:2]))
    if scale == 1.0:
        return image, 1.0
    size = tuple(max(1, round(n * scale)) for n in image.shape[1::-1])  # (width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _rescaled(faces: list[Face], scale: float) -> list[Face]:
    if scale == 1.0:
        return faces
    return [Face(*(round(v / scale) for v in (f.x, f.y, f.w, f.h)), score=f.score) for f in faces]


def haar_detector(min_face: int = 30, step: float = HAAR_STEP) -> Detector:
    """OpenCV's frontal-face Haar cascade (ships inside opencv-python-headless 4.x): fast,
    misses turned and tilted faces. The image is first shrunk so that a face of ``min_face``
    pixels fills the cascade's 24-pixel window: no time is spent on smaller faces. ``step`` is
    the ratio between successive face sizes searched: 1.3 takes about a third less time than
    1.2 and may miss faces whose size falls between two steps."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def detect(image: np.ndarray) -> list[Face]:
        small, scale = _downscaled(image, limit=HAAR_WINDOW / min_face)
        smallest = max(HAAR_WINDOW, round(min_face * scale))
        if min(small.shape[:2]) < smallest:  # too small or thin to hold a face
            return []
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        boxes, _, weights = cascade.detectMultiScale3(
            grey, scaleFactor=step, minNeighbors=5, minSize=(smallest, smallest),
            outputRejectLevels=True,
        )  # fmt: skip
        faces = [Face(*map(int, b), score=float(s)) for b, s in zip(boxes, weights, strict=True)]
        return _rescaled(faces, scale)

    return detect


def mtcnn_detector(min_face: int = 30, min_confidence: float = 0.9) -> Detector:
    """MTCNN (the ``mtcnn`` package; its weights ship in the wheel): slower, finds more faces."""
    from mtcnn import MTCNN

    mtcnn = MTCNN()  # all three stages: the last one (ONet) refines the boxes

    def detect(image: np.ndarray) -> list[Face]:
        small, scale = _downscaled(image)
        if min(small.shape[:2]) < max(MTCNN_WINDOW, min_face * scale):  # too small or thin
            return []
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        # (its min_face_size argument breaks detection in mtcnn 1.0.0: filter sizes afterwards)
        faces = [
            Face(*map(int, f["box"]), score=float(f["confidence"]))
            for f in mtcnn.detect_faces(rgb)
            if f["confidence"] >= min_confidence and min(f["box"][2:]) / scale >= min_face
        ]
        return _rescaled(faces, scale)

    return detect


def whole_image(image: np.ndarray) -> list[Face]:
    """No detection: the image is already a face crop (e.g. the Kaggle image-folder edition)."""
    return [Face(0, 0, image.shape[1], image.shape[0], 1.0)]


def make_detector(name: str, min_face: int = 30, step: float = HAAR_STEP) -> Detector:
    """``haar`` | ``mtcnn`` | ``none`` (see :data:`DETECTORS`); ``step`` is Haar's."""
    if name == "haar":
        return haar_detector(min_face, step)
    if name == "mtcnn":
        return mtcnn_detector(min_face)
    if name == "none":
        return whole_image
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def crop_faces(image: np.ndarray, faces: list[Face], margin: float = 0.15) -> np.ndarray:
    """Square grey crops around ``faces``, widened by ``margin`` of the box on each side (FER2013
    faces include some forehead and chin), edge pixels replicated where the square leaves the
    image, resized to (N, 48, 48) uint8."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    crops = np.empty((len(faces), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i, f in enumerate(faces):
        side = max(1, round(max(f.w, f.h) * (1 + 2 * margin)))
        centre = (f.x + f.w / 2 - 0.5, f.y + f.h / 2 - 0.5)
        patch = cv2.getRectSubPix(grey, (side, side), centre)
        crops[i] = cv2.resize(patch, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return crops
