"""What a figure was made from, written into the figure, and whether that still holds.

A notebook names its inputs once (:func:`made_from`: the model file, the runs whose
predictions it plots, the data); every figure saved afterwards carries them, with their
sha256, as a ``Source`` text chunk of the PNG. :func:`figure_staleness` reads that back and
says what changed since: a committed figure made with another model than the file now at
that path, or from predictions that were since re-written, is stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from fer_utils.config import project_root
from fer_utils.files import file_sha256
from fer_utils.runs import predictions_path

SOURCE_KEY = "Source"  # the PNG text chunk
_current: dict = {}


def _relative(path: Path) -> str:
    """``path`` relative to the repository root where it lies inside it (portable records)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(project_root()).as_posix()
    except ValueError:
        return os.fspath(path)


def describe_sources(
    model: str | Path | None = None,
    runs: Iterable[str] = (),
    data_sha256: str | None = None,
) -> dict:
    """The inputs as recorded: model file (path and sha256), each run's predictions file
    sha256, and the data's sha256 — whichever are given."""
    sources: dict = {}
    if model is not None:
        sources["model"] = {"path": _relative(Path(model)), "sha256": file_sha256(model)}
    runs = list(runs)
    if runs:
        sources["runs"] = {name: file_sha256(predictions_path(name)) for name in runs}
    if data_sha256 is not None:
        sources["data_sha256"] = data_sha256
    return sources


def made_from(
    model: str | Path | None = None,
    runs: Iterable[str] = (),
    data_sha256: str | None = None,
) -> dict:
    """Name what the figures saved from now on are made from (see :func:`describe_sources`);
    returns the description. Call it again when a notebook moves on to other inputs."""
    global _current
    _current = describe_sources(model, runs, data_sha256)
    return _current


def png_metadata() -> dict[str, str]:
    """The metadata ``savefig`` writes into a PNG: the current sources as JSON."""
    return {SOURCE_KEY: json.dumps(_current, sort_keys=True)} if _current else {}


def figure_sources(path: str | Path) -> dict:
    """The sources recorded in a PNG figure (empty if it has none)."""
    with Image.open(path) as image:
        text = image.info.get(SOURCE_KEY)
    return json.loads(text) if text else {}


def figure_staleness(path: str | Path, root: Path | None = None) -> str | None:
    """Why the figure at ``path`` no longer matches its inputs, or None if it does: a model
    file or a run's predictions (looked up under ``root``, default the repository) that is
    missing or has another sha256 than when the figure was drawn."""
    root = root or project_root()
    sources = figure_sources(path)
    model = sources.get("model")
    if model:
        file = root / model["path"]
        if not file.is_file():
            return f"made with {model['path']}, which is not there"
        if file_sha256(file) != model["sha256"]:
            return f"made with another {model['path']} (sha256 {model['sha256'][:12]}…)"
    for name, sha in sources.get("runs", {}).items():
        file = root / "results" / "predictions" / f"{name}.npz"
        if not file.is_file():
            return f"made from the predictions of {name}, which are not there"
        if file_sha256(file) != sha:
            return f"made from older predictions of {name} (sha256 {sha[:12]}…)"
    return None
