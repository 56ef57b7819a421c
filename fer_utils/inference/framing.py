"""How detectors frame FER2013's own faces, measured on FER2013 (never on an outside test set).

FER2013's 48×48 images are crops with their own framing (some forehead, the chin, little
else). A detector's box frames a face its own way; :data:`faces.CROP_GEOMETRY` maps one to the
other. Two measurements, both on FER2013 faces enlarged to photo size:

- :func:`box_geometry` (the fit): detect inside each enlarged face (edges replicated around it,
  so that boxes may reach past the frame) and invert the box: the FER2013 frame relative to the
  box gives the crop (median centre offset and side over box side);
- :func:`reframed_accuracy` (the check): place each face in a larger frame (:func:`reframe`:
  grey, noise or a blurred other face around it), detect, crop with each candidate geometry,
  classify, and compare with classifying the 48×48 face itself. The face's hard border in the
  frame may change the detector's box; the boxes are inverted here too, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_utils.data import Dataset
from fer_utils.inference.faces import Detector, Face, Geometry, crop_faces

SIDES = (96, 240)  # enlarged faces: side in pixels, drawn uniformly in this range
FRAME = (1.5, 2.5)  # reframed: frame height and width over the face's side, drawn uniformly
BACKGROUNDS = ("grey", "noise", "blur")  # what surrounds a reframed face, in turn
OWN_FRAME = "the face's own frame (known)"  # the ideal crop: exactly where the face was put


def sample_faces(data: Dataset, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random faces of ``split`` of ``data`` (in source order) and their labels."""
    rows = data.split(split)
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), min(n, len(rows)), False))
    return rows.images[pick], rows.labels[pick]


@dataclass(frozen=True)
class BoxFit:
    """A detector's measured framing: median geometry, the quartiles of its scale, the share of
    faces detected and how many faces were tried."""

    geometry: Geometry
    scale_quartiles: tuple[float, float]
    aspect: float  # median box width over height
    rate: float
    n: int

    @classmethod
    def of(cls, inverted: np.ndarray, n: int) -> BoxFit:
        """The fit of per-face rows (scale, dx, dy, aspect) from :func:`invert_box`."""
        if len(inverted) == 0:
            return cls(Geometry(), (np.nan, np.nan), np.nan, 0.0, n)
        scale, dx, dy, aspect = np.median(inverted, axis=0)
        quartiles = np.percentile(inverted[:, 0], [25, 75])
        geometry = Geometry(float(scale), float(dx), float(dy))
        return cls(
            geometry,
            (float(quartiles[0]), float(quartiles[1])),
            float(aspect),
            len(inverted) / n,
            n,
        )


def invert_box(face: Face, x: int, y: int, side: int) -> tuple[float, float, float, float]:
    """The geometry that turns ``face`` (a detector's box) into the square (``x``, ``y``,
    ``side``) where the FER2013 frame lies: (scale, dx, dy) as in :class:`Geometry`, and the
    box's aspect (w / h)."""
    scale = side / max(face.w, face.h)
    dx = (x + side / 2 - face.x - face.w / 2) / face.w
    dy = (y + side / 2 - face.y - face.h / 2) / face.h
    return scale, dx, dy, face.w / face.h


def found_face(faces: list[Face], x: int, y: int, side: int) -> Face | None:
    """Of ``faces``, the one whose centre is inside the square (``x``, ``y``, ``side``) and
    nearest its centre; None if no box is centred inside it."""
    cx, cy = x + side / 2, y + side / 2
    inside = [f for f in faces if x <= f.x + f.w / 2 <= x + side and y <= f.y + f.h / 2 <= y + side]
    return min(
        inside, key=lambda f: (f.x + f.w / 2 - cx) ** 2 + (f.y + f.h / 2 - cy) ** 2, default=None
    )


def enlarge(face: np.ndarray, side: int) -> np.ndarray:
    """A 48×48 face at ``side`` pixels (bicubic)."""
    return cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)


def box_geometry(faces: np.ndarray, detect: Detector, seed: int = 0) -> BoxFit:
    """Measure how ``detect`` frames FER2013 faces: each face enlarged to a random side in
    :data:`SIDES`, half a side of replicated edge around it, the detected box nearest its
    centre inverted (:func:`invert_box`) into the FER2013 frame; the median over the faces."""
    rng = np.random.default_rng(seed)
    rows = []
    for face in faces:
        side = int(rng.integers(SIDES[0], SIDES[1] + 1))
        pad = side // 2
        big = cv2.copyMakeBorder(enlarge(face, side), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found = found_face(detect(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)), pad, pad, side)
        if found is not None:
            rows.append(invert_box(found, pad, pad, side))
    return BoxFit.of(np.array(rows).reshape(-1, 4), len(faces))


