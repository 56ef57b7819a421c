"""Test-time augmentation: named sets of affine views of a face, generated one view at a time.
Kept apart from :mod:`fer_utils.evaluation` so that the command line can offer the sets
without importing scikit-learn. (How records of TTA evaluations are named and found is the run
store's business: :mod:`fer_utils.runs`.)"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from fer_utils.config import IMAGE_SIZE


@dataclass(frozen=True)
class TTA:
    """A test-time-augmentation set: every combination of a shift (rows, columns in pixels),
    a scale and a rotation (degrees) about the face's centre, each view also mirrored
    left-right when ``flip``; pixels moved in from outside repeat the edge, as in training's
    ``fill_mode="nearest"``. The default is the ``shifts`` set: the 10 shifted and mirrored
    views of the cpu and full profiles' ``-tta`` records."""

    shifts: tuple[tuple[int, int], ...] = ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2))
    scales: tuple[float, ...] = (1.0,)
    angles: tuple[float, ...] = (0.0,)
    flip: bool = True

    def __len__(self) -> int:
        return len(self.shifts) * len(self.scales) * len(self.angles) * (2 if self.flip else 1)

    def matrices(self) -> list[np.ndarray]:
        """The 2×3 affine matrix (OpenCV's convention) of each unmirrored view."""
        centre = ((IMAGE_SIZE - 1) / 2, (IMAGE_SIZE - 1) / 2)
        out = []
        for scale, angle, (dy, dx) in itertools.product(self.scales, self.angles, self.shifts):
            matrix = cv2.getRotationMatrix2D(centre, angle, scale)
            matrix[:, 2] += (dx, dy)
            out.append(matrix)
        return out


TTA_SETS: dict[str, TTA] = {
    "shifts": TTA(),
    # 90 views within the range of the training augmentation (±10 % shift and zoom, ±10°
    # rotation); compare the -tta and -tta-affine records' PublicTest accuracy before using it
    "affine": TTA(
        shifts=((0, 0), (3, 0), (-3, 0), (0, 3), (0, -3)),
        scales=(0.9, 1.0, 1.1),
        angles=(-8.0, 0.0, 8.0),
    ),
    # Ten-crop averaging for models that see the central 40×40 pixels (``vgg`` with crop=40):
    # shifted 4 pixels diagonally, the centre crop is a corner crop; each view also mirrored
    "ten_crop": TTA(shifts=((0, 0), (4, 4), (4, -4), (-4, 4), (-4, -4))),
    # The face and its mirror image: the cheapest set (2 views), e.g. for predict on videos
    "flip": TTA(shifts=((0, 0),)),
}
"""Named TTA sets (a record's ``tta`` field names the one it was evaluated with)."""

PREDICT_DEFAULTS = {"image": "shifts", "video": "none", "webcam": "none"}
"""``predict``'s TTA set (``none`` or a name above) for each kind of source unless one is
chosen: on images the ``shifts`` views (what each set scores with the default model: its
records, which the README's default-model table shows); none on videos and webcams, where
every view adds to the time per frame (benchmarks/bench_inference.py prints the cost per face
of each set)."""


def tta_views(faces: np.ndarray, tta: TTA = TTA()) -> Iterator[np.ndarray]:
    """The test-time views of faces (N, 48, 48[, 1]), one at a time (all 90 views of a test
    split at once would take gigabytes): each of ``tta``'s affine views (OpenCV
    ``warpAffine``, edges replicated), followed by its mirror image if ``tta.flip``."""
    grey = faces[..., 0] if faces.ndim == 4 else faces
    size = (grey.shape[2], grey.shape[1])
    for matrix in tta.matrices():
        view = np.stack([
            cv2.warpAffine(face, matrix, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            for face in grey
        ]).reshape(faces.shape)  # fmt: skip
        yield view
        if tta.flip:
            yield view[:, :, ::-1]
