"""One experiment end to end: data for a profile → training → evaluation → saved model and
results record. The ``train`` command and the notebooks both call :func:`run_experiment`."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from fer_utils.checkpoints import RunState
from fer_utils.cleaning import clean
from fer_utils.config import checkpoints_dir, get_profile, models_dir, project_root, results_dir
from fer_utils.data import DataError, Dataset, load_fer2013
from fer_utils.errors import ModelError
from fer_utils.evaluation import predict
from fer_utils.files import atomic_path, file_sha256, writable_folder
from fer_utils.layers import Temperature  # noqa: F401  (registered: calibrated models load)
from fer_utils.models import save_for_inference
from fer_utils.runs import (
    EVAL_SPLITS,
    Run,
    check_run_name,
    history_path,
    model_path,
    predictions_path,
    read_predictions,
    read_run,
    record_path,
    trained_run,
    tta_label,
    tta_run_name,
    write_run,
)
from fer_utils.selfsupervised import PretrainConfig, linear_probe, pretrain
from fer_utils.training import TrainConfig, TrainResult, save_config, train
from fer_utils.transfer import backbone_weights


def check_outputs(run_name: str) -> None:
    """Before any work: ``run_name`` is one safe file name and the folders the run writes to
    (models, results, checkpoints) are writable; else a :class:`UsageError` saying which."""
    check_run_name(run_name)
    writable_folder(models_dir(), "models", "FER_MODELS")
    writable_folder(results_dir(), "results", "FER_RESULTS")
    writable_folder(checkpoints_dir(), "checkpoints", "FER_CHECKPOINTS")


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
    records: dict[str, Run]  # "plain", and the TTA set's name
    probabilities: dict[str, np.ndarray]


def run_experiment(
    config: TrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    tta: str | None,
    verbose: int | str = "auto",
) -> Experiment:
    """Train ``config`` on ``dataset``'s Training split (cleaned if ``config.clean``), stop
    early on PublicTest, then evaluate on PublicTest and PrivateTest.

    Writes ``models/<run_name>.keras``, ``results/<run_name>.json`` (+ predictions) and, with
    ``tta`` (a name in :data:`~fer_utils.tta.TTA_SETS`; callers pass the profile's,
    :attr:`~fer_utils.config.Profile.tta`, unless asked for another), the test-time-augmented
    evaluation ``results/<run_name>-tta[-<tta>].json``."""
    check_outputs(run_name)
    dataset = dataset.label_fraction(config.label_fraction, seed=config.seed)
    train_set = dataset.split("Training")
    removed = None
    if config.clean:
        train_set, counts = clean(dataset, splits=("Training",))
        train_set, removed = train_set.split("Training"), counts.to_dict()
    checkpoints = checkpoints_dir() / run_name
    checkpoints.mkdir(parents=True, exist_ok=True)
    save_config(config, checkpoints / "config.json")
    # what a transfer backbone starts from decides its result: said before training builds it
    weights = backbone_weights(config) if config.model == "transfer" else None
    result = train(config, train_set, dataset.split("PublicTest"), checkpoints, verbose=verbose)
    saved = models_dir() / f"{run_name}.keras"
    save_for_inference(result.model, saved)

    details = {
        "config": dataclasses.asdict(config),
        "epochs_run": result.epochs_run,
        "train_images_per_second": round(
            len(train_set) * result.epochs_run / max(result.seconds, 1e-9), 1
        ),
        "train_rows": len(train_set),
        "cleaning_removed": removed,
        "parameters": int(result.model.count_params()),
        "placement": dataclasses.asdict(result.placement),
        "model_sha256": file_sha256(saved),
    }
    if weights is not None:
        details["backbone_weights"] = weights
    # the files it started or learnt from (training has read them): a path can be rewritten
    starts = {"init_sha256": config.init, "teacher_sha256": config.teacher}
    details.update({key: file_sha256(Path(path)) for key, path in starts.items() if path})
    model_file = os.path.relpath(saved, project_root())
    records, probabilities = {}, {}
    for tta_set in (None, tta) if tta else (None,):
        run, probs = evaluate_and_record(
            result.model, run_name, config.describe(), dataset, profile, command,
            result.seconds, details, model_file, tta_set,
        )  # fmt: skip
        records[tta_set or "plain"] = run
        suffix = run.run_name.removeprefix(run_name)
        probabilities |= {f"{split}{suffix}": p for split, p in probs.items()}
    _retire_evaluations(run_name, keep={run.run_name for run in records.values()})
    _finish(run_name, checkpoints)
    keras.backend.clear_session()
    return Experiment(run_name, saved, result, records, probabilities)


def evaluate_and_record(
    model: keras.Model,
    run_name: str,
    description: str,
    dataset: Dataset,
    profile: str,
    command: str,
    train_seconds: float,
    details: dict,
    model_file: str,
    tta: str | None = None,
) -> tuple[Run, dict[str, np.ndarray]]:
    """Evaluate ``model``, trained by ``run_name``, on PublicTest and PrivateTest, plainly (the
    record ``run_name``, kind ``trained``) or with the TTA set ``tta`` (kind ``tta``, named by
    :func:`~fer_utils.runs.tta_run_name`). Returns the record and the probabilities per split."""
    predictions = {}
    for split in EVAL_SPLITS:
        part = dataset.split(split)
        probs = predict(model, part.images, tta=tta or False, progress=bool(tta))
        predictions[split] = (part.labels, probs)
    run = write_run(
        tta_run_name(run_name, tta) if tta else run_name, "tta" if tta else "trained",
        description + (tta_label(tta) if tta else ""), command, profile, dataset.sha256,
        train_seconds, predictions, details, tta=tta, trained_by=run_name if tta else None,
        model_file=model_file,
    )  # fmt: skip
    return run, {split: probs for split, (_, probs) in predictions.items()}


def data_of_run(trained: Run, data: Dataset) -> Dataset:
    """The part of ``data`` that the trained run ``trained`` saw (its profile's subset, its
    label fraction), or a :class:`DataError` when ``data`` is not what it was trained on
    (checked by hash)."""
    seed = trained.config.get("seed", 0)
    dataset = profile_data(data, trained.profile, seed)
    dataset = dataset.label_fraction(trained.config.get("label_fraction", 1.0), seed=seed)
    if dataset.sha256 != trained.data_sha256:
        raise DataError(
            f"{trained.run_name} was trained on data {trained.data_sha256[:12]}…, this is "
            f"{dataset.sha256[:12]}…: pass the data it was trained on (--data)"
        )
    return dataset


def evaluate_saved(run_name: str, data: Dataset, tta: str, command: str) -> Run:
    """Evaluate a finished run's saved model (``models/<run>.keras``, or the default model if
    it is that run's) with the TTA set ``tta`` and write its ``tta`` record, which keeps the
    run's training time and settings. ``data`` must be the data the run was trained on
    (checked by its hash)."""
    trained, model_file = trained_run(run_name)
    dataset = data_of_run(trained, data)
    model = keras.saving.load_model(model_file, safe_mode=True)
    run, _ = evaluate_and_record(
        model, run_name, trained.model, dataset, trained.profile, command,
        trained.train_seconds, trained.details, trained.model_file, tta,
    )  # fmt: skip
    keras.backend.clear_session()
    return run


def _retire_evaluations(run_name: str, keep: set[str]) -> None:
    """Remove the TTA records (and predictions) of the model that ``run_name`` has just
    replaced, other than those in ``keep``: they describe a model file that no longer exists,
    and an ensemble or table would otherwise count them as this run's. Each is said."""
    for path in sorted(results_dir().glob(f"{run_name}-tta*.json")):
        if path.stem in keep or read_run(path.stem).trained_by != run_name:
            continue
        path.unlink()
        predictions_path(path.stem).unlink(missing_ok=True)
        logging.warning(
            "removed %s: it evaluated the model of %s that this run replaced (python -m "
            "fer_utils evaluate %s --tta SET measures the new one)",
            path.name,
            run_name,
            run_name,
        )


