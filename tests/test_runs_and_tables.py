"""The run store and the README tables: a record and its predictions written together, metrics,
the results table and the comparison with published results."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fer_utils import ensemble
from fer_utils.cli import main
from fer_utils.errors import UsageError
from fer_utils.evaluation import metrics, where_misses_go
from fer_utils.runs import Run, all_runs, read_predictions, read_run, record_path, write_run
from fer_utils.tables import (
    COMPARISON_END,
    COMPARISON_START,
    DEFAULT_END,
    DEFAULT_START,
    TABLE_END,
    TABLE_START,
    default_model_block,
    published_comparison,
    runs_frame,
    update_readme,
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


def test_where_misses_go_names_each_emotions_commonest_confusions() -> None:
    # angry: 10 faces, 6 right, 3 taken for sad, 1 for fear; fear: 4 faces, all taken for surprise
    labels = np.array([0] * 10 + [2] * 4)
    predicted = np.array([0] * 6 + [4] * 3 + [2] + [5] * 4)
    table = where_misses_go(labels, np.eye(7)[predicted])
    assert table.loc["angry", "recall"] == pytest.approx(0.6)
    assert table.loc["angry", "taken for #1"] == "sad (30%)"
    assert table.loc["angry", "taken for #2"] == "fear (10%)"
    assert table.loc["fear", "recall"] == 0
    assert table.loc["fear", "taken for #1"] == "surprise (100%)"


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
        splits = {"PublicTest": (labels, probs), "PrivateTest": (labels, probs)}
        command = f"python -m fer_utils train --run {name}"
        written = write_run(name, "trained", "cnn", command, profile, "abc", 12.0, splits)
    record = json.loads((tmp_path / "strong.json").read_text())
    strong = read_run("strong")
    assert strong.to_json() == record and strong == Run.from_json(record)
    assert written == read_run("smoke")  # write_run returns the record it wrote
    assert {f.name for f in dataclasses.fields(Run)} - {"details"} <= set(record)
    assert strong.kind == "trained" and strong.tta is strong.trained_by is None
    assert strong.details == {} and strong.trainer == "strong"
    with pytest.raises(FileNotFoundError, match="train or evaluate run 'absent'"):
        read_run("absent")
    assert strong.metrics["PrivateTest"]["accuracy"] == 1.0
    stored = np.load(tmp_path / "predictions" / "strong.npz")
    assert np.allclose(stored["PrivateTest_probabilities"], good)
    nearly = good.copy()
    nearly[:4] = np.roll(nearly[:4], 1, axis=1)  # 4 of 40 wrong: below lucky on PrivateTest
    write_run("strong", "trained", "cnn", "…", "cpu", "abc", 1.0,
              {"PublicTest": (labels, good), "PrivateTest": (labels, nearly)})  # fmt: skip
    lucky = {"PublicTest": (labels, bad), "PrivateTest": (labels, good)}  # best on the test set
    write_run("lucky", "trained", "cnn", "python -m fer_utils train", "cpu", "abc", 1.0, lucky)
    runs = runs_frame(all_runs(tmp_path))
    assert sorted(runs.run_name) == ["lucky", "smoke", "strong", "weak"]
    assert set(runs.kind) == {"trained"} and runs.tta.isna().all()

    readme = tmp_path / "README.md"
    readme.write_text(
        f"intro\n{TABLE_START}\nold\n{TABLE_END}\n{COMPARISON_START}\n{COMPARISON_END}\n"
        f"{DEFAULT_START}\n{DEFAULT_END}\noutro\n"
    )
    assert update_readme(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    # ordered by PublicTest, never by PrivateTest: the lucky run does not come first
    assert text.index("| strong |") < text.index("| lucky |")
    assert "| 100.00 |" in text
    assert "smoke" not in text  # quick-profile smoke runs stay out of the README
    assert not update_readme(readme, tmp_path)  # idempotent


def test_readme_states_the_default_models_scores_from_its_records(tmp_path: Path) -> None:
    """The default model's summary: its run's plain and TTA records (PrivateTest accuracy,
    balanced accuracy, macro-F1), which set predict uses on images and on videos, and its
    calibration (T, ECE before and after, the reliability diagram); numbers come from the
    records, so another record gives other numbers."""
    labels = np.arange(70) % 7
    right = np.eye(7)[labels]
    wrong = np.eye(7)[(labels + 1) % 7]
    mixed = np.where((np.arange(70) < 49)[:, None], right, wrong)  # 49 of 70 right
    common = ("python -m fer_utils train", "cpu", "abc", 60.0)
    write_run("net", "trained", "fast_cnn", *common, {"PublicTest": (labels, right),
              "PrivateTest": (labels, mixed)}, details={"parameters": 2_000_000})  # fmt: skip
    write_run("net-tta", "tta", "fast_cnn + TTA", *common,
              {"PublicTest": (labels, right), "PrivateTest": (labels, right)},
              tta="shifts", trained_by="net")  # fmt: skip
    write_run("other", "trained", "fast_cnn", *common,
              {"PublicTest": (labels, wrong), "PrivateTest": (labels, wrong)})  # fmt: skip
    records = all_runs()
    ece = {"PrivateTest": {"ece_before": 0.121, "ece_after": 0.024}}
    calibration = {"run": "net", "temperature": 1.5, "fitted_on": "PublicTest", "bins": 15,
                   "figure": "figures/calibration_net.png", "splits": ece}  # fmt: skip
    choice = {"run_name": "net", "chosen_by": "PublicTest accuracy",
              "candidates": {"net": 1.0, "other": 0.0}}  # fmt: skip
    block = default_model_block(records, choice, calibration)
    assert "**net**" in block and "2.00 M parameters" in block and "among 2 candidates" in block
    plain, shifts = (line for line in block.splitlines() if line.startswith(("| none", "| shifts")))
    assert "| 70.00 |" in plain and "videos, webcams" in plain and "net.json" in plain
    assert "| 100.00 |" in shifts and "| images |" in shifts and "net-tta.json" in shifts
    assert "other" not in block  # another run's records are not the default's
    assert "T = 1.50" in block and "0.121 before and 0.024 after" in block
    assert "](figures/calibration_net.png)" in block
    uncalibrated = default_model_block(records, choice, None)
    assert "Not calibrated" in uncalibrated and "T =" not in uncalibrated
    assert "No default model" in default_model_block(records, {}, None)

    readme = _readme(tmp_path / "README.md")  # update_readme reads models/default.json
    (tmp_path / "default.json").write_text(json.dumps(choice))
    assert update_readme(readme, models=tmp_path)
    assert "**net**" in readme.read_text() and "Not calibrated" in readme.read_text()


def test_comparison_chooses_runs_on_publictest_never_on_privatetest(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FER_RESULTS", str(tmp_path))
    labels = np.arange(100) % 7

    def right(count: int) -> np.ndarray:
        """Probabilities that get exactly the first ``count`` of 100 faces right."""
        return np.eye(7)[np.where(np.arange(100) < count, labels, (labels + 1) % 7)]

    for name, kind, model, public, private, profile, cv in (
        ("lucky", "trained", "five_layer", 50, 90, "cpu", None),  # best on PrivateTest: not chosen
        ("chosen", "trained", "five_layer", 80, 60, "cpu", None),
        # a TTA evaluation of "chosen": its fields say so, whatever its name
        ("chosen-again", "tta", "five_layer + TTA", 85, 65, "cpu", None),
        # ensembles are fitted on PublicTest: ranked by their cross-validated score there
        ("overfit-ens", "ensemble", "ensemble of 9", 99, 68, "cpu", 0.7),
        ("ens", "ensemble", "ensemble of 3", 90, 70, "cpu", 0.8),
        ("unscored-ens", "ensemble", "ensemble of 2", 95, 95, "cpu", None),  # no CV: not ranked
        ("smoke", "trained", "five_layer", 100, 100, "quick", None),
    ):
        splits = {"PublicTest": (labels, right(public)), "PrivateTest": (labels, right(private))}
        details = None if cv is None else {"cv_accuracy": cv}
        fields = {"tta": "shifts", "trained_by": "chosen"} if kind == "tta" else {}
        write_run(name, kind, model, "cmd", profile, "abc", 1.0, splits, details, **fields)
    frame = runs_frame(all_runs(tmp_path))
    again = frame.set_index("run_name").loc["chosen-again"]
    assert (again.kind, again.tta, again.architecture) == ("tta", "shifts", "five_layer")
    assert read_run("chosen-again").trainer == "chosen"
    rows = {
        cells[0]: cells[1:]
        for line in published_comparison(frame).splitlines()[2:]
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }

    def cells(source: str) -> list[str]:
        """A row's cells with each interval dropped: published, run, %, verdict (twice)."""
        return [cell.split(" [")[0] for cell in rows[source]]

    # 60 of 100 right: the interval is about ±10 points, so 66.30 is within noise
    assert cells("Stanford CS230 five-layer (seed 004)") == [
        "66.30", "chosen", "60.00", "within noise", "chosen-again", "65.00", "within noise"
    ]  # fmt: skip
    assert cells("Khaireddin & Chen 2021, VGGNet: best published single model")[1:4] == [
        "chosen", "60.00", "below"
    ]  # fmt: skip
    low, high = map(float, rows["Stanford CS230 five-layer (seed 004)"][2][7:-1].split(", "))
    assert 45 < low < 60 < high < 75
    assert cells("Stanford CS230 baseline (seed 004)") == ["64.00", *["–"] * 6]
    assert cells("BU CS523 ensemble (seed 000)")[:4] == ["68.63", "ens", "70.00", "within noise"]
    assert "lucky" not in rows["Columbia, best of three CNNs from scratch (seed 003)"]
    assert not any("smoke" in row for row in rows.values())


