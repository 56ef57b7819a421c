"""A run's resumable training state in ``checkpoints/<run>/``, whole after a kill at any moment.

::

    state/epoch-0007.weights.h5   weights and optimizer after 7 epochs (the newest two are kept)
    log.csv                       one row per finished epoch: metrics and the epoch's seconds
    best.keras                    the model of the best PublicTest epoch so far (until recorded)
    progress.json                 the stage (training → trained → recorded), epochs, seconds

Every file is written under a temporary name and renamed (:mod:`fer_utils.files`), so each one
is whole or absent. At an epoch's end the log row is written first and the weights checkpoint
last: a kill in between leaves the log an epoch ahead, which the resume cuts back before it
trains that epoch again. A checkpoint that cannot be read (torn by a crash of an older version,
or damaged on disk) is reported in one line and the one before it used.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import keras
import pandas as pd

from fer_utils.files import atomic_path, atomic_write_text

KEEP = 2  # weights checkpoints kept: the newest, and the one before it in case it is damaged
_CHECKPOINT = re.compile(r"epoch-(\d+)\.weights\.h5")


class RunState:
    """The files of one run's checkpoint folder (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.state = self.folder / "state"
        self.log_path = self.folder / "log.csv"
        self.best_path = self.folder / "best.keras"
        self.progress_path = self.folder / "progress.json"

    # --- progress ---------------------------------------------------------------------------
    def progress(self) -> dict:
        """``progress.json`` (stage, epochs, seconds, steps); empty when there is none."""
        try:
            return json.loads(self.progress_path.read_text())
        except (OSError, ValueError):
            return {}

    def set_stage(self, stage: str, **fields: float) -> None:
        """Record that the run reached ``stage`` (with its epoch and seconds totals)."""
        atomic_write_text(self.progress_path, json.dumps({"stage": stage, **fields}) + "\n")

    def totals(self) -> tuple[int, float]:
        """Epochs and seconds of the whole run so far, across resumes (from the log)."""
        rows = self.log()
        seconds = float(rows["seconds"].sum()) if "seconds" in rows else 0.0
        return len(rows), seconds

    # --- the per-epoch log ------------------------------------------------------------------
    def log(self) -> pd.DataFrame:
        """The per-epoch log; empty if there is none (or it cannot be read)."""
        try:
            return pd.read_csv(self.log_path)
        except (OSError, ValueError):  # missing, empty (pandas' EmptyDataError) or garbled
            return pd.DataFrame()

    def history(self) -> dict[str, list[float]]:
        """The log as ``{column: values per epoch}``, like Keras' ``History.history``."""
        rows = self.log()
        return {column: rows[column].tolist() for column in rows}

    def _write_log(self, rows: pd.DataFrame) -> None:
        with atomic_path(self.log_path) as temp:
            rows.to_csv(temp, index=False)

    def add_log_row(self, row: dict) -> None:
        """Append one epoch's row to ``log.csv`` (the whole file rewritten atomically)."""
        self._write_log(pd.concat([self.log(), pd.DataFrame([row])], ignore_index=True))

    def best_logged(self, metric: str) -> float | None:
        """The highest ``metric`` in the log (epochs before a resume), if any."""
        values = self.log().get(metric, pd.Series(dtype=float)).dropna()
        return float(values.max()) if len(values) else None

    # --- weights checkpoints ----------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """(epochs done, file) of every weights checkpoint, newest first."""
        found = []
        for path in self.state.glob("epoch-*.weights.h5"):
            match = _CHECKPOINT.fullmatch(path.name)
            if match:
                found.append((int(match[1]), path))
        return sorted(found, reverse=True)

    def save_checkpoint(self, model: keras.Model, epochs_done: int) -> None:
        """Weights and optimizer after ``epochs_done`` epochs; older checkpoints pruned."""
        self.state.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state / f"epoch-{epochs_done:04d}.weights.h5") as temp:
            model.save_weights(temp)
        self._prune(KEEP)

    def _prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` weights checkpoints."""
        for _, old in self.checkpoints()[keep:]:
            old.unlink(missing_ok=True)

    def restore(self, model: keras.Model) -> int:
        """Load the newest readable checkpoint into ``model`` (compiled: its optimizer state
        comes back too) and cut the log back to it. Returns the epochs it had done (0: none)."""
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for epochs_done, path in self.checkpoints():
            try:
                model.load_weights(path)
            except Exception as error:  # torn or damaged: h5py raises OSError, Keras ValueError
                print(f"{path} cannot be read ({type(error).__name__}); trying the one before")
                path.unlink(missing_ok=True)
                continue
            rows = self.log()
            if "epoch" in rows and (rows["epoch"] >= epochs_done).any():
                self._write_log(rows[rows["epoch"] < epochs_done])
            print(f"resuming {self.folder.name} after epoch {epochs_done} ({path.name})")
            return epochs_done
        return 0

    def begin(self, model: keras.Model, epochs: int) -> tuple[int, int]:
        """Before ``fit``: restore an unrecorded run into ``model`` (compiled), or start afresh.
        Returns ``fit``'s ``initial_epoch`` and ``epochs``. None are left to run when training
        had finished (killed before its records were written: they are written now) or early
        stopping or a time budget had ended it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stage = self.progress().get("stage", "training")
        done = self.restore(model) if stage != "recorded" else 0
        if not done:
            self.start_fresh()
            return 0, epochs
        over = stage == "trained" or self.progress().get("stopped", False)
        return done, done if over else epochs

    # --- starting afresh --------------------------------------------------------------------
    def start_fresh(self) -> None:
        """Clear the way for a new run in this folder. The log and best model of a run that
        finished are removed (its model and records are saved elsewhere); those of a run that
        was interrupted and cannot be resumed (its checkpoints deleted or unreadable) are moved
        into ``previous-<time>/`` and the move is reported: nothing of it is lost silently."""
        stale = [p for p in (self.log_path, self.best_path) if p.is_file()]
        if stale and self.progress().get("stage") != "recorded":
            keep = self.folder / time.strftime("previous-%Y%m%d-%H%M%S")
            keep.mkdir(parents=True, exist_ok=True)
            for path in stale:
                path.replace(keep / path.name)
            print(f"{self.folder.name}: no checkpoint to resume from; the interrupted run's "
                  f"log and best model were moved to {keep}")  # fmt: skip
        for path in stale:
            path.unlink(missing_ok=True)
        shutil.rmtree(self.state, ignore_errors=True)
        self.progress_path.unlink(missing_ok=True)

    def finish_training(self, steps: int) -> None:
        """Training is over: the stage ``trained``, with the newest weights checkpoint kept
        until the run's model and records are written (:meth:`finish_recording`)."""
        self._prune(1)
        epochs, seconds = self.totals()
        self.set_stage("trained", epochs=epochs, seconds=round(seconds, 1), steps=steps)

    def finish_recording(self) -> None:
        """The run's model and records are written: the stage ``recorded`` (started again, the
        run trains afresh). The weights checkpoint and ``best.keras`` (the saved model, with
        its optimizer state) are no longer needed; the log stays, for learning curves."""
        epochs, seconds = self.totals()
        self.set_stage("recorded", epochs=epochs, seconds=round(seconds, 1))
        shutil.rmtree(self.state, ignore_errors=True)
        self.best_path.unlink(missing_ok=True)


class SaveState(keras.callbacks.Callback):
    """At each epoch's end: the log row, the best model (when ``monitor`` improved on every
    epoch before, those before a resume included) and the weights checkpoint, in that order."""

    def __init__(self, run: RunState, monitor: str | None = "val_accuracy") -> None:
        super().__init__()
        self.run, self.monitor = run, monitor
        self.best = run.best_logged(monitor) if monitor else None
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {key: float(value) for key, value in (logs or {}).items()}
        seconds = round(time.perf_counter() - self.started, 2)
        self.run.add_log_row({"epoch": epoch, **logs, "seconds": seconds})
        value = logs.get(self.monitor) if self.monitor else None
        if value is not None and (self.best is None or value > self.best):
            self.best = value
            with atomic_path(self.run.best_path) as temp:
                self.model.save(temp)
        self.run.save_checkpoint(self.model, epoch + 1)
        epochs, total = self.run.totals()
        stopped = bool(self.model.stop_training)  # early stopping or the time budget
        self.run.set_stage("training", epochs=epochs, seconds=round(total, 1), stopped=stopped)