def _finish(run_name: str, checkpoints: Path) -> None:
    """After a run's model and records are written: its per-epoch log is kept beside the
    record (:func:`~fer_utils.runs.history_path`) and the checkpoint marked recorded."""
    state, kept = RunState(checkpoints), history_path(run_name)
    log = state.log()
    if log.empty:  # no log: none of an earlier run of that name may stand for this one's
        kept.unlink(missing_ok=True)
    else:
        kept.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(kept) as temp:
            log.to_csv(temp, index=False)
    state.finish_recording()


def load_history(run_name: str) -> pd.DataFrame:
    """The per-epoch log of a finished run: the copy kept in ``results/history/``, else (a run
    recorded before logs were kept there) ``checkpoints/<run>/log.csv``; empty if there is
    neither."""
    kept = history_path(run_name)
    return pd.read_csv(kept) if kept.is_file() else RunState(checkpoints_dir() / run_name).log()


@dataclass
class TrainedRun:
    """A finished run as later notebooks use it: record, per-split probabilities, per-epoch
    log and (loaded on first use) model."""

    run_name: str
    record: Run
    probabilities: dict[str, np.ndarray]
    history: pd.DataFrame

    @functools.cached_property
    def model(self) -> keras.Model:
        """The saved model, loaded when first asked for; a :class:`~fer_utils.errors.ModelError`
        that says how to get it if its file is not on this machine."""
        _, model_file = trained_run(self.run_name)
        return keras.saving.load_model(model_file, safe_mode=True)


def load_run(run_name: str) -> TrainedRun:
    """A finished training run: its record, predictions and per-epoch log; its model is read
    when :attr:`TrainedRun.model` is first used."""
    record = read_run(run_name)
    probabilities = {s: p for s, (_, p) in read_predictions(run_name).items() if s in EVAL_SPLITS}
    return TrainedRun(run_name, record, probabilities, load_history(run_name))


def has_run(run_name: str) -> bool:
    """Whether the run's record and model file both exist."""
    return record_path(run_name).is_file() and model_path(read_run(run_name)) is not None


