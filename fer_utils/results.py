"""The results convention: one ``results/<run_name>.json`` per training or evaluation run, its
per-split probabilities in ``results/predictions/<run_name>.npz``, and the README table that
is generated from them (never typed)."""

from __future__ import annotations

import json
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_utils.config import results_dir
from fer_utils.evaluation import metrics
from fer_utils.tta import split_tta_run, tta_label

REQUIRED_KEYS = (
    "run_name",
    "model",
    "command",
    "profile",
    "data_sha256",
    "versions",
    "train_seconds",
    "metrics",
)
EVAL_SPLITS = ("PublicTest", "PrivateTest")
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
COMPARISON_START, COMPARISON_END = "<!-- comparison:start -->", "<!-- comparison:end -->"
NO_RESULTS = "_No results yet: train a model (see Notebook 02) to fill this table._"
PUBLISHED: tuple[tuple[str, float, str], ...] = (
    ("Stanford CS230 baseline (seed 004)", 64.0, "baseline"),
    ("Stanford CS230 five-layer (seed 004)", 66.3, "five_layer"),
    ("BU CS523 five-layer, 1000 epochs (seed 000)", 66.82, "five_layer"),
    ("Columbia, best of three CNNs from scratch (seed 003)", 63.7, "single"),
    ("Khaireddin & Chen 2021, VGGNet: best published single model", 73.28, "single"),
    ("BU CS523 ensemble (seed 000)", 68.63, "ensemble"),
    ("Stanford CS230 ensemble, with extra training data (seed 004)", 75.8, "ensemble"),
)
"""Published FER2013 PrivateTest accuracies (%) and the family of this project's runs that
answers each: a registry model name, ``single`` (any one model) or ``ensemble``."""
_PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "opencv-python-headless")


def versions() -> dict[str, str]:
    """Python and key package versions, recorded with every run."""
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def record_path(run_name: str) -> Path:
    """Where a run's record is (``results/<run>.json``)."""
    return results_dir() / f"{run_name}.json"


def read_record(run_name: str) -> dict:
    """``results/<run>.json`` as a dict, or a FileNotFoundError that says to train the run."""
    path = record_path(run_name)
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: train or evaluate run {run_name!r} first")
    return json.loads(path.read_text())


def predictions_path(run_name: str) -> Path:
    """Where a run's per-split labels and probabilities are (``results/predictions/<run>.npz``)."""
    return results_dir() / "predictions" / f"{run_name}.npz"


