"""The results convention: JSON + predictions written together, metrics and README table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_utils.evaluation import metrics
from fer_utils.results import (
    REQUIRED_KEYS,
    TABLE_END,
    TABLE_START,
    load_runs,
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
    assert all(key in record for key in REQUIRED_KEYS)
    assert record["metrics"]["PrivateTest"]["accuracy"] == 1.0
    stored = np.load(tmp_path / "predictions" / "strong.npz")
    assert np.allclose(stored["PrivateTest_probabilities"], good)
    runs = load_runs(tmp_path)
    assert sorted(runs.run_name) == ["smoke", "strong", "weak"]

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{TABLE_START}\nold\n{TABLE_END}\noutro\n")
    assert update_readme(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert text.index("| strong |") < text.index("| weak |")  # best PrivateTest first
    assert "| 100.00 |" in text
    assert "smoke" not in text  # quick-profile smoke runs stay out of the README
    assert not update_readme(readme, tmp_path)  # idempotent
