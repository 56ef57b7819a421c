"""The results convention: JSON + predictions written together, metrics and README table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_utils.evaluation import metrics
from fer_utils.results import (
    COMPARISON_END,
    COMPARISON_START,
    REQUIRED_KEYS,
    TABLE_END,
    TABLE_START,
    comparison_table,
    load_runs,
    read_record,
    update_readme,
    write_run,
)


def test_metrics_match_hand_computed_values() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    result = metrics(labels, np.eye(7)[predicted])
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # F1 per present class: 0 -> 0.5, 1 -> 2/3, 2 -> 1; absent classes 3..6 -> 0 (macro over 7).
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 7)
    assert result["n"] == 6


def test_write_run_records_everything_and_the_table_follows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FER_RESULTS", str(tmp_path))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 40)
    good = np.eye(7)[labels] * 0.9 + 0.1 / 7
    bad = np.full((40, 7), 1 / 7)
    bad[:, 3] += 0.01
    for name, probs, profile in (
        ("weak", bad, "cpu"),
        ("strong", good, "cpu"),
        ("smoke", good, "quick"),
    ):
        write_run(name, "cnn", f"python -m fer_utils train --run {name}", profile, "abc", 12.0,
                  {"PublicTest": (labels, probs), "PrivateTest": (labels, probs)})  # fmt: skip
    record = json.loads((tmp_path / "strong.json").read_text())
    assert read_record("strong") == record
    assert all(key in record for key in REQUIRED_KEYS)
    with pytest.raises(FileNotFoundError, match="train or evaluate run 'absent'"):
        read_record("absent")
    assert record["metrics"]["PrivateTest"]["accuracy"] == 1.0
    stored = np.load(tmp_path / "predictions" / "strong.npz")
    assert np.allclose(stored["PrivateTest_probabilities"], good)
    runs = load_runs(tmp_path)
    assert sorted(runs.run_name) == ["smoke", "strong", "weak"]

    readme = tmp_path / "README.md"
    readme.write_text(
        f"intro\n{TABLE_START}\nold\n{TABLE_END}\n{COMPARISON_START}\n{COMPARISON_END}\noutro\n"
    )
    assert update_readme(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert text.index("| strong |") < text.index("| weak |")  # best PrivateTest first
    assert "| 100.00 |" in text
    assert "smoke" not in text  # quick-profile smoke runs stay out of the README
    assert not update_readme(readme, tmp_path)  # idempotent


def test_comparison_chooses_runs_on_publictest_never_on_privatetest(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FER_RESULTS", str(tmp_path))
    labels = np.arange(100) % 7

    def right(count: int) -> np.ndarray:
        """Probabilities that get exactly the first ``count`` of 100 faces right."""
        return np.eye(7)[np.where(np.arange(100) < count, labels, (labels + 1) % 7)]

    for name, model, public, private, profile, extra in (
        ("lucky", "five_layer", 50, 90, "cpu", None),  # best on PrivateTest: must not be chosen
        ("chosen", "five_layer", 80, 60, "cpu", None),
        ("chosen-tta", "five_layer + TTA", 85, 65, "cpu", None),
        # ensembles are fitted on PublicTest: ranked by their cross-validated score there
        ("overfit-ens", "ensemble of 9", 99, 68, "cpu", {"cv_accuracy": 0.7}),
        ("ens", "ensemble of 3", 90, 70, "cpu", {"cv_accuracy": 0.8}),
        ("unscored-ens", "ensemble of 2", 95, 95, "cpu", None),  # no CV score: not ranked
        ("smoke", "five_layer", 100, 100, "quick", None),
    ):
        splits = {"PublicTest": (labels, right(public)), "PrivateTest": (labels, right(private))}
        write_run(name, model, "cmd", profile, "abc", 1.0, splits, extra)
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in comparison_table(load_runs(tmp_path)).splitlines()[2:]
    }
    assert rows["Stanford CS230 five-layer (seed 004)"].endswith(
        "| 66.30 | chosen | 60.00 | chosen-tta | 65.00 |"
    )
    assert rows["Stanford CS230 baseline (seed 004)"].endswith("| 64.00 | – | – | – | – |")
    assert rows["BU CS523 ensemble (seed 000)"].endswith("| 68.63 | ens | 70.00 | – | – |")
    assert "lucky" not in rows["Columbia, best of three CNNs from scratch (seed 003)"]
    assert not any("smoke" in row for row in rows.values())
