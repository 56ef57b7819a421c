"""One experiment end to end: data for a profile → training → evaluation → saved model and
results record. The ``train`` command and the notebooks both call :func:`run_experiment`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from fer_utils.cleaning import clean
from fer_utils.config import checkpoints_dir, get_profile, models_dir, project_root
from fer_utils.data import DataError, Dataset, load_fer2013
from fer_utils.evaluation import predict
from fer_utils.inference.classifier import trained_run
from fer_utils.models import save_for_inference
from fer_utils.results import (
    EVAL_SPLITS,
    REQUIRED_KEYS,
    read_predictions,
    read_record,
    record_path,
    write_run,
)
from fer_utils.selfsupervised import PretrainConfig, linear_probe, pretrain
from fer_utils.training import TrainConfig, TrainResult, read_log, save_config, train
from fer_utils.tta import tta_label, tta_run_name


def profile_data(data: str | Path | Dataset | None, profile: str, seed: int = 0) -> Dataset:
    """The dataset for ``profile``: all rows, or its stratified per-class caps."""
    dataset = data if isinstance(data, Dataset) else load_fer2013(data)
    return dataset.stratified_subset(get_profile(profile).caps(), seed=seed)


@dataclass
class Experiment:
    """What :func:`run_experiment` produced."""

    run_name: str
    model_path: Path
    result: TrainResult
    records: dict[str, Path]
    probabilities: dict[str, np.ndarray]


def run_experiment(
    config: TrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    tta: str | None = "shifts",
    verbose: int | str = "auto",
) -> Experiment:
    """Train ``config`` on ``dataset``'s Training split (cleaned if ``config.clean``), stop
    early on PublicTest, then evaluate on PublicTest and PrivateTest.

    Writes ``models/<run_name>.keras``, ``results/<run_name>.json`` (+ predictions) and, with
    ``tta`` (a name in :data:`~fer_utils.tta.TTA_SETS`), the test-time-augmented
    evaluation ``results/<run_name>-tta[-<tta>].json``."""
    dataset = dataset.label_fraction(config.label_fraction, seed=config.seed)
    train_set = dataset.split("Training")
    removed = None
    if config.clean:
        train_set, counts = clean(dataset, splits=("Training",))
        train_set, removed = train_set.split("Training"), counts.to_dict()
    checkpoints = checkpoints_dir() / run_name
    checkpoints.mkdir(parents=True, exist_ok=True)
    save_config(config, checkpoints / "config.json")
    result = train(config, train_set, dataset.split("PublicTest"), checkpoints, verbose=verbose)
    model_path = models_dir() / f"{run_name}.keras"
    save_for_inference(result.model, model_path)

    extra = {
        "config": dataclasses.asdict(config),
        "epochs_run": result.epochs_run,
        "train_images_per_second": round(len(train_set) * result.epochs_run / result.seconds, 1),
        "train_rows": len(train_set),
        "cleaning_removed": removed,
        "parameters": int(result.model.count_params()),
        "model_file": os.path.relpath(model_path, project_root()),
    }
    records, probabilities = {}, {}
    for tta_set in (None, tta) if tta else (None,):
        path, probs = evaluate_and_record(
            result.model, run_name, config.describe(), dataset, profile, command,
            result.seconds, extra, tta_set,
        )  # fmt: skip
        suffix = path.stem.removeprefix(run_name)
        records[suffix or "plain"] = path
        probabilities |= {f"{split}{suffix}": p for split, p in probs.items()}
    keras.backend.clear_session()
    return Experiment(run_name, model_path, result, records, probabilities)


def evaluate_and_record(
    model: keras.Model,
    run_name: str,
    description: str,
    dataset: Dataset,
    profile: str,
    command: str,
    train_seconds: float,
    extra: dict,
    tta: str | None = None,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Evaluate ``model`` on PublicTest and PrivateTest, plainly or with the TTA set ``tta``,
    and write the record ``run_name`` (``tta``: :func:`~fer_utils.tta.tta_run_name`).
    Returns the record's path and the probabilities per split."""
    name, label = (tta_run_name(run_name, tta), tta_label(tta)) if tta else (run_name, "")
    predictions = {}
    for split in EVAL_SPLITS:
        part = dataset.split(split)
        probs = predict(model, part.images, tta=tta or False, progress=bool(tta))
        predictions[split] = (part.labels, probs)
    path = write_run(
        name, description + label, command, profile, dataset.sha256, train_seconds,
        predictions, {**extra, "tta": tta or False},
    )  # fmt: skip
    return path, {split: probs for split, (_, probs) in predictions.items()}


# what write_run and evaluate_and_record set themselves; the rest of a record describes training
_RECORD_KEYS = {*REQUIRED_KEYS, "tta"}


