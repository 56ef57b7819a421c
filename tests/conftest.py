"""Shared fixtures: the real data (when ``FER2013_PATH`` is set), the bundled sample, and small
CSV files written on the fly for the bad-input tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fer_utils.config import SPLITS

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "sample" / "fer2013_sample.csv.gz"

# Per-class counts of the real FER2013 (emotion 0..6), from shared/data/README.md.
REAL_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Figures, results and models of a test go to temporary folders; the parse cache is shared by
    the session (so the real CSV is parsed once) but kept out of the user's cache. The default
    model stays the committed one (``FER_MODEL``)."""
    monkeypatch.setenv("FER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FER_FIGURES", str(tmp_path_factory.mktemp("figures")))
    monkeypatch.setenv("FER_RESULTS", str(tmp_path_factory.mktemp("results")))
    monkeypatch.setenv("FER_MODELS", str(tmp_path_factory.mktemp("models")))
    monkeypatch.setenv("FER_CHECKPOINTS", str(tmp_path_factory.mktemp("checkpoints")))
    # the default model is models_dir()/default.keras, which FER_MODELS now points away from
    monkeypatch.setenv("FER_MODEL", str(ROOT / "models" / "default.keras"))
    monkeypatch.setattr("fer_utils.provenance._current", {})  # no sources left by another test


@pytest.fixture(scope="session")
def real_csv() -> Path:
    """The real fer2013.csv(.gz) from ``FER2013_PATH``; the test is skipped without it."""
    path = os.environ.get("FER2013_PATH")
    if not path or not Path(path).is_file():
        pytest.skip("set FER2013_PATH to the real fer2013.csv.gz to run this test")
    return Path(path)


@pytest.fixture(scope="session")
def real_images_zip(real_csv: Path) -> Path:
    """The Kaggle image-folder test zip beside the real CSV; skipped if it is not there."""
    path = real_csv.parent / "fer2013-kaggle-images-test.zip"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def write_csv(
    path: Path, rows: list[tuple[str, str, str]], header: str = "emotion,pixels,Usage"
) -> Path:
    """Write a FER2013-style CSV with the given (emotion, pixels, usage) text fields."""
    lines = [header, *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def face_text(seed: int) -> str:
    """2304 space-separated pixel values of a reproducible random face."""
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, 2304).tolist()))


@pytest.fixture
def good_rows() -> list[tuple[str, str, str]]:
    """Seven valid rows: every split present, labels 0..6."""
    return [(str(k % 7), face_text(k), SPLITS[k % 3]) for k in range(7)]
