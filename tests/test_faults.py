"""Training survives a kill at any moment, and bad settings stop it before any work is done.

A kill is simulated where it does the most harm: in the middle of writing a file. The trainer
runs in a subprocess whose ``Path.replace`` (the rename that completes every atomic write)
first tears the half-written file and then kills its own process with SIGKILL, at the N-th
write of a chosen file. The same command is then run again, as a user would, and must finish
the run with a whole log, a loadable best model and a record of the whole run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from fer_utils.checkpoints import RunState
from fer_utils.cli import main
from fer_utils.config import SPLITS

from conftest import ROOT, write_csv

KILLER = """
import os, pathlib, signal, sys
name, nth = sys.argv[1], int(sys.argv[2])
real, seen = pathlib.Path.replace, 0
def replace(self, target):
    global seen
    if pathlib.Path(target).name == name:
        seen += 1
        if seen == nth:  # torn mid-write, then killed before the rename
            os.truncate(self, self.stat().st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    return real(self, target)
pathlib.Path.replace = replace
from fer_utils.cli import main
sys.exit(main(sys.argv[3:]))
"""
EPOCHS = 3
RUN = "killed"


def learnable_csv(path: Path, n: int = 144) -> Path:
    """Noise faces whose label (0–3) is a bright patch in one quadrant; half Training."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        label = k % 4
        face = rng.integers(0, 120, (48, 48))
        r, c = divmod(label, 2)
        face[6 + 24 * r : 18 + 24 * r, 6 + 24 * c : 18 + 24 * c] = 250
        split = SPLITS[0] if k < n // 2 else SPLITS[1 + k % 2]
        rows.append((str(label), " ".join(map(str, face.ravel())), split))
    return write_csv(path, rows)


def train_command(data: Path) -> list[str]:
    return ["train", "--model", "five_layer", "--data", str(data), "--epochs", str(EPOCHS),
            "--batch-size", "24", "--augment", "none", "--no-tta", "--run-name", RUN]  # fmt: skip


def run(args: list[str], kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    """``python -m fer_utils ARGS`` in a fresh process (killed at ``kill``: file name, n-th)."""
    name, nth = kill or ("-", 0)
    command = [sys.executable, "-c", KILLER, name, str(nth), *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def checkpoints() -> Path:
    return Path(os.environ["FER_CHECKPOINTS"]) / RUN


def assert_whole_run(result: subprocess.CompletedProcess) -> dict:
    """The run finished: every epoch logged once, a loadable model, a whole record, and the
    checkpoints cleared away."""
    assert result.returncode == 0, result.stderr[-2000:]
    log = pd.read_csv(checkpoints() / "log.csv")
    assert list(log["epoch"]) == list(range(EPOCHS))
    keras.saving.load_model(Path(os.environ["FER_MODELS"]) / f"{RUN}.keras", safe_mode=True)
    progress = json.loads((checkpoints() / "progress.json").read_text())
    assert progress["stage"] == "recorded" and not (checkpoints() / "state").exists()
    record = json.loads((Path(os.environ["FER_RESULTS"]) / f"{RUN}.json").read_text())
    assert record["epochs_run"] == EPOCHS  # the whole run's, not the part after the resume
    assert record["train_seconds"] == pytest.approx(log["seconds"].sum(), abs=0.2)
    assert record["metrics"]["PrivateTest"]["accuracy"] > 0.4  # learnt (chance: 0.25)
    return record


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill", "resumes_after"),
    [
        (("best.keras", 1), 0),  # the very first best model: nothing to resume, a clean start
        (("log.csv", 2), 1),  # epoch 2's log row
        ("checkpoint", 1),  # epoch 2's weights checkpoint
        ((f"{RUN}.keras", 1), EPOCHS),  # the final model, after training: evaluate, not retrain
        ((f"{RUN}.json", 1), EPOCHS),  # the record, after the evaluation
    ],
    ids=["first-best-model", "log", "weights-checkpoint", "final-model", "record"],
)
def test_a_run_killed_while_writing_resumes_and_finishes_whole(
    tmp_path: Path, kill: tuple[str, int] | str, resumes_after: int
) -> None:
    data = learnable_csv(tmp_path / "faces.csv")
    if kill == "checkpoint":
        kill = ("epoch-0002.weights.h5", 1)
    killed = run(train_command(data), kill)
    assert killed.returncode == -9  # SIGKILL
    if resumes_after == EPOCHS:  # training had finished: the restart must not train again
        log_before = (checkpoints() / "log.csv").read_text()
    again = run(train_command(data))
    assert_whole_run(again)
    if resumes_after:
        assert f"resuming {RUN} after epoch {resumes_after}" in again.stdout
    if resumes_after == EPOCHS:
        assert (checkpoints() / "log.csv").read_text() == log_before


@pytest.mark.slow
def test_a_torn_checkpoint_falls_back_to_the_one_before(tmp_path: Path) -> None:
    data = learnable_csv(tmp_path / "faces.csv")
    assert run(train_command(data), ("log.csv", 3)).returncode == -9  # after 2 whole epochs
    newest = checkpoints() / "state" / "epoch-0002.weights.h5"
    os.truncate(newest, 96)  # as a kill tore it in versions that wrote in place
    again = run(train_command(data))
    assert "epoch-0002.weights.h5 cannot be read" in again.stdout
    assert f"resuming {RUN} after epoch 1" in again.stdout
    assert_whole_run(again)


@pytest.mark.slow
def test_deleting_the_checkpoints_by_hand_keeps_the_log_and_best_model(tmp_path: Path) -> None:
    data = learnable_csv(tmp_path / "faces.csv")
    assert run(train_command(data), ("log.csv", 3)).returncode == -9
    log_before = (checkpoints() / "log.csv").read_text()
    for path in (checkpoints() / "state").iterdir():
        path.unlink()
    again = run(train_command(data))
    assert_whole_run(again)
    (kept,) = checkpoints().glob("previous-*")
    assert (kept / "log.csv").read_text() == log_before and (kept / "best.keras").is_file()
    assert f"moved to {kept}" in again.stdout


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--run-name", "my run", "run name 'my run': use letters"),
        ("--run-name", "../outside", "run name '../outside'"),
        ("--run-name", ".hidden", "not starting with '.'"),
        ("--epochs", "0", "epochs=0: must be at least 1"),
        ("--epochs", "-1", "epochs=-1: must be at least 1"),
        ("--batch-size", "0", "batch_size=0: must be at least 1"),
        ("--label-fraction", "0", "label_fraction=0.0: must be above 0"),
        ("--label-smoothing", "1", "label_smoothing=1.0"),
        ("--lr", "-0.1", "learning_rate=-0.1: must be above 0"),
        ("--time-budget", "0", "time_budget_minutes=0.0"),
    ],
)
def test_bad_settings_stop_before_the_data_is_loaded(option, value, message, capsys) -> None:
    missing = "/nonexistent/fer2013.csv"  # a DataError if the data were read first
    argv = ["train", "--model", "five_layer", "--data", missing, option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("variable", ["FER_MODELS", "FER_RESULTS", "FER_CHECKPOINTS"])
def test_an_unwritable_output_folder_stops_before_training(
    variable: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder below a file cannot be made, even by root
    monkeypatch.setenv(variable, str(blocker / "out"))
    argv = ["train", "--model", "five_layer", "--data", "/nonexistent/fer2013.csv"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(blocker / "out") in err and variable in err and "Traceback" not in err


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    data = learnable_csv(tmp_path / "faces.csv")
    real = RunState.save_checkpoint

    def disk_fills_at_epoch_two(self: RunState, model, epochs_done: int) -> None:
        if epochs_done == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.state))
        real(self, model, epochs_done)

    monkeypatch.setattr(RunState, "save_checkpoint", disk_fills_at_epoch_two)
    assert main(train_command(data)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    monkeypatch.setattr(RunState, "save_checkpoint", real)
    assert main(train_command(data)) == 0
    assert f"resuming {RUN} after epoch 1" in capsys.readouterr().out
    assert list(pd.read_csv(checkpoints() / "log.csv")["epoch"]) == list(range(EPOCHS))
