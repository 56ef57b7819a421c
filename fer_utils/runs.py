"""The run store: one typed record per training or evaluation run, read and written here only.

``results/<run>.json`` is a :class:`Run`; ``results/predictions/<run>.npz`` its per-split labels
and probabilities. A record says what it is in fields, never through its name: its ``kind``
(:data:`KINDS`), the TTA set it was evaluated with, the run whose model it evaluates
(``trained_by``), whether that model was distilled, its profile and model file. Names are file
names, nothing more; lookups go by fields (:func:`find`). The metrics of a record are computed
from its predictions when it is written, so the two always agree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fer_utils.config import models_dir, project_root, results_dir
from fer_utils.errors import ModelError, UsageError
from fer_utils.files import atomic_open, atomic_write_text

KINDS = ("trained", "tta", "ensemble", "pretrained")
"""trained: a model trained and evaluated; tta: a trained run's model evaluated again with a
test-time-augmentation set; ensemble: members' predictions combined; pretrained: a
self-supervised encoder, evaluated by a linear probe."""
EVAL_SPLITS = ("PublicTest", "PrivateTest")
DEFAULT_MODEL = "default.keras"  # models/: the committed model, with default.json saying whose
_PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "opencv-python-headless")
_REDO = "re-run the command that wrote it (train, evaluate or ensemble) or delete it"


@dataclass(frozen=True)
class Run:
    """One record. ``details`` holds what only some kinds have: ``config`` (the TrainConfig),
    ``epochs_run``, ``members`` (ensembles), ``pretrain_config``, ``cv_accuracy``, …"""

    run_name: str
    kind: str
    model: str  # as tables name it, e.g. "fast_cnn + TTA affine"
    command: str
    profile: str
    data_sha256: str
    versions: dict
    train_seconds: float
    metrics: dict  # split → accuracy, balanced_accuracy, macro_f1, n, …
    tta: str | None = None  # the TTA set of a tta record
    trained_by: str | None = None  # the run whose model a tta record evaluates
    model_file: str | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"{self.run_name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == "tta") != bool(self.tta and self.trained_by):
            raise UsageError(
                f"{self.run_name}: a record has a TTA set and the run it evaluates (trained_by) "
                f"exactly when its kind is 'tta' (kind {self.kind!r}, tta {self.tta!r}, "
                f"trained_by {self.trained_by!r})"
            )
        clash = set(self.details) & {f.name for f in dataclasses.fields(self)}
        if clash:
            raise UsageError(f"{self.run_name}: details repeat the fields {sorted(clash)}")

    @property
    def trainer(self) -> str:
        """The run that trained this record's model (itself, unless it is a TTA evaluation)."""
        return self.trained_by or self.run_name

    @property
    def config(self) -> dict:
        """The training settings (a SimCLR run's pretraining settings; empty for ensembles)."""
        return self.details.get("config") or self.details.get("pretrain_config") or {}

    @property
    def distilled(self) -> bool:
        """Whether the model learnt from a teacher's probabilities (a student)."""
        return self.config.get("soft_targets") == "teacher"

    @property
    def architecture(self) -> str:
        """The model description without the TTA label."""
        return self.model.removesuffix(tta_label(self.tta)) if self.tta else self.model

    def to_json(self) -> dict:
        """The record as stored: the fields, then ``details`` at the top level."""
        core = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**{k: v for k, v in core.items() if k != "details"}, **self.details}

    @classmethod
    def from_json(cls, record: dict) -> Run:
        """A :class:`Run` from a stored record (one written before the store, too: see
        :func:`upgrade`)."""
        record = upgrade(record)
        names = {f.name for f in dataclasses.fields(cls)} - {"details"}
        missing = names - set(record) - {"tta", "trained_by", "model_file"}
        if missing:
            raise KeyError(", ".join(sorted(missing)))
        details = {k: v for k, v in record.items() if k not in names}
        return cls(**{k: record[k] for k in names if k in record}, details=details)


def tta_label(tta: str) -> str:
    """What a record's model description gains with the TTA set ``tta``: `` + TTA [name]``."""
    return " + TTA" + ("" if tta == "shifts" else f" {tta}")