def read_predictions(run_name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split in ``run_name``'s predictions file: {split: (labels, probabilities)};
    empty if the run has no predictions file."""
    path = predictions_path(run_name)
    if not path.is_file():
        return {}
    with np.load(path) as stored:
        return {
            key.removesuffix("_labels"): (
                stored[key].astype(np.int64),
                stored[key.replace("_labels", "_probabilities")],
            )
            for key in stored.files
            if key.endswith("_labels")
        }


def write_run(
    run_name: str,
    model: str,
    command: str,
    profile: str,
    data_sha256: str,
    train_seconds: float,
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``results/<run_name>.json`` and ``results/predictions/<run_name>.npz``.

    ``predictions`` maps a split name to (labels, probabilities (N, 7)); the metrics of the
    record are computed from them here, so record and predictions always agree."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_name):
        raise ValueError(f"run_name {run_name!r}: use letters, digits, '.', '_' and '-' only")
    record = {
        "run_name": run_name,
        "model": model,
        "command": command,
        "profile": profile,
        "data_sha256": data_sha256,
        "versions": versions(),
        "train_seconds": round(float(train_seconds), 1),
        "metrics": {split: metrics(y, p) for split, (y, p) in predictions.items()},
        **(extra or {}),
    }
    arrays = {}
    for split, (labels, probabilities) in predictions.items():
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int8)
        arrays[f"{split}_probabilities"] = np.asarray(probabilities, dtype=np.float32)
    np.savez_compressed(predictions_path(run_name), **arrays)
    path = record_path(run_name)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_runs(folder: Path | None = None) -> pd.DataFrame:
    """One row per results JSON: name, model, profile, train time and every split's metrics;
    ``tta`` (the TTA set of a test-time-augmented record, else None) and ``architecture`` (the
    model without its TTA label)."""
    rows = []
    for path in sorted((folder or results_dir()).glob("*.json")):
        record = json.loads(path.read_text())
        if not all(key in record for key in REQUIRED_KEYS):
            continue
        row = {k: record[k] for k in ("run_name", "model", "profile", "train_seconds")}
        row["tta"] = split_tta_run(record["run_name"])[1]  # None, or the TTA set
        row["architecture"] = record["model"].removesuffix(
            tta_label(row["tta"]) if row["tta"] else ""
        )
        row["cv_accuracy"] = record.get("cv_accuracy", np.nan)  # see _selection_score
        row["linear_probe"] = "pretrain_config" in record  # a self-supervised encoder's probe
        for split, values in record["metrics"].items():
            row.update({f"{split}_{k}": v for k, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _reported(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the README reports: all but quick-profile smoke runs."""
    return runs[runs.profile != "quick"] if not runs.empty else runs


def results_table(runs: pd.DataFrame) -> str:
    """Markdown table of the non-quick runs: PrivateTest accuracy, balanced accuracy and
    macro-F1 (percent), PublicTest accuracy, training minutes; best PrivateTest first."""
    runs = _reported(runs)
    if runs.empty:
        return NO_RESULTS
    runs = runs.sort_values("PrivateTest_accuracy", ascending=False, na_position="last")
    header = (
        "| run | model | profile | PrivateTest acc. | balanced acc. | macro-F1 | PublicTest acc."
        " | train min |\n|---|---|---|---|---|---|---|---|"
    )

    def pct(value: float) -> str:
        return "–" if pd.isna(value) else f"{100 * value:.2f}"

    lines = [
        f"| {r.run_name} | {r.model} | {r.profile} | {pct(r.get('PrivateTest_accuracy'))} "
        f"| {pct(r.get('PrivateTest_balanced_accuracy'))} | {pct(r.get('PrivateTest_macro_f1'))} "
        f"| {pct(r.get('PublicTest_accuracy'))} | {r.train_seconds / 60:.1f} |"
        for _, r in runs.iterrows()
    ]
    return "\n".join([header, *lines])


def _family(runs: pd.DataFrame, family: str) -> pd.DataFrame:
    """The runs of ``family`` (see :data:`PUBLISHED`), test-time-augmented ones included."""
    ensembles = runs.model.str.startswith("ensemble")
    if family == "ensemble":
        return runs[ensembles]
    singles = runs[~ensembles]
    if family == "single":
        return singles
    return singles[singles.architecture == family]


def _selection_score(runs: pd.DataFrame) -> pd.Series:
    """What runs are ranked by: PublicTest accuracy; for an ensemble, fitted on PublicTest and
    so scored in-sample there, its method's cross-validated PublicTest accuracy (an ensemble
    recorded without one gets NaN and is not ranked)."""
    ensembles = runs.model.str.startswith("ensemble")
    return runs.PublicTest_accuracy.where(~ensembles, runs.cv_accuracy)


def comparison_table(runs: pd.DataFrame) -> str:
    """Markdown table: each published result of :data:`PUBLISHED` next to this project's
    answer, without and with TTA. The run is the family's best by :func:`_selection_score`
    (PublicTest), never by PrivateTest (that would pick the luckiest run on the test set); its
    PrivateTest accuracy is what is compared."""
    runs = _reported(runs)
    if runs.empty:
        return NO_RESULTS
    header = (
        "| published | PrivateTest % | this project (best on PublicTest) | PrivateTest % "
        "| with TTA | PrivateTest % |\n|---|---|---|---|---|---|"
    )
    lines = []
    for source, accuracy, family in PUBLISHED:
        members = _family(runs, family)
        cells = []
        for tta in (False, True):
            scores = _selection_score(members[members.tta.notna() == tta])
            if scores.isna().all():
                cells.append("– | –")
                continue
            best = members.loc[scores.idxmax()]
            cells.append(f"{best.run_name} | {100 * best.PrivateTest_accuracy:.2f}")
        lines.append(f"| {source} | {accuracy:.2f} | {' | '.join(cells)} |")
    return "\n".join([header, *lines])


def _replace_block(text: str, start: str, end: str, body: str, readme: Path) -> str:
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} … {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(readme: Path, folder: Path | None = None) -> bool:
    """Regenerate the results table and the comparison with published results between their
    markers in ``readme``; True if anything changed."""
    text = readme.read_text()
    runs = load_runs(folder)
    new = _replace_block(text, TABLE_START, TABLE_END, results_table(runs), readme)
    new = _replace_block(new, COMPARISON_START, COMPARISON_END, comparison_table(runs), readme)
    readme.write_text(new)
    return new != text
