"""The run store: every committed record loads as a typed Run, lookups go by fields (never by
names), and the README's tables come out of the migrated records unchanged."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from fer_utils import ensemble, runs, tables
from fer_utils.config import results_dir
from fer_utils.errors import UsageError

from conftest import ROOT

COMMITTED = ROOT / "results"


def test_every_committed_record_loads_with_consistent_fields() -> None:
    stored = runs.all_runs(COMMITTED)
    assert len(stored) == len(list(COMMITTED.glob("*.json")))  # every JSON is a record
    by_name = {run.run_name: run for run in stored}
    for run in stored:
        if run.kind == "tta":
            trainer = by_name[run.trained_by]  # evaluates a trained run that is recorded
            assert trainer.kind == "trained" and run.tta is not None
            assert run.run_name == runs.tta_run_name(run.trained_by, run.tta)
            assert run.model == trainer.model + runs.tta_label(run.tta)
        else:
            assert run.tta is None and run.trained_by is None
        if run.kind == "ensemble":
            assert set(run.details["members"]) <= set(by_name)  # {member: weight}
        assert json.loads((COMMITTED / f"{run.run_name}.json").read_text()) == run.to_json()


def test_the_readme_tables_come_out_of_the_records_unchanged(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    # nothing to change: today's text, the default model's summary included
    assert not tables.update_readme(readme, COMMITTED, ROOT / "models")


def test_records_from_before_the_store_are_read_by_their_fields() -> None:
    base = {"model": "fast_cnn", "command": "train …", "profile": "cpu", "data_sha256": "x",
            "versions": {}, "train_seconds": 1.0, "metrics": {}}  # fmt: skip
    shifts = runs.upgrade({**base, "run_name": "a-tta", "model": "fast_cnn + TTA", "tta": True})
    assert (shifts["kind"], shifts["tta"], shifts["trained_by"]) == ("tta", "shifts", "a")
    affine = runs.upgrade({**base, "run_name": "a-tta-affine", "tta": "affine"})
    assert (affine["kind"], affine["tta"], affine["trained_by"]) == ("tta", "affine", "a")
    plain = runs.upgrade({**base, "run_name": "a", "tta": False})
    assert (plain["kind"], plain["tta"]) == ("trained", None)
    assert runs.upgrade({**base, "run_name": "e", "members": []})["kind"] == "ensemble"
    assert runs.upgrade({**base, "run_name": "s", "pretrain_config": {}})["kind"] == "pretrained"


def write(name: str, kind: str = "trained", **fields) -> None:
    labels = np.arange(14) % 7
    predictions = {s: (labels, np.eye(7)[labels]) for s in runs.EVAL_SPLITS}
    runs.write_run(name, kind, "fast_cnn", "train …", "cpu", "x", 1.0, predictions, **fields)


def test_lookups_go_by_fields_not_by_names() -> None:
    write("alpha")
    write("alpha-evaluated-again", "tta", tta="affine", trained_by="alpha")  # an unusual name
    write("pupil", details={"config": {"soft_targets": "teacher"}})  # a student, not so named
    write("ensemble-like-name")  # a plain trained run whose name starts like an ensemble's
    write("combo", "ensemble", details={"members": ["alpha"]})
    assert ensemble.member_runs("cpu") == ["alpha", "alpha-evaluated-again", "ensemble-like-name"]
    again = runs.read_run("alpha-evaluated-again")
    assert (again.trainer, again.tta) == ("alpha", "affine")
    assert [r.run_name for r in runs.find(kind="tta")] == ["alpha-evaluated-again"]
    assert [r.run_name for r in runs.find(trained_by="alpha")] == ["alpha-evaluated-again"]


def test_unsafe_run_names_are_refused_before_anything_is_written() -> None:
    for name in ("my run", "../outside", ".hidden", "a/b", ""):
        with pytest.raises(UsageError, match="run name"):
            write(name)
    assert not list(results_dir().glob("*.json"))


def test_inference_is_a_leaf_that_training_and_ensembling_do_not_import() -> None:
    for module in (ROOT / "fer_utils").rglob("*.py"):
        if module.parent.name == "inference" or module.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith("fer_utils.inference") for n in names), module


def test_every_committed_ensemble_matches_its_members_predictions_today(monkeypatch) -> None:
    monkeypatch.setenv("FER_RESULTS", str(COMMITTED))  # read only
    drift = {run.run_name: ensemble.drift(run) for run in runs.find(kind="ensemble")}
    assert drift and all(d < ensemble.STALE for d in drift.values()), drift


def test_a_retrained_member_makes_its_ensembles_stale(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FER_RESULTS", str(tmp_path))
    write("a")
    write("b")
    combo = ensemble.Ensemble(("a", "b"), np.array([0.5, 0.5]))
    validation = ensemble.load_split(["a", "b"], "PublicTest")
    fresh = ensemble.record_ensemble(combo, "combo", validation, "ensemble a b")
    assert ensemble.drift(fresh) < ensemble.STALE
    labels = np.arange(14) % 7
    retrained = {s: (labels, np.full((14, 7), 1 / 7)) for s in runs.EVAL_SPLITS}
    runs.write_run("b", "trained", "fast_cnn", "train …", "cpu", "x", 1.0, retrained)
    assert ensemble.drift(runs.read_run("combo")) > ensemble.STALE