def upgrade(record: dict) -> dict:
    """A record as the store writes it. Records written before it had no ``kind``, named the
    TTA set only in the run name (``-tta``, ``-tta-<set>``) and kept ``tta`` as true, false or
    the set's name; this reads that once (:func:`migrate` rewrites the files)."""
    if "kind" in record:
        return record
    name, tta = record["run_name"], record.get("tta")
    if tta is True or isinstance(tta, str):
        tta = "shifts" if tta is True else tta
        kind, trained_by = "tta", name.removesuffix(tta_run_name("", tta))
    else:
        tta, trained_by = None, None
        kind = "ensemble" if "members" in record else "trained"
        kind = "pretrained" if "pretrain_config" in record else kind
    return {**record, "kind": kind, "tta": tta, "trained_by": trained_by}


def migrate(folder: Path | None = None) -> int:
    """Rewrite every record in ``folder`` (default: results/) in the store's form; returns how
    many changed. Run once when the store arrived; later records are written in it."""
    changed = 0
    for path in sorted((folder or results_dir()).glob("*.json")):
        record = _read_json(path)
        if isinstance(record, dict) and "metrics" in record and "kind" not in record:
            atomic_write_text(path, json.dumps(Run.from_json(record).to_json(), indent=2) + "\n")
            changed += 1
    return changed


# --- names and files -----------------------------------------------------------------------
def check_run_name(run_name: str) -> str:
    """``run_name`` if it is one safe file name (letters, digits, ``.``, ``_``, ``-``; not
    starting with a dot, so never ``..``): it names the run's model, record and checkpoint
    folder. Else a :class:`UsageError`, before anything is trained or written."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", run_name):
        raise UsageError(
            f"run name {run_name!r}: use letters, digits, '.', '_' and '-' only, not starting "
            "with '.' (it becomes file names), e.g. five_layer-cpu-s1"
        )
    return run_name


def tta_run_name(run_name: str, tta: str) -> str:
    """The file name of ``run_name``'s record with the TTA set ``tta``: ``<run>-tta`` for
    ``shifts`` (the first set), ``<run>-tta-<set>`` for the others."""
    return f"{run_name}-tta" + ("" if tta == "shifts" else f"-{tta}")


def record_path(run_name: str) -> Path:
    """Where a run's record is (``results/<run>.json``)."""
    return results_dir() / f"{run_name}.json"


def predictions_path(run_name: str) -> Path:
    """Where a run's per-split labels and probabilities are (``results/predictions/<run>.npz``)."""
    return results_dir() / "predictions" / f"{run_name}.npz"


def history_path(run_name: str) -> Path:
    """Where a finished run's per-epoch log is kept (``results/history/<run>.csv``): a copy of
    ``checkpoints/<run>/log.csv``, committed with the record so learning curves can be drawn
    on any machine."""
    return results_dir() / "history" / f"{run_name}.csv"


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or a :class:`UsageError` naming the file if it cannot be parsed
    (e.g. a record cut short by a kill or a full disk, or a bad merge)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = (
            f"{error.msg} at line {error.lineno}, column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else "not UTF-8 text"
        )
        raise UsageError(f"{path} is not valid JSON ({reason}): {_REDO}") from None


def _run_at(path: Path) -> Run:
    record = _read_json(path)
    if not isinstance(record, dict):
        raise UsageError(f"{path} is not a run record (a JSON object): {_REDO}")
    try:
        return Run.from_json(record)
    except KeyError as missing:
        raise UsageError(f"{path} is not a run record (no {missing}): {_REDO}") from None


# --- reading ------------------------------------------------------------------------------
def read_run(run_name: str) -> Run:
    """``results/<run>.json``, or a FileNotFoundError that says to train the run (a
    :class:`UsageError` if the file is truncated or not a record)."""
    path = record_path(run_name)
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: train or evaluate run {run_name!r} first")
    return _run_at(path)


