"""The README's generated tables: every run's metrics, and each published FER2013 result
next to this project's answer. Made from the run store (:mod:`fer_utils.runs`), never typed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.files import atomic_write_text
from fer_utils.runs import Run, all_runs

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


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run: name, kind, model, architecture, profile, TTA set, training seconds,
    cross-validated accuracy (ensembles) and every split's metrics as ``<split>_<metric>``."""
    rows = []
    for run in runs:
        row = {
            "run_name": run.run_name, "kind": run.kind, "model": run.model,
            "architecture": run.architecture, "profile": run.profile, "tta": run.tta,
            "train_seconds": run.train_seconds,
            "cv_accuracy": run.details.get("cv_accuracy", np.nan),
        }  # fmt: skip
        for split, values in run.metrics.items():
            row.update({f"{split}_{k}": v for k, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _reported(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the README reports: all but quick-profile smoke runs."""
    return runs[runs.profile != "quick"] if not runs.empty else runs


def results_table(runs: pd.DataFrame) -> str:
    """Markdown table of the non-quick runs: PrivateTest accuracy, balanced accuracy and
    macro-F1 (percent), PublicTest accuracy, training minutes; ordered by what runs are
    chosen by (:func:`selection_score`: PublicTest), never by PrivateTest."""
    runs = _reported(runs)
    if runs.empty:
        return NO_RESULTS
    runs = runs.assign(score=selection_score(runs)).sort_values(
        ["score", "PublicTest_accuracy"], ascending=False, na_position="last"
    )
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
    ensembles = runs.kind == "ensemble"
    if family == "ensemble":
        return runs[ensembles]
    singles = runs[~ensembles]
    if family == "single":
        return singles
    return singles[singles.architecture == family]


def selection_score(runs: pd.DataFrame) -> pd.Series:
    """What runs are ranked by: PublicTest accuracy; for an ensemble, fitted on PublicTest and
    so scored in-sample there, its method's cross-validated PublicTest accuracy (an ensemble
    recorded without one gets NaN and is not ranked)."""
    ensembles = runs.kind == "ensemble"
    return runs.PublicTest_accuracy.where(~ensembles, runs.cv_accuracy)


def published_comparison(runs: pd.DataFrame) -> str:
    """Markdown table: each published result of :data:`PUBLISHED` next to this project's
    answer, without and with TTA. The run is the family's best by :func:`selection_score`
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
            scores = selection_score(members[members.tta.notna() == tta])
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
    text = readme.read_text(encoding="utf-8")
    runs = runs_frame(all_runs(folder))
    new = _replace_block(text, TABLE_START, TABLE_END, results_table(runs), readme)
    new = _replace_block(new, COMPARISON_START, COMPARISON_END, published_comparison(runs), readme)
    atomic_write_text(readme, new)
    return new != text
