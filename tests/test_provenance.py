"""Freshness: every committed figure and ensemble record names what it was made from, and no
longer matching it fails here — shown by swapping the model or a member's predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from fer_utils import provenance
from fer_utils.files import file_sha256
from fer_utils.runs import all_runs, predictions_path, write_run
from fer_utils.visualize import save_figure

ROOT = Path(__file__).resolve().parent.parent
FIGURES = sorted((ROOT / "figures").glob("*.png"))
NOT_NOTEBOOK_FIGURES = {"web_demo"}  # tests/test_web.py's screenshot of the browser demo


def _line_figure(name: str) -> Path:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    path = save_figure(fig, name)
    plt.close(fig)
    return path


def test_a_figure_goes_stale_when_its_model_is_swapped(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(provenance, "project_root", lambda: tmp_path)
    model = tmp_path / "models" / "default.keras"
    model.parent.mkdir()
    model.write_bytes(b"weights one")
    provenance.made_from(model=model, data_sha256="abc")
    path = _line_figure("maps")
    assert provenance.figure_sources(path)["model"]["path"] == "models/default.keras"
    assert provenance.figure_staleness(path, tmp_path) is None
    model.write_bytes(b"weights two")
    assert "another models/default.keras" in provenance.figure_staleness(path, tmp_path)
    model.unlink()
    assert "not there" in provenance.figure_staleness(path, tmp_path)


def _write_member(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 50)
    probs = rng.dirichlet(np.ones(7), 50)
    write_run(name, "trained", "m", "cmd", "cpu", "d", 1.0, {"PublicTest": (labels, probs)})


def test_a_figure_goes_stale_when_a_members_predictions_change(tmp_path, monkeypatch) -> None:
    results = Path(__import__("os").environ["FER_RESULTS"])
    monkeypatch.setattr(provenance, "project_root", lambda: tmp_path)
    for seed, name in enumerate(("a-cpu", "b-cpu")):
        _write_member(name, seed)
    provenance.made_from(runs=["a-cpu", "b-cpu"])
    path = _line_figure("vote")
    shutil.copytree(results, tmp_path / "results")
    assert provenance.figure_staleness(path, tmp_path) is None
    shutil.copy(predictions_path("a-cpu"), tmp_path / "results" / "predictions" / "b-cpu.npz")
    assert "older predictions of b-cpu" in provenance.figure_staleness(path, tmp_path)


@pytest.mark.parametrize("figure", FIGURES, ids=lambda p: p.stem)
def test_committed_figure_matches_its_inputs(figure: Path) -> None:
    if figure.stem in NOT_NOTEBOOK_FIGURES:
        pytest.skip("a screenshot, not drawn from recorded inputs")
    sources = provenance.figure_sources(figure)
    assert sources, f"{figure.name} does not say what it was made from: redraw it"
    assert provenance.figure_staleness(figure) is None, provenance.figure_staleness(figure)
    if figure.stem[:2] in ("06", "07"):  # explanations are of the model users get
        assert sources["model"]["path"] == "models/default.keras", sources["model"]


def test_default_model_choice_names_the_committed_file() -> None:
    choice = json.loads((ROOT / "models" / "default.json").read_text())
    assert choice["sha256"] == file_sha256(ROOT / "models" / "default.keras")


def test_committed_ensembles_name_their_members_predictions(monkeypatch) -> None:
    """Each ensemble record holds the sha256 of the member predictions it was fitted on, and
    they are the committed ones (refit with the record's command when this fails)."""
    monkeypatch.setenv("FER_RESULTS", str(ROOT / "results"))
    ensembles = [r for r in all_runs() if r.kind == "ensemble"]
    assert ensembles
    for run in ensembles:
        recorded = run.details["member_predictions"]
        assert set(recorded) == set(run.details["members"]), run.run_name
        current = provenance.describe_sources(runs=recorded)["runs"]
        assert current == recorded, f"{run.run_name}: refit it with `{run.command}`"