def read_predictions(run_name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split in ``run_name``'s predictions file: {split: (labels, probabilities)};
    empty if the run has no predictions file."""
    path = predictions_path(run_name)
    if not path.is_file():
        return {}
    with np.load(path) as stored:
        return {
            key.removesuffix("_labels"): (
                stored[key].astype(np.int64),
                stored[key.replace("_labels", "_probabilities")],
            )
            for key in stored.files
            if key.endswith("_labels")
        }


def all_runs(folder: Path | None = None) -> list[Run]:
    """Every record in ``folder`` (default: results/), by name. JSON files that are not run
    records (e.g. a table's) are skipped; a file that is not valid JSON is a
    :class:`UsageError` that names it."""
    runs = []
    for path in sorted((folder or results_dir()).glob("*.json")):
        record = _read_json(path)
        if isinstance(record, dict) and "metrics" in record and "run_name" in record:
            runs.append(_run_at(path))
    return runs


def find(runs: list[Run] | None = None, **fields: Any) -> list[Run]:
    """The runs whose attributes equal ``fields``, e.g. ``find(kind="trained", profile="cpu")``
    or ``find(trained_by="x", tta="affine")``; ``runs`` defaults to :func:`all_runs`."""
    return [
        run
        for run in (all_runs() if runs is None else runs)
        if all(getattr(run, key) == value for key, value in fields.items())
    ]


# --- writing ------------------------------------------------------------------------------
def command_line() -> str:
    """The command that started this process, relative to the project root where possible."""
    root = str(project_root())
    args = [a.replace(root + os.sep, "") for a in sys.argv]
    if args and args[0].endswith("__main__.py"):
        args = ["python", "-m", "fer_utils", *args[1:]]
    return shlex.join(args)


def versions() -> dict[str, str]:
    """Python and key package versions, recorded with every run."""
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_run(
    run_name: str,
    kind: str,
    model: str,
    command: str,
    profile: str,
    data_sha256: str,
    train_seconds: float,
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    details: dict[str, Any] | None = None,
    tta: str | None = None,
    trained_by: str | None = None,
    model_file: str | None = None,
) -> Run:
    """Write ``results/<run_name>.json`` and ``results/predictions/<run_name>.npz``.

    ``predictions`` maps a split name to (labels, probabilities (N, 7)); the metrics of the
    record are computed from them here. The predictions are written first and the record last,
    each atomically: a record never exists without its predictions, and a kill leaves the old
    files or the new ones, never a torn one."""
    from fer_utils.evaluation import metrics  # scikit-learn: only when a record is written

    check_run_name(run_name)
    run = Run(
        run_name, kind, model, command, profile, data_sha256, versions(),
        round(float(train_seconds), 1),
        {split: metrics(y, p) for split, (y, p) in predictions.items()},
        tta, trained_by, model_file, dict(details or {}),
    )  # fmt: skip
    arrays = {}
    for split, (labels, probabilities) in predictions.items():
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int8)
        arrays[f"{split}_probabilities"] = np.asarray(probabilities, dtype=np.float32)
    with atomic_open(predictions_path(run_name), "wb") as file:
        np.savez_compressed(file, **arrays)  # to a file object: no ".npz" appended
    atomic_write_text(record_path(run_name), json.dumps(run.to_json(), indent=2) + "\n")
    return run


# --- models -------------------------------------------------------------------------------
def default_choice(folder: Path | None = None) -> dict:
    """``default.json`` in ``folder`` (default: models/), the one record of which run the
    default model is: ``run_name``, how it was chosen, its sha256 and calibration record;
    ``{}`` where there is none."""
    chosen = (folder or models_dir()) / "default.json"
    return json.loads(chosen.read_text()) if chosen.is_file() else {}


def model_path(run: Run) -> Path | None:
    """The model file of ``run``'s trainer: ``models/<trainer>.keras``; else the default model
    when it is that run's (only the default is committed, so a fresh clone can still weigh it
    against new runs); else None."""
    own = models_dir() / f"{run.trainer}.keras"
    if own.is_file():
        return own
    if default_choice().get("run_name") == run.trainer:
        return models_dir() / DEFAULT_MODEL
    return None


def trainer_record(run: Run) -> Run:
    """The record of the run that trained ``run``'s model (``run`` itself if it is gone)."""
    try:
        return read_run(run.trainer)
    except FileNotFoundError:
        return run


def trained_run(run_name: str) -> tuple[Run, Path]:
    """The record and model file of a finished training run, or a :class:`ModelError` that
    says what is missing, or that ``run_name`` is not a trained model's record."""
    try:
        run = read_run(run_name)
    except FileNotFoundError as missing:
        raise ModelError(f"no results/{run_name}.json: train the run first") from missing
    if run.kind == "tta":
        raise ModelError(f"{run_name} is a TTA evaluation of {run.trainer}; name that run")
    if run.kind != "trained":
        raise ModelError(f"{run_name} is a record of kind {run.kind!r}, not a trained model's")
    path = model_path(run)
    if path is None:
        raise ModelError(f"{models_dir() / f'{run_name}.keras'} is missing: rerun `{run.command}`")
    return run, path