def background(
    kind: str, shape: tuple[int, int], rng: np.random.Generator, other: np.ndarray | None = None
) -> np.ndarray:
    """A grey uint8 background of ``shape``: ``grey`` (one random level), ``noise`` (slightly
    blurred Gaussian noise) or ``blur`` (``other``, a face, enlarged to the frame and blurred
    beyond recognition)."""
    h, w = shape
    if kind == "grey":
        return np.full(shape, rng.integers(40, 216), np.uint8)
    if kind == "noise":
        noise = rng.normal(128, 50, shape).clip(0, 255).astype(np.uint8)
        return cv2.GaussianBlur(noise, (0, 0), 1.5)
    if kind == "blur":
        if other is None:
            raise ValueError("a blur background needs another face")
        big = cv2.resize(other, (w, h), interpolation=cv2.INTER_CUBIC)
        return cv2.GaussianBlur(big, (0, 0), max(h, w) / 16)
    raise ValueError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")


def reframe(face: np.ndarray, side: int, frame: np.ndarray, x: int, y: int) -> np.ndarray:
    """A BGR copy of the grey ``frame`` with ``face`` enlarged to ``side`` pixels at (x, y)."""
    out = frame.copy()
    out[y : y + side, x : x + side] = enlarge(face, side)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)


@dataclass
class Reframed:
    """Per face: was it detected, the label predicted on the 48×48 face itself (``direct``) and
    on the crop of each geometry and of :data:`OWN_FRAME` (−1 where not detected), and the box
    inverted into the FER2013 frame (rows of :func:`invert_box`, detected faces only)."""

    labels: np.ndarray
    detected: np.ndarray
    direct: np.ndarray
    cropped: dict[str, np.ndarray] = field(default_factory=dict)
    inverted: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @property
    def rate(self) -> float:
        return float(self.detected.mean())

    def accuracy(self, name: str | None = None) -> float:
        """Accuracy on the detected faces of geometry ``name``'s crops (None: direct)."""
        predicted = self.direct if name is None else self.cropped[name]
        return float((predicted == self.labels)[self.detected].mean())


def reframed_accuracy(
    faces: np.ndarray,
    labels: np.ndarray,
    classifier,
    detect: Detector,
    geometries: dict[str, Geometry],
    seed: int = 0,
) -> Reframed:
    """Place each face in a frame (side in :data:`SIDES`, frame :data:`FRAME` times larger,
    random position, :data:`BACKGROUNDS` in turn, the blurred face another of ``faces``),
    detect, crop with each of ``geometries`` and classify with ``classifier``; and classify
    the 48×48 faces directly and, where detected, the square where each face was put
    (:data:`OWN_FRAME`: what enlarging and shrinking back alone costs) (:class:`Reframed`)."""
    rng = np.random.default_rng(seed)
    n = len(faces)
    detected = np.zeros(n, bool)
    crops = {name: np.zeros((n, *faces.shape[1:]), np.uint8) for name in [*geometries, OWN_FRAME]}
    inverted = []
    for i, face in enumerate(faces):
        side = int(rng.integers(SIDES[0], SIDES[1] + 1))
        h, w = (round(side * rng.uniform(*FRAME)) for _ in range(2))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        kind = BACKGROUNDS[i % len(BACKGROUNDS)]
        other = faces[(i + 1 + rng.integers(n - 1)) % n] if n > 1 else face
        image = reframe(face, side, background(kind, (h, w), rng, other), x, y)
        found = found_face(detect(image), x, y, side)
        if found is None:
            continue
        detected[i] = True
        inverted.append(invert_box(found, x, y, side))
        for name, geometry in geometries.items():
            crops[name][i] = crop_faces(image, [found], geometry=geometry)[0]
        crops[OWN_FRAME][i] = crop_faces(image, [Face(x, y, side, side, 1.0)])[0]
    direct = classifier(faces).argmax(axis=1)
    cropped = {}
    for name, images in crops.items():
        cropped[name] = np.full(n, -1)
        if detected.any():
            cropped[name][detected] = classifier(images[detected]).argmax(axis=1)
    return Reframed(
        np.asarray(labels), detected, direct, cropped, np.array(inverted).reshape(-1, 4)
    )
