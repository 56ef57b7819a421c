"""Metrics of predicted class probabilities against FER2013 labels (scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from fer_utils.config import EMOTIONS


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