def stale_reason(
    run_name: str, config: TrainConfig | PretrainConfig, dataset: Dataset, profile: str
) -> str | None:
    """Why the saved run ``run_name`` does not answer this request (None: it does, reuse it):
    no record, or one made from other data, another profile, seed or label fraction, or other
    test faces (e.g. a subset drawn with another seed)."""
    if not record_path(run_name).is_file():
        return "not trained yet"
    run = read_run(run_name)
    wanted = {"data": dataset.sha256, "profile": profile, "seed": config.seed,
              "label_fraction": getattr(config, "label_fraction", 1.0)}  # fmt: skip
    found = {"data": run.data_sha256, "profile": run.profile, "seed": run.config.get("seed"),
             "label_fraction": run.config.get("label_fraction", 1.0)}  # fmt: skip
    differ = [key for key in wanted if wanted[key] != found[key]]
    if differ:
        return "its record has another " + ", ".join(differ)
    stored = read_predictions(run_name)
    for split in EVAL_SPLITS:
        if split not in stored or not np.array_equal(stored[split][0], dataset.split(split).labels):
            return f"it was evaluated on other {split} faces"
    return None


def _unless_fresh(
    run_name: str, config: TrainConfig | PretrainConfig, dataset: Dataset, profile: str,
    reuse: bool, need_model: bool, train: Callable[[], object],
) -> None:  # fmt: skip
    """Call ``train`` unless ``reuse`` and the saved run answers the request (with its model
    file, if ``need_model``); a saved run that is trained again is said so, with the reason."""
    reason = stale_reason(run_name, config, dataset, profile) if reuse else None
    if reuse and not reason and need_model and not has_run(run_name):
        reason = "its model file is missing"
    if reuse and not reason:
        return
    if reason and reason != "not trained yet":
        logging.warning("training %s again: %s", run_name, reason)
    init = getattr(config, "init", None)  # the run that writes it was read, not trained, here
    if init and not Path(init).is_file():
        raise ModelError(
            f"{run_name} must be trained ({reason or 'reuse=False'}) and starts from {init}, "
            "which is not on this machine: train the run that writes it again first (reuse=False)"
        )
    train()


def train_or_load(
    config: TrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    reuse: bool = True,
    verbose: int | str = "auto",
    need_model: bool = True,
    tta: str | None = None,
) -> TrainedRun:
    """:func:`load_run` if ``reuse`` and the saved run answers this request (its record made
    from this data, profile, seed and faces: :func:`stale_reason`; its model file there too,
    unless not ``need_model``: for tables and curves that read only the record, predictions
    and log), e.g. trained by ``python -m fer_utils train`` in the background; else
    :func:`run_experiment` first, its ``-tta`` record with the TTA set ``tta`` (None: the
    profile's; a run on another profile's data, such as notebook 03's transfer runs, passes
    the set of the profile it serves)."""
    tta = tta or get_profile(profile).tta
    _unless_fresh(
        run_name, config, dataset, profile, reuse, need_model,
        lambda: run_experiment(config, run_name, dataset, profile, command, tta, verbose),
    )  # fmt: skip
    return load_run(run_name)


def train_or_read_record(
    config: TrainConfig | PretrainConfig,
    run_name: str,
    dataset: Dataset,
    profile: str,
    command: str,
    reuse: bool = True,
) -> Run:
    """The run's record, trained first (a :class:`PretrainConfig`: pretrained,
    :func:`run_pretraining`) unless ``reuse`` and the saved record answers this request
    (:func:`stale_reason`): for tables and curves that need a run's numbers but not its model
    file. A trained run is evaluated with the profile's TTA set too."""

    def run() -> object:
        if isinstance(config, PretrainConfig):
            return run_pretraining(config, run_name, dataset, profile, command)
        tta = get_profile(profile).tta
        return run_experiment(config, run_name, dataset, profile, command, tta)

    _unless_fresh(run_name, config, dataset, profile, reuse, False, run)
    return read_run(run_name)


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
    check_outputs(run_name)
    train_set = dataset.split("Training")
    checkpoints = checkpoints_dir() / run_name
    result = pretrain(config, train_set.images, checkpoints, verbose=verbose)
    saved = models_dir() / f"{run_name}.keras"
    save_for_inference(result.model, saved)
    parts = {split: dataset.split(split) for split in EVAL_SPLITS}
    probabilities = linear_probe(
        result.model, train_set.images, train_set.labels,
        {split: part.images for split, part in parts.items()},
    )  # fmt: skip
    write_run(
        run_name, "pretrained", f"{config.model} SimCLR + linear probe", command, profile,
        dataset.sha256, result.seconds,
        {split: (part.labels, probabilities[split]) for split, part in parts.items()},
        {
            "pretrain_config": dataclasses.asdict(config),
            "epochs_run": len(result.history.get("loss", [])),  # across resumes
            "final_loss": round(float(result.history["loss"][-1]), 4),
            "train_rows": len(train_set),
            "model_sha256": file_sha256(saved),  # what a fine-tuned run's init_sha256 names
        },
        model_file=os.path.relpath(saved, project_root()),
    )  # fmt: skip
    _finish(run_name, checkpoints)
    keras.backend.clear_session()
    return saved