def _write(name: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Record a small run ``name`` (random predictions) and return its predictions."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 20)
    probabilities = rng.dirichlet(np.ones(7), 20).astype(np.float32)
    predictions = {"PublicTest": (labels, probabilities), "PrivateTest": (labels, probabilities)}
    write_run(
        name,
        "trained",
        "cnn",
        f"python -m fer_utils train --run {name}",
        "cpu",
        "abc",
        1.0,
        predictions,
    )
    return predictions


def _readme(path: Path) -> Path:
    path.write_text(
        f"{TABLE_START}\n{TABLE_END}\n{COMPARISON_START}\n{COMPARISON_END}\n"
        f"{DEFAULT_START}\n{DEFAULT_END}\n"
    )
    return path


def test_truncated_record_is_an_error_that_names_the_file() -> None:
    _write("fine")
    _write("cut")
    path = record_path("cut")
    path.write_text(path.read_text()[:50])  # as a kill or a full disk could leave it
    for read in (lambda: read_run("cut"), all_runs):
        with pytest.raises(UsageError, match=rf"{re.escape(str(path))} .*re-run .* or delete it"):
            read()
    path.write_text("[1, 2]")  # valid JSON, but not a record
    with pytest.raises(UsageError, match=f"{re.escape(str(path))} is not a run record"):
        read_run("cut")
    assert [run.run_name for run in all_runs()] == ["fine"]  # all_runs skips non-records


def test_results_table_command_reports_a_truncated_record(tmp_path: Path, capsys) -> None:
    _write("cut")
    record_path("cut").write_text('{"run_name": "cut", "metrics": {')
    readme = _readme(tmp_path / "README.md")
    before = readme.read_text()
    assert main(["results-table", "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(record_path("cut")) in err
    assert readme.read_text() == before


@pytest.mark.parametrize("case", ["no records", "no README", "no markers"])
def test_results_table_refuses_what_would_wipe_or_miss_the_tables(
    tmp_path: Path, capsys, case: str
) -> None:
    """An empty or misdirected run store, a wrong --readme: one line, the README untouched."""
    readme = _readme(tmp_path / "README.md")
    before = readme.read_text()
    if case != "no records":
        _write("run")
    if case == "no README":
        readme = tmp_path / "missing.md"
    if case == "no markers":
        readme.write_text(before := "# a README without the generated tables\n")
    assert main(["results-table", "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    expected = {"no records": "no run records", "no README": "is not a file",
                "no markers": "has no <!-- results-table:start -->"}  # fmt: skip
    assert expected[case] in err
    if readme.is_file():
        assert readme.read_text() == before


def test_failed_write_leaves_the_previous_files_whole(monkeypatch) -> None:
    old = _write("run", seed=1)
    old_record = read_run("run")
    write_array, calls = np.lib.format.write_array, []

    def fail_on_second_array(*args, **kwargs) -> None:
        """Write one array, then fail as a full disk or a kill would."""
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        write_array(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(np.lib.format, "write_array", fail_on_second_array)
        for name in ("run", "new"):
            calls.clear()
            with pytest.raises(OSError, match="No space"):
                _write(name, seed=2)
    stored = read_predictions("run")
    assert all(np.array_equal(stored[s][1], old[s][1]) for s in old)
    assert read_run("run") == old_record
    assert not record_path("new").exists()  # no record without its predictions
    # nothing else left behind, not even temporary files
    assert sorted(p.name for p in record_path("run").parent.rglob("*")) == [
        "predictions",
        "run.json",
        "run.npz",
    ]


def test_teacher_file_is_written_where_asked(tmp_path: Path, monkeypatch) -> None:
    probabilities = np.full((3, 7), 1 / 7, np.float32)
    monkeypatch.setattr(ensemble, "teacher_probabilities", lambda *args, **kw: probabilities)
    train = type("Train", (), {"images": None, "source_index": np.arange(3)})()
    path = ensemble.write_teacher(None, {}, train, tmp_path / "out" / "teacher")  # no .npz
    with np.load(path) as stored:
        assert np.array_equal(stored["probabilities"], probabilities)
    assert [p.name for p in path.parent.iterdir()] == ["teacher"]
