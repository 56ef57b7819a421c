"""Illumination corrections and controlled lighting shifts for grey faces.

Both work on stacks of faces (N, 48, 48) or (N, 48, 48, 1) with values in 0–255 and return
float32 of the same shape in 0–255, so a corrected face is still a valid model input. The
corrections are scikit-image / OpenCV calls; the few lines around them map each method's
output back to 0–255. Models apply a correction inside themselves
(:class:`fer_utils.models.IlluminationCorrection`), so a saved model still takes raw faces.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from skimage import exposure, filters

SHIFTS: dict[str, str] = {
    "darker": "intensity × (1 − 0.8 s)",
    "brighter": "distance to white × (1 − 0.8 s)",
    "low_contrast": "contrast × (1 − 0.8 s)",
    "gamma": "gamma 1 + 2 s",
    "side_light": "right edge × (1 − 0.9 s)",
}
"""Controlled lighting changes of :func:`shift_lighting`, each with what its strength s does."""


def _per_image(images: np.ndarray) -> np.ndarray:
    """Per-image axes for reductions over a stack (N, H, W)."""
    return images.reshape(len(images), -1)


def _rescale(images: np.ndarray) -> np.ndarray:
    """Stretch each image to 0–255 (a constant image becomes mid-grey)."""
    flat = _per_image(images)
    low, high = flat.min(axis=1), flat.max(axis=1)
    span = np.where(high > low, high - low, 1.0)
    out = (images - low[:, None, None]) / span[:, None, None] * 255
    return np.where((high > low)[:, None, None], out, 127.5)


def _uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def histogram_equalisation(images: np.ndarray) -> np.ndarray:
    """Global histogram equalisation (OpenCV ``equalizeHist``) of each face."""
    return np.stack([cv2.equalizeHist(face) for face in _uint8(images)]).astype(np.float32)


def clahe(images: np.ndarray, clip_limit: float = 2.0, tiles: int = 4) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV) on ``tiles``×``tiles`` tiles
    (12×12 pixels on a 48×48 face)."""
    equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
    return np.stack([equaliser.apply(face) for face in _uint8(images)]).astype(np.float32)


def adaptive_gamma(images: np.ndarray) -> np.ndarray:
    """Gamma correction with each face's own gamma, chosen so that its mean becomes
    mid-grey: ``gamma = log 0.5 / log mean`` (clipped to 1/4…4)."""
    scaled = images / 255.0
    mean = np.clip(_per_image(scaled).mean(axis=1), 1 / 255, 254 / 255)
    gamma = np.clip(np.log(0.5) / np.log(mean), 0.25, 4.0)
    return (255 * scaled ** gamma[:, None, None]).astype(np.float32)


def difference_of_gaussians(images: np.ndarray, low: float = 1.0, high: float = 2.0) -> np.ndarray:
    """Band-pass filter (scikit-image ``difference_of_gaussians``), stretched to 0–255: removes
    slow illumination gradients and keeps edges."""
    band = filters.difference_of_gaussians(images.astype(np.float64), low, high, channel_axis=0)
    return _rescale(band).astype(np.float32)


def tan_triggs(
    images: np.ndarray, gamma: float = 0.2, alpha: float = 0.1, tau: float = 10.0
) -> np.ndarray:
    """Tan & Triggs (2010) normalisation: gamma 0.2, difference of Gaussians (σ 1 and 2), two
    stages of contrast equalisation and a tanh squashing, stretched to 0–255.

    No maintained library ships it; the steps below follow the paper's equations."""
    x = (images / 255.0) ** gamma * 255.0
    x = filters.difference_of_gaussians(x, 1.0, 2.0, channel_axis=0)
    norm = (_per_image(np.abs(x) ** alpha).mean(axis=1) ** (1 / alpha))[:, None, None]
    x = x / np.where(norm > 0, norm, 1.0)
    norm = _per_image(np.minimum(tau, np.abs(x)) ** alpha).mean(axis=1) ** (1 / alpha)
    x = x / np.where(norm > 0, norm, 1.0)[:, None, None]
    return _rescale(tau * np.tanh(x / tau)).astype(np.float32)


def standardise(images: np.ndarray, clip: float = 3.0) -> np.ndarray:
    """Per-image standardisation (zero mean, unit variance), clipped to ±3σ and mapped to
    0–255 (a constant face becomes mid-grey)."""
    flat = _per_image(images.astype(np.float64))
    std = flat.std(axis=1)
    z = (images - flat.mean(axis=1)[:, None, None]) / np.where(std > 0, std, 1.0)[:, None, None]
    return ((np.clip(z, -clip, clip) + clip) / (2 * clip) * 255).astype(np.float32)


_CORRECTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda images: images.astype(np.float32),
    "histeq": histogram_equalisation,
    "clahe": clahe,
    "gamma": adaptive_gamma,
    "tan_triggs": tan_triggs,
    "dog": difference_of_gaussians,
    "standardise": standardise,
}
CORRECTIONS: tuple[str, ...] = tuple(_CORRECTORS)
"""Illumination corrections, in the order the notebook shows them."""


def _stack(images: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, H, W) float view of faces given as (N, H, W) or (N, H, W, 1), and the input shape."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        return images[..., 0], images.shape
    if images.ndim != 3:
        raise ValueError(f"expected faces (N, H, W) or (N, H, W, 1), got shape {images.shape}")
    return images, images.shape


def correct(images: np.ndarray, method: str) -> np.ndarray:
    """Apply the illumination correction ``method`` (one of :data:`CORRECTIONS`).

    Faces (N, H, W) or (N, H, W, 1) in 0–255 in; float32 of the same shape in 0–255 out."""
    if method not in _CORRECTORS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    faces, shape = _stack(images)
    if len(faces) == 0:
        return np.zeros(shape, np.float32)
    return _CORRECTORS[method](faces.astype(np.float32)).reshape(shape).astype(np.float32)


def shift_lighting(images: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """A controlled lighting change of ``strength`` 0 (none) … 1 (extreme):

    - ``darker``: intensities scaled by 1 − 0.8·s (under-exposure);
    - ``brighter``: the distance to white scaled by 1 − 0.8·s (over-exposure);
    - ``low_contrast``: deviations from the face's mean scaled by 1 − 0.8·s;
    - ``gamma``: a gamma of 1 + 2·s (mid-tones darken, shadows crush);
    - ``side_light``: a left-to-right shadow, the right edge scaled by 1 − 0.9·s.

    Faces (N, H, W) or (N, H, W, 1) in 0–255 in; float32 of the same shape in 0–255 out."""
    if kind not in SHIFTS:
        raise ValueError(f"unknown lighting shift {kind!r}; choose one of {', '.join(SHIFTS)}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be between 0 and 1, not {strength}")
    faces, shape = _stack(images)
    x = faces.astype(np.float32)
    if kind == "darker":
        out = x * (1 - 0.8 * strength)
    elif kind == "brighter":
        out = 255 - (255 - x) * (1 - 0.8 * strength)
    elif kind == "low_contrast":
        mean = _per_image(x).mean(axis=1)[:, None, None]
        out = mean + (x - mean) * (1 - 0.8 * strength)
    elif kind == "gamma":
        out = 255 * exposure.adjust_gamma(x / 255, 1 + 2 * strength)
    else:
        out = x * np.linspace(1.0, 1 - 0.9 * strength, x.shape[2], dtype=np.float32)
    return np.clip(out, 0, 255).astype(np.float32).reshape(shape)