def evaluate_saved(run_name: str, data: Dataset, tta: str, command: str) -> Path:
    """Evaluate a finished run's saved model (``models/<run>.keras``, or the default model if
    it is that run's) with the TTA set ``tta`` and write ``results/<run>-tta[-<tta>].json``,
    which keeps the run's training time and settings. ``data`` must be the data the run was
    trained on (checked by its hash)."""
    record, model_path = trained_run(run_name)
    config = record.get("config", {})
    seed = config.get("seed", 0)
    dataset = profile_data(data, record["profile"], seed)
    dataset = dataset.label_fraction(config.get("label_fraction", 1.0), seed=seed)
    if dataset.sha256 != record["data_sha256"]:
        raise DataError(
            f"{run_name} was trained on data {record['data_sha256'][:12]}…, this is "
            f"{dataset.sha256[:12]}…: pass the data it was trained on (--data)"
        )
    model = keras.saving.load_model(model_path, safe_mode=True)
    description = record["model"]
    extra = {key: value for key, value in record.items() if key not in _RECORD_KEYS}
    path, _ = evaluate_and_record(
        model, run_name, description, dataset, record["profile"], command,
        record["train_seconds"], extra, tta,
    )  # fmt: skip
    keras.backend.clear_session()
    return path


def load_history(run_name: str) -> pd.DataFrame:
    """The per-epoch log of a run (``checkpoints/<run>/log.csv``); empty if there is none."""
    return read_log(checkpoints_dir() / run_name)


@dataclass
class TrainedRun:
    """A finished run as later notebooks use it: model, record and per-split probabilities."""

    run_name: str
    model: keras.Model
    record: dict
    probabilities: dict[str, np.ndarray]
    history: pd.DataFrame


def load_run(run_name: str) -> TrainedRun:
    """Load ``models/<run>.keras``, ``results/<run>.json`` and its predictions file."""
    record = read_record(run_name)
    probabilities = {s: p for s, (_, p) in read_predictions(run_name).items() if s in EVAL_SPLITS}
    model = keras.saving.load_model(models_dir() / Path(record["model_file"]).name, safe_mode=True)
    return TrainedRun(run_name, model, record, probabilities, load_history(run_name))


def has_run(run_name: str) -> bool:
    """Whether ``models/<run>.keras`` and ``results/<run>.json`` both exist."""
    return (models_dir() / f"{run_name}.keras").is_file() and record_path(run_name).is_file()


def train_or_load(
    config: TrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    reuse: bool = True,
    verbose: int | str = "auto",
) -> TrainedRun:
    """:func:`load_run` if ``reuse`` and the run's model and record exist (e.g. trained by
    ``python -m fer_utils train`` in the background), else :func:`run_experiment` first."""
    if not (reuse and has_run(run_name)):
        run_experiment(config, run_name, dataset, profile, command, verbose=verbose)
    return load_run(run_name)


def train_or_read_record(
    config: TrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    reuse: bool = True,
) -> dict:
    """The run's ``results/<run>.json`` record, trained first unless ``reuse`` and the record
    exists: for tables and curves that need a run's numbers but not its model file."""
    if not (reuse and record_path(run_name).is_file()):
        run_experiment(config, run_name, dataset, profile, command)
    return read_record(run_name)


def run_pretraining(
    config: PretrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    verbose: int | str = "auto",
) -> Path:
    """SimCLR on the Training faces (labels unused), then a linear probe on the frozen
    encoder, fitted on Training and evaluated on PublicTest and PrivateTest.

    Writes ``models/<run>.keras`` (the classifier with the pretrained encoder and an untrained
    head: the ``init`` of later runs) and ``results/<run>.json`` (the linear probe's metrics);
    returns the model's path."""
    train_set = dataset.split("Training")
    checkpoints = checkpoints_dir() / run_name
    result = pretrain(config, train_set.images, checkpoints, verbose=verbose)
    model_path = models_dir() / f"{run_name}.keras"
    save_for_inference(result.model, model_path)
    parts = {split: dataset.split(split) for split in EVAL_SPLITS}
    probabilities = linear_probe(
        result.model, train_set.images, train_set.labels,
        {split: part.images for split, part in parts.items()},
    )  # fmt: skip
    write_run(
        run_name, f"{config.model} SimCLR + linear probe", command, profile, dataset.sha256,
        result.seconds,
        {split: (part.labels, probabilities[split]) for split, part in parts.items()},
        {
            "pretrain_config": dataclasses.asdict(config),
            "epochs_run": len(result.history.get("loss", [])),
            "final_loss": round(float(result.history["loss"][-1]), 4),
            "train_rows": len(train_set),
            "model_file": os.path.relpath(model_path, project_root()),
        },
    )  # fmt: skip
    keras.backend.clear_session()
    return model_path


def label_curve_config(
    model: str,
    model_kwargs: dict,
    fraction: float,
    epochs: int,
    seed: int,
    init: str | Path | None = None,
) -> TrainConfig:
    """One point of the label-efficiency curve (notebook 03), the same recipe from random
    weights and from a pretrained ``init``: label smoothing 0.1 and, below all the labels,
    batches of 64 (more optimizer steps on few faces) and precise BatchNorm."""
    small = fraction < 1
    return TrainConfig(
        model,
        model_kwargs,
        epochs=epochs,
        batch_size=64 if small else 256,
        precise_bn=small,
        label_smoothing=0.1,
        seed=seed,
        label_fraction=fraction,
        init=None if init is None else str(init),
    )
