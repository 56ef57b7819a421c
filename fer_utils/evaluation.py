"""Evaluation: metrics (scikit-learn), per-class report, confusion, bootstrap confidence
intervals, and test-time augmentation."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from fer_utils.config import EMOTIONS, IMAGE_SIZE


def metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | int]:
    """Accuracy, balanced accuracy (mean per-class recall), macro-F1 over the 7 classes, and n.

    ``probabilities`` is (N, 7) (or (N,) predicted labels)."""
    predicted = probabilities.argmax(axis=1) if probabilities.ndim == 2 else probabilities
    classes = np.arange(len(EMOTIONS))
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(
            f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)
        ),
        "n": len(labels),
    }


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (one per face)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    labels: np.ndarray,
    predicted: np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the accuracy (resampling faces)."""
    correct = np.asarray(labels) == np.asarray(predicted)
    return bootstrap_mean_ci(correct, n_boot, level, seed)


def per_class_report(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support per emotion (scikit-learn's classification report)."""
    report = classification_report(
        labels, probabilities.argmax(axis=1), labels=np.arange(len(EMOTIONS)),
        target_names=list(EMOTIONS), output_dict=True, zero_division=0,
    )  # fmt: skip
    return pd.DataFrame(report).T.loc[list(EMOTIONS)].round(3)


def confusion(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """Confusion counts, true emotion in rows and predicted in columns."""
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), labels=np.arange(len(EMOTIONS)))
    table = pd.DataFrame(matrix, index=list(EMOTIONS), columns=list(EMOTIONS))
    table.index.name, table.columns.name = "true", "predicted"
    return table


@dataclass(frozen=True)
class TTA:
    """A test-time-augmentation set: every combination of a shift (rows, columns in pixels),
    a scale and a rotation (degrees) about the face's centre, each view also mirrored
    left-right when ``flip``; pixels moved in from outside repeat the edge, as in training's
    ``fill_mode="nearest"``. The default is the 10 shifted and mirrored views of every
    ``-tta`` record."""

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
}
"""Named TTA sets: ``<run>-tta`` records use ``shifts``, ``<run>-tta-<name>`` the others."""


def tta_run_name(run_name: str, tta: str) -> str:
    """The record name of ``run_name`` evaluated with the TTA set ``tta``."""
    return f"{run_name}-tta" if tta == "shifts" else f"{run_name}-tta-{tta}"


def split_tta_run(name: str) -> tuple[str, str | None]:
    """(run that trained the model, TTA set or None) of a record name: inverse of
    :func:`tta_run_name`, e.g. ``x-tta-affine`` → (``x``, ``affine``)."""
    for tta in TTA_SETS:
        suffix = tta_run_name("", tta)
        if name.endswith(suffix):
            return name.removesuffix(suffix), tta
    return name, None


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


def predict(
    model,
    faces: np.ndarray,
    tta: bool | str | TTA = False,
    batch_size: int = 512,
    progress: bool = False,
) -> np.ndarray:
    """Class probabilities (N, 7) of a self-contained model for uint8 or float faces; with
    ``tta`` (True: the default :class:`TTA`; a name in :data:`TTA_SETS`; or a :class:`TTA`)
    the mean over :func:`tta_views` (``progress``: a bar over the views)."""
    from tqdm.auto import tqdm

    x = np.asarray(faces, dtype=np.float32)
    x = x[..., None] if x.ndim == 3 else x
    if not tta:
        return model.predict(x, batch_size=batch_size, verbose=0)
    views = TTA() if tta is True else TTA_SETS[tta] if isinstance(tta, str) else tta
    total = np.zeros((len(x), len(EMOTIONS)), np.float64)
    for view in tqdm(tta_views(x, views), total=len(views), desc="TTA views", disable=not progress):
        total += model.predict(view, batch_size=batch_size, verbose=0)
    return (total / len(views)).astype(np.float32)


def most_confident_mistakes(
    labels: np.ndarray, probabilities: np.ndarray, k: int = 16
) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence)[:k]]


def example_per_class(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """For each emotion, the index of its first correctly classified face (else its first)."""
    right = probabilities.argmax(axis=1) == labels
    chosen = []
    for k in range(len(EMOTIONS)):
        of_class = np.flatnonzero(labels == k)
        correct = of_class[right[of_class]]
        chosen.append(int((correct if len(correct) else of_class)[0]))
    return np.array(chosen)


def comparison_table(labels: np.ndarray, candidates: dict[str, np.ndarray]) -> pd.DataFrame:
    """Accuracy with its 95 % bootstrap interval, balanced accuracy and macro-F1 of each
    candidate's probabilities (N, 7) against ``labels``, one row per candidate."""
    rows = []
    for name, probs in candidates.items():
        low, high = bootstrap_ci(labels, probs.argmax(1))
        rows.append({"model": name, **metrics(labels, probs), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows).set_index("model").drop(columns="n").round(4)


def lighting_robustness(
    models: dict[str, object],
    faces: np.ndarray,
    labels: np.ndarray,
    strengths: tuple[float, ...] = (0.25, 0.5, 0.75),
    shifts: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Accuracy of each self-contained model on ``faces`` under every lighting shift of
    :func:`fer_utils.preprocessing.shift_lighting` at each strength (strength 0 = the
    faces as they are). Long format: model, shift, strength, accuracy."""
    from fer_utils.preprocessing import SHIFTS, shift_lighting

    shifts = shifts or SHIFTS
    rows = []
    for name, model in models.items():
        clean = accuracy_score(labels, predict(model, faces).argmax(1))
        for shift in shifts:
            rows.append({"model": name, "shift": shift, "strength": 0.0, "accuracy": clean})
            for strength in strengths:
                shifted = shift_lighting(faces, shift, strength)
                accuracy = accuracy_score(labels, predict(model, shifted).argmax(1))
                rows.append(
                    {"model": name, "shift": shift, "strength": strength, "accuracy": accuracy}
                )
    return pd.DataFrame(rows)


def robustness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, from :func:`lighting_robustness`: accuracy on the unchanged faces, mean and
    worst accuracy over all shifted versions, and the mean drop; most robust first."""
    shifted = table[table.strength > 0].groupby("model").accuracy
    summary = pd.DataFrame(
        {
            "clean": table[table.strength == 0].groupby("model").accuracy.first(),
            "mean_under_shifts": shifted.mean(),
            "worst_shift": shifted.min(),
        }
    )
    summary["drop"] = summary.clean - summary.mean_under_shifts
    return summary.round(4).sort_values("mean_under_shifts", ascending=False)
