"""Face detection (OpenCV Haar cascade, MTCNN, or none for ready-cropped faces) and cropping
to the 48×48 grey faces the models take, framed the way FER2013 frames its faces."""

from __future__ import annotations

import math
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
    """A detected face: box in pixels of the original image, the detector's score, and which
    detector found it (its :data:`CROP_GEOMETRY` frames the crop)."""

    x: int
    y: int
    w: int
    h: int
    score: float
    detector: str = "none"


@dataclass(frozen=True)
class Geometry:
    """How a crop frames a detector's box: a square of side ``scale``·max(w, h) whose centre is
    the box's, moved by ``dx``·w to the right and ``dy``·h down."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    @classmethod
    def centred(cls, margin: float) -> Geometry:
        """The box's square widened by ``margin`` of the box on each side, same centre."""
        return cls(scale=1 + 2 * margin)

    def square(self, face: Face) -> tuple[int, int, int]:
        """(x0, y0, side) of the crop in whole pixels of the image (may reach outside it).
        web/src/pipeline.js (cropSquare) does the same arithmetic: keep the two in step."""
        side = max(1, round(self.scale * max(face.w, face.h)))  # halves to even, as pyRound
        cx = face.x + face.w / 2 + self.dx * face.w
        cy = face.y + face.h / 2 + self.dy * face.h
        return math.floor(cx - side / 2 + 0.5), math.floor(cy - side / 2 + 0.5), side


# Where each detector's box sits in a FER2013 frame, measured on FER2013 itself (PublicTest
# faces, each detector's box inverted into the 48×48 frame) by
#     python benchmarks/bench_framing.py --fit
# which prints these lines; `python benchmarks/bench_framing.py` checks them on PrivateTest.
# They are parameters of the crop, not results. "none": the image is the crop, taken whole.
CROP_GEOMETRY: dict[str, Geometry] = {
    "haar": Geometry(scale=1.029, dx=0.0, dy=0.0),
    "mtcnn": Geometry(scale=0.962, dx=0.014, dy=-0.009),
    "none": Geometry(),
}


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
    return [
        Face(*(round(v / scale) for v in (f.x, f.y, f.w, f.h)), f.score, f.detector) for f in faces
    ]


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
        faces = [Face(*map(int, b), float(s), "haar") for b, s in zip(boxes, weights, strict=True)]
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
            Face(*map(int, f["box"]), float(f["confidence"]), "mtcnn")
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


def crop_square(grey: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The ``side``×``side`` pixels of ``grey`` from (``x0``, ``y0``), whole pixels, edge pixels
    replicated where the square leaves the image (OpenCV's BORDER_REPLICATE)."""
    rows = np.clip(np.arange(y0, y0 + side), 0, grey.shape[0] - 1)
    cols = np.clip(np.arange(x0, x0 + side), 0, grey.shape[1] - 1)
    return grey[np.ix_(rows, cols)]


def crop_faces(
    image: np.ndarray,
    faces: list[Face],
    margin: float | None = None,
    geometry: Geometry | None = None,
) -> np.ndarray:
    """Square grey crops of ``faces``, resized to (N, 48, 48) uint8 with ``INTER_AREA``. Each is
    framed by ``geometry`` if given, else by a centred square widened by ``margin`` of the box
    on each side if given, else by its detector's :data:`CROP_GEOMETRY` (measured so that the
    crop frames the face as FER2013 does). Crops are whole pixels (:meth:`Geometry.square`),
    edge pixels replicated where the square leaves the image."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if geometry is None and margin is not None:
        geometry = Geometry.centred(margin)
    crops = np.empty((len(faces), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i, f in enumerate(faces):
        framing = CROP_GEOMETRY[f.detector] if geometry is None else geometry
        patch = crop_square(grey, *framing.square(f))
        crops[i] = cv2.resize(patch, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return crops
