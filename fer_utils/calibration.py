"""Confidence that means what it says: temperature scaling (Guo et al., 2017) inside the model.

A model's confidence is its largest probability. Temperature scaling divides the logits by
one number T fitted on PublicTest (the negative log-likelihood of its labels), so that among
faces with confidence near c about a fraction c is right; the probabilities' order, hence
every label, is unchanged. The models end in a softmax, so their log-probabilities serve as
logits: softmax(log p / T) is softmax(z / T) for logits z. :class:`Temperature` does that
inside a saved model, which still takes raw faces and gives 7 probabilities. The expected
calibration error (:func:`ece`) and the reliability diagram's data (:func:`reliability`) say
how far confidence is from accuracy. PrivateTest is only ever reported, never fitted on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from fer_utils.config import EPS, figures_dir, results_dir
from fer_utils.ensemble import SELECTION_SPLIT
from fer_utils.errors import UsageError
from fer_utils.files import atomic_write_text
from fer_utils.layers import Temperature
from fer_utils.runs import DEFAULT_MODEL, default_choice, versions

BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram
TEMPERATURES = (1e-2, 1e2)  # the range searched for T


def _log(probabilities: np.ndarray) -> np.ndarray:
    """log(max(p, eps)) in float64: the logits that temperature scaling divides."""
    return np.log(np.maximum(np.asarray(probabilities, np.float64), EPS))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """What :class:`Temperature` computes, in NumPy (float64)."""
    return softmax(_log(probabilities) / temperature, axis=1)


def _nll(log_p: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(log_p / temperature)."""
    rows = np.arange(len(labels))
    return float(-log_softmax(log_p / temperature, axis=1)[rows, labels].mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in :data:`TEMPERATURES` minimising the negative log-likelihood of ``labels``
    (bounded Brent search on log T; the loss is convex in 1/T). T > 1 softens an
    over-confident model, T < 1 sharpens an under-confident one."""
    log_p, labels = _log(probabilities), np.asarray(labels, np.int64)
    found = minimize_scalar(
        lambda log_t: _nll(log_p, labels, np.exp(log_t)),
        bounds=np.log(TEMPERATURES),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's data: per equal-width confidence bin (``edges``, lower bound
    excluded), the faces' mean confidence, the fraction right and their number (NaN where a
    bin is empty)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy − confidence|."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.count[filled] * gaps).sum() / self.count.sum())

    def to_json(self) -> dict:
        def listed(values: np.ndarray) -> list:
            return [None if np.isnan(v) else round(float(v), 6) for v in values]

        return {
            "edges": listed(self.edges),
            "confidence": listed(self.confidence),
            "accuracy": listed(self.accuracy),
            "count": self.count.astype(int).tolist(),
        }


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Per-bin confidence, accuracy and count of the predictions (argmax, max probability)."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1).astype(np.float64)
    correct = (probabilities.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (lower, upper]
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):  # 0 / 0 in empty bins: NaN
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct, bins) / count
    return Reliability(np.linspace(0, 1, bins + 1), mean_confidence, accuracy, count)


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of ``probabilities`` (N, 7) on ``labels``, ``bins`` bins."""
    return reliability(probabilities, labels, bins).ece


def uncalibrated(model: keras.Model) -> tuple[keras.Model, float | None]:
    """``model`` without its final :class:`Temperature` (and that layer's T), or ``model``
    itself and None: calibrating a calibrated model refits T instead of stacking a second."""
    last = model.layers[-1]
    if not isinstance(last, Temperature):
        return model, None
    name = model.name.removesuffix("_calibrated")
    return keras.Model(model.input, last.input, name=name), last.temperature


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """``model`` (without any temperature it had) followed by :class:`Temperature`."""
    base, _ = uncalibrated(model)
    scaled = Temperature(temperature, name="temperature")(base.output)
    return keras.Model(base.input, scaled, name=f"{base.name}_calibrated")


def _split_report(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, NLL and ECE of one split's probabilities before and after calibration."""
    labels = np.asarray(labels, np.int64)
    curves = {"before": reliability(before, labels), "after": reliability(after, labels)}
    return {
        "n": len(labels),
        "accuracy": round(float((before.argmax(1) == labels).mean()), 6),
        "argmax_changed": int((before.argmax(1) != after.argmax(1)).sum()),
        "ece_before": round(curves["before"].ece, 6),
        "ece_after": round(curves["after"].ece, 6),
        "nll_before": round(_nll(_log(before), labels, 1.0), 6),
        "nll_after": round(_nll(_log(after), labels, 1.0), 6),
        "reliability": {k: curve.to_json() for k, curve in curves.items()},
    }


def calibrate_model(
    model_path: str | Path,
    out_path: str | Path,
    faces: np.ndarray,
    labels: np.ndarray,
    held_out: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    fit_split: str = SELECTION_SPLIT,
) -> tuple[float, dict]:
    """Fit T on ``faces`` / ``labels`` (PublicTest) and write ``model_path`` with
    :class:`Temperature` inside to ``out_path`` (atomically; it may be ``model_path``). A
    model that already ends in a temperature is refitted from the probabilities below it.
    Returns T and a report: per split (``fit_split``, then each of ``held_out``, only
    evaluated), the accuracy, ECE and NLL before and after (the saved file's output, loaded
    back in safe mode), how many labels changed (none should), and the largest difference
    between the saved model and :func:`apply_temperature` on the fitted faces."""
    from fer_utils.evaluation import predict
    from fer_utils.models import save_for_inference  # (and registers the models' layers)

    base, previous = uncalibrated(keras.saving.load_model(model_path, safe_mode=True))
    splits = {fit_split: (faces, labels), **(held_out or {})}
    before = {split: predict(base, x) for split, (x, _) in splits.items()}
    temperature = fit_temperature(before[fit_split], labels)
    save_for_inference(with_temperature(base, temperature), out_path)
    saved = keras.saving.load_model(out_path, safe_mode=True)
    after = {split: predict(saved, x) for split, (x, _) in splits.items()}
    formula = apply_temperature(before[fit_split], temperature)
    return temperature, {
        "temperature": temperature,
        "input_temperature": previous,
        "fitted_on": fit_split,
        "bins": BINS,
        "max_difference_from_formula": float(np.abs(after[fit_split] - formula).max()),
        "splits": {s: _split_report(before[s], after[s], y) for s, (_, y) in splits.items()},
    }


def calibration_name(model_path: str | Path) -> str:
    """The name of a model's calibration record and figure: the run whose model it is (for
    the default model, as ``default.json`` beside it says), else the file's stem."""
    path = Path(model_path)
    chosen = default_choice(path.parent).get("run_name") if path.name == DEFAULT_MODEL else None
    return chosen or path.stem


def default_out(model_path: str | Path) -> Path:
    """Where the calibrated model goes by default: ``<stem>-calibrated.keras`` beside it."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}-calibrated.keras")


def calibrate_and_record(
    model_path: str | Path, out_path: str | Path, dataset, command: str
) -> tuple[dict, Path, Path]:
    """:func:`calibrate_model` on ``dataset``'s PublicTest, with PrivateTest reported only;
    writes ``results/calibration/<name>.json`` (models' paths and sha256 before and after, T,
    ECE per split, the command, …) and ``figures/calibration_<name>.png`` (PrivateTest's
    reliability before and after). Returns the record and the two paths."""
    from fer_utils.provenance import describe_sources, made_from
    from fer_utils.visualize import reliability_diagram

    name = calibration_name(model_path)
    model = describe_sources(model=model_path)["model"]  # before it may be overwritten
    public, private = dataset.split(SELECTION_SPLIT), dataset.split("PrivateTest")
    if not len(public):
        raise UsageError(
            f"{dataset.source} has no {SELECTION_SPLIT} faces, and T is fitted on them: pass "
            f"the FER2013 csv (--data), whose Usage column names them"
        )
    held_out = {"PrivateTest": (private.images, private.labels)} if len(private) else {}
    temperature, report = calibrate_model(
        model_path, out_path, public.images, public.labels, held_out
    )
    figure = figures_dir() / f"calibration_{name}.png"
    record = {
        "kind": "calibration",
        "run": name,
        "method": "temperature scaling: one T minimising PublicTest negative log-likelihood",
        "model": model,
        "calibrated_model": describe_sources(model=out_path)["model"],
        **report,
        "figure": f"figures/{figure.name}",
        "data_sha256": dataset.sha256,
        "command": command,
        "versions": versions(),
    }
    shown = "PrivateTest" if held_out else SELECTION_SPLIT
    curves = report["splits"][shown]["reliability"]
    made_from(model=out_path, data_sha256=dataset.sha256)
    reliability_diagram(
        {
            "before": _from_json(curves["before"]),
            f"after (T = {temperature:.2f})": _from_json(curves["after"]),
        },
        split=shown,
        save=figure.stem,
    )
    path = results_dir() / "calibration" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record, path, figure


def _from_json(stored: dict) -> Reliability:
    """A :class:`Reliability` from :meth:`Reliability.to_json`."""
    arrays = {k: np.array(v, dtype=float) for k, v in stored.items()}
    counts = arrays["count"].astype(int)
    return Reliability(arrays["edges"], arrays["confidence"], arrays["accuracy"], counts)
