"""Colab: the badges open the right notebooks, the setup cell does nothing off Colab, and on
(a simulated) Colab it finds the data and picks the full profile when a GPU is there."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from fer_utils import colab
from fer_utils.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_and_setup_cell(notebook: Path) -> None:
    cells = _cells(notebook)
    targets = colab.badge_targets(_source(cells[0]))
    assert targets == [colab.badge_url(notebook.name)]
    assert targets[0].endswith(f"/blob/main/notebooks/{notebook.name}")
    setup = _source(cells[colab.parameters_cell(cells) + 1])
    assert setup == colab.setup_cell(), "run: python -m fer_utils colab-badges"


def test_readme_badges_point_at_each_notebook() -> None:
    readme = (ROOT / "README.md").read_text()
    assert colab.badge_targets(readme) == [colab.badge_url(n.name) for n in NOTEBOOKS]


def test_setup_cell_changes_nothing_off_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    names, cwd = {"profile": "quick", "data_path": "/nowhere/fer2013.csv"}, Path.cwd()
    exec(colab.setup_cell(), names)  # the notebooks' own cell
    assert (names["profile"], names["data_path"]) == ("quick", "/nowhere/fer2013.csv")
    assert Path.cwd() == cwd and "/content/fer2013" not in sys.path


@pytest.fixture
def on_colab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> types.ModuleType:
    """A stand-in ``google.colab`` whose secrets hold nothing, a home without kaggle.json."""
    fake = types.ModuleType("google.colab")

    def missing(name: str) -> str:
        raise KeyError(name)

    fake.userdata = types.SimpleNamespace(get=missing)
    monkeypatch.setitem(sys.modules, "google.colab", fake)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FER2013_PATH", raising=False)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setattr(colab, "DRIVE_DATA", tmp_path / "drive")
    return fake


@pytest.mark.parametrize(("gpu", "asked", "expected"), [
    (True, "quick", "full"), (False, "quick", "quick"), (True, "cpu", "cpu"),
])  # fmt: skip
def test_colab_profile_and_data(on_colab, monkeypatch, tmp_path, gpu, asked, expected) -> None:
    monkeypatch.setattr(colab, "_has_gpu", lambda: gpu)
    data = tmp_path / "drive"
    data.mkdir()
    sample = ROOT / "data" / "sample" / "fer2013_sample.csv.gz"
    (data / "fer2013.csv.gz").write_bytes(sample.read_bytes())
    profile, found = colab.prepare(asked, None)
    assert profile == expected
    assert Path(found) == data / "fer2013.csv.gz"


def test_colab_without_data_says_how_to_get_it(on_colab, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(colab, "_has_gpu", lambda: False)
    monkeypatch.setattr("fer_utils.data.locate.project_root", lambda: tmp_path)
    monkeypatch.setattr("fer_utils.data.download.project_root", lambda: tmp_path)
    with pytest.raises(UsageError, match="KAGGLE_USERNAME and KAGGLE_KEY as Colab secrets"):
        colab.prepare("quick", None)
