"""The README's generated tables: every run's metrics, and each published FER2013 result
next to this project's answer, and what the shipped default model scores. Made from the run
store (:mod:`fer_utils.runs`), ``models/default.json`` and the calibration record, never typed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.config import project_root, results_dir
from fer_utils.errors import UsageError
from fer_utils.evaluation import accuracy_ci, verdict
from fer_utils.files import atomic_write_text
from fer_utils.runs import Run, all_runs, default_choice, find
from fer_utils.tta import PREDICT_DEFAULTS, TTA_SETS

TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
COMPARISON_START, COMPARISON_END = "<!-- comparison:start -->", "<!-- comparison:end -->"
DEFAULT_START, DEFAULT_END = "<!-- default-model:start -->", "<!-- default-model:end -->"
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


def _pct(value: float) -> str:
    """A fraction as a percentage with two decimals; "–" for a missing value."""
    return "–" if pd.isna(value) else f"{100 * value:.2f}"


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

    lines = [
        f"| {r.run_name} | {r.model} | {r.profile} | {_pct(r.get('PrivateTest_accuracy'))} "
        f"| {_pct(r.get('PrivateTest_balanced_accuracy'))} | {_pct(r.get('PrivateTest_macro_f1'))} "
        f"| {_pct(r.get('PublicTest_accuracy'))} | {r.train_seconds / 60:.1f} |"
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


def _against(published: float, accuracy: float, n: int) -> str:
    """Two table cells: ``accuracy`` (a fraction, on ``n`` faces) with its 95 % bootstrap
    interval, and whether ``published`` (percent) lies above, below or inside it. The interval
    is this project's alone: the published runs' predictions are not available to pair."""
    low, high = (100 * bound for bound in accuracy_ci(accuracy, n))
    return f"{100 * accuracy:.2f} [{low:.1f}, {high:.1f}] | {verdict(low, high, published)}"


def published_comparison(runs: pd.DataFrame) -> str:
    """Markdown table: each published result of :data:`PUBLISHED` next to this project's
    answer, without and with TTA, each with its 95 % interval and whether it is above, below
    or within noise of the published number. The run is the family's best by
    :func:`selection_score` (PublicTest), never by PrivateTest (that would pick the luckiest
    run on the test set); its PrivateTest accuracy is what is compared."""
    runs = _reported(runs)
    if runs.empty:
        return NO_RESULTS
    header = (
        "| published | PrivateTest % | this project (best on PublicTest) | PrivateTest % [95 % CI]"
        " | vs published | with TTA | PrivateTest % [95 % CI] | vs published |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = []
    for source, accuracy, family in PUBLISHED:
        members = _family(runs, family)
        cells = []
        for tta in (False, True):
            scores = selection_score(members[members.tta.notna() == tta])
            if scores.isna().all():
                cells.append("– | – | –")
                continue
            best = members.loc[scores.idxmax()]
            against = _against(accuracy, best.PrivateTest_accuracy, int(best.PrivateTest_n))
            cells.append(f"{best.run_name} | {against}")
        lines.append(f"| {source} | {accuracy:.2f} | {' | '.join(cells)} |")
    return "\n".join([header, *lines])


def default_model_block(runs: list[Run], choice: dict, calibration: dict | None) -> str:
    """Markdown on the shipped model: which run ``choice`` (``models/default.json``) names and
    how it was chosen; its PrivateTest accuracy, balanced accuracy and macro-F1 with each
    TTA set it has a record of (the set ``predict`` uses by default on each kind of source
    marked); its calibration (T, ECE before and after) and reliability diagram."""
    if not choice.get("run_name"):
        return "_No default model chosen yet: `python -m fer_utils set-default RUN...`._"
    name = choice["run_name"]
    [trained] = find(runs, run_name=name) or [None]
    if trained is None:
        return f"_The default model's run {name} has no record in results/._"
    used_on = {}
    for kind, tta in PREDICT_DEFAULTS.items():
        used_on.setdefault(tta, []).append(f"{kind}s")
    rows = [(trained, "none", 1)]
    rows += sorted(
        ((run, run.tta, len(TTA_SETS[run.tta])) for run in find(runs, trained_by=name)),
        key=lambda row: row[2],
    )
    candidates = len(choice.get("candidates", {})) or 1
    lines = [
        f"`models/default.keras` is the run **{name}** ({trained.model}, "
        f"{trained.details.get('parameters', 0) / 1e6:.2f} M parameters), chosen by "
        f"`set-default` on {choice.get('chosen_by', 'PublicTest accuracy')} among {candidates} "
        f"candidate{'s' * (candidates != 1)} (`models/default.json`). On PrivateTest, which "
        "chose and fitted nothing:",
        "",
        "| `--tta` | views | used by default on | PrivateTest acc. | balanced acc. | macro-F1 "
        "| PublicTest acc. | record |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, tta, views in rows:
        private, public = run.metrics["PrivateTest"], run.metrics["PublicTest"]
        lines.append(
            f"| {tta} | {views} | {', '.join(used_on.get(tta, [])) or '–'} "
            f"| {_pct(private['accuracy'])} | {_pct(private['balanced_accuracy'])} "
            f"| {_pct(private['macro_f1'])} | {_pct(public['accuracy'])} "
            f"| `results/{run.run_name}.json` |"
        )
    if calibration is None:
        calibrate = "python -m fer_utils calibrate --out models/default.keras"
        lines += ["", f"_Not calibrated: `{calibrate}`._"]
        return "\n".join(lines)
    split = "PrivateTest" if "PrivateTest" in calibration["splits"] else calibration["fitted_on"]
    ece = calibration["splits"][split]
    lines += [
        "",
        f"Its confidences are calibrated: T = {calibration['temperature']:.2f}, fitted on "
        f"{calibration['fitted_on']}; the expected calibration error on {split} (one view a "
        f"face, {calibration['bins']} bins) is {ece['ece_before']:.3f} before and "
        f"{ece['ece_after']:.3f} after (`results/calibration/{calibration['run']}.json`):",
        "",
        "![Reliability of the default model before and after temperature scaling]"
        f"({calibration['figure']})",
    ]
    return "\n".join(lines)


def _calibration_record(choice: dict) -> dict | None:
    """The calibration record ``choice`` (``default.json``) names, None where absent."""
    record = project_root() / choice["calibration"] if "calibration" in choice else None
    return json.loads(record.read_text()) if record and record.is_file() else None


def _replace_block(text: str, start: str, end: str, body: str, readme: Path) -> str:
    if start not in text or end not in text:
        raise UsageError(f"{readme} has no {start} … {end} markers: pass this project's README")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(readme: Path, folder: Path | None = None, models: Path | None = None) -> bool:
    """Regenerate the results table, the comparison with published results (records in
    ``folder``, default results/) and the default model's summary (:func:`default_model_block`;
    ``models``, default models/) between their markers in ``readme``; True if anything
    changed."""
    if not readme.is_file():
        raise UsageError(f"{readme} is not a file: pass the README to update with --readme")
    text = readme.read_text(encoding="utf-8")
    records = all_runs(folder)
    if not records:  # an empty or misdirected run store must not wipe the tables
        raise UsageError(
            f"no run records in {folder or results_dir()}: nothing to build the tables from "
            "(is FER_RESULTS pointing elsewhere?)"
        )
    runs = runs_frame(records)
    new = _replace_block(text, TABLE_START, TABLE_END, results_table(runs), readme)
    new = _replace_block(new, COMPARISON_START, COMPARISON_END, published_comparison(runs), readme)
    choice = default_choice(models)
    block = default_model_block(records, choice, _calibration_record(choice))
    new = _replace_block(new, DEFAULT_START, DEFAULT_END, block, readme)
    atomic_write_text(readme, new)
    return new != text
