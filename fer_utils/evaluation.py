"""Evaluation: metrics (scikit-learn), per-class report, confusion, bootstrap confidence
intervals (of one accuracy and of a paired gain), prediction with test-time augmentation (the
view sets are :mod:`fer_utils.tta`'s), confident mistakes, model comparisons with intervals and
lighting robustness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from fer_utils.config import EMOTIONS
from fer_utils.data import as_batch
from fer_utils.errors import UsageError
from fer_utils.progress import progress_bar
from fer_utils.tta import TTA, TTA_SETS, tta_views


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


def accuracy_ci(accuracy: float, n: int, **options) -> tuple[float, float]:
    """95 % bootstrap interval of an accuracy known only as a share of ``n`` faces (the faces
    not at hand): :func:`bootstrap_mean_ci` of that many right and wrong answers, which is
    what resampling the faces would give; ``options`` as there."""
    return bootstrap_mean_ci(np.arange(n) < round(accuracy * n), **options)


def verdict(
    low: float, high: float, reference: float = 0.0, words: tuple[str, str] = ("below", "above")
) -> str:
    """Where the interval [``low``, ``high``] lies against ``reference``: ``words[0]`` when it
    is wholly below it, ``words[1]`` when wholly above, and "within noise" when it holds it."""
    return words[1] if low > reference else words[0] if high < reference else "within noise"


def bootstrap_gain_ci(
    labels: np.ndarray, predicted: np.ndarray, baseline: np.ndarray, **options
) -> tuple[float, float]:
    """Paired percentile bootstrap interval of accuracy(``predicted``) − accuracy(``baseline``)
    on the same faces (resampled together, so what both get right or wrong cancels);
    ``options`` as for :func:`bootstrap_mean_ci`."""
    labels = np.asarray(labels)
    gain = (np.asarray(predicted) == labels).astype(float) - (np.asarray(baseline) == labels)
    return bootstrap_mean_ci(gain, **options)


def recall_gains(
    labels: np.ndarray, predicted: np.ndarray, baseline: np.ndarray, **options
) -> pd.DataFrame:
    """Per emotion: the recall of ``predicted`` and of ``baseline`` (labels) on the same faces,
    their difference with its paired bootstrap interval (that emotion's faces resampled;
    ``options`` as for :func:`bootstrap_mean_ci`), and ``worse``: the whole interval below 0,
    a loss beyond noise."""
    labels = np.asarray(labels)
    rows = {}
    for k, emotion in enumerate(EMOTIONS):
        mine = labels == k
        if mine.any():
            new, old = np.mean(predicted[mine] == k), np.mean(baseline[mine] == k)
            low, high = bootstrap_gain_ci(labels[mine], predicted[mine], baseline[mine], **options)
            rows[emotion] = {"recall": new, "baseline": old, "gain": new - old,
                             "low": low, "high": high, "worse": high < 0}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


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


def where_misses_go(labels: np.ndarray, probabilities: np.ndarray, top: int = 2) -> pd.DataFrame:
    """Per true emotion: its recall and the ``top`` emotions its faces are most often taken
    for, each with the share of that emotion's faces (read off the confusion matrix)."""
    counts = confusion(labels, probabilities)
    shares = counts.div(counts.sum(axis=1).clip(lower=1), axis=0)
    rows = {}
    for emotion, row in shares.iterrows():
        wrong = row.drop(emotion).nlargest(top)
        rows[emotion] = {"recall": row[emotion]} | {
            f"taken for #{k + 1}": f"{other} ({share:.0%})"
            for k, (other, share) in enumerate(wrong.items())
        }
    return pd.DataFrame.from_dict(rows, orient="index").round(3)


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
    x = as_batch(faces)
    if not tta:
        return model.predict(x, batch_size=batch_size, verbose=0)
    views = TTA() if tta is True else TTA_SETS[tta] if isinstance(tta, str) else tta
    total = np.zeros((len(x), len(EMOTIONS)), np.float64)
    for view in progress_bar(tta_views(x, views), progress, total=len(views), desc="TTA views"):
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
    faces as they are); ``shifts``: names from :data:`fer_utils.preprocessing.SHIFTS` (default:
    all). Long format: model, shift, strength, accuracy."""
    from fer_utils.preprocessing import SHIFTS, shift_lighting

    shifts = shifts or SHIFTS
    variants = [(shift, strength) for shift in shifts for strength in strengths]
    # every shifted copy made once and predicted in one call per model
    stack = np.concatenate(
        [as_batch(faces), *(as_batch(shift_lighting(faces, *v)) for v in variants)]
    )
    rows = []
    for name, model in models.items():
        guesses = predict(model, stack).argmax(1).reshape(1 + len(variants), len(faces))
        clean, *shifted = (guesses == labels).mean(axis=1)  # one accuracy per copy
        accuracy = dict(zip(variants, shifted, strict=True))
        for shift in shifts:
            rows.append({"model": name, "shift": shift, "strength": 0.0, "accuracy": clean})
            rows += [
                {"model": name, "shift": shift, "strength": k, "accuracy": accuracy[shift, k]}
                for k in strengths
            ]
    return pd.DataFrame(rows)


def saved_robustness(
    path: Path, clean_accuracy: dict[str, float], strengths: tuple[float, ...]
) -> pd.DataFrame:
    """A :func:`lighting_robustness` table measured earlier and saved as CSV, for when the
    models are not at hand, checked against ``clean_accuracy`` (each model's PrivateTest
    accuracy as its record has it now) and the ``strengths`` asked for: a
    :class:`~fer_utils.errors.UsageError` if the file is missing, was measured at other
    strengths, or on other models (its unshifted accuracy differs from the record's, or a
    model is absent)."""
    if not path.is_file():
        raise UsageError(f"{path.name} not found: measure it with the models (reuse=False)")
    table = pd.read_csv(path)
    measured = sorted(set(table.strength) - {0.0})
    if measured != sorted(strengths):
        raise UsageError(
            f"{path.name} was measured at strengths {measured}, not {sorted(strengths)}: "
            "measure it again with the models (reuse=False)"
        )
    clean = table[table.strength == 0].groupby("model").accuracy.first()
    stale = [m for m, a in clean_accuracy.items() if m not in clean or not np.isclose(clean[m], a)]
    if stale:
        raise UsageError(
            f"{path.name} was measured on other models than {', '.join(stale)} are now: "
            "measure it again with the models (reuse=False)"
        )
    return table[table.model.isin(list(clean_accuracy))]


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
