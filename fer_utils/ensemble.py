"""Ensembles of trained models, built from their saved probabilities (``results/predictions``).

Members and weights are chosen on PublicTest only. That is enforced, not merely intended: the
fitting functions take a :class:`SplitPredictions`, which holds one split, and refuse any split
but PublicTest; PrivateTest is loaded separately, only to evaluate an ensemble already fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.model_selection import StratifiedKFold

from fer_utils.config import EPS, models_dir
from fer_utils.errors import ModelError, UsageError
from fer_utils.evaluation import (
    bootstrap_ci,
    bootstrap_gain_ci,
    comparison_table,
    metrics,
    predict,
    verdict,
)
from fer_utils.files import atomic_open
from fer_utils.progress import progress_bar
from fer_utils.provenance import describe_sources
from fer_utils.runs import (
    EVAL_SPLITS,
    Run,
    all_runs,
    model_path,
    predictions_path,
    read_predictions,
    read_run,
    trainer_record,
    write_run,
)

SELECTION_SPLIT = "PublicTest"
MIN_WEIGHT = 1e-3  # fitted weights below this (in magnitude) are dropped
STACKING_L2 = 0.01  # ridge penalty of fit_stacking, chosen by cross-validation within PublicTest


@dataclass(frozen=True)
class SplitPredictions:
    """One split's labels and every member's probabilities (members × N × 7)."""

    split: str
    labels: np.ndarray
    names: tuple[str, ...]
    probabilities: np.ndarray

    def member(self, name: str) -> np.ndarray:
        return self.probabilities[self.names.index(name)]

    def names_where(self, mask: np.ndarray) -> tuple[str, ...]:
        """The members' names where the boolean ``mask`` (one per member) is true."""
        return tuple(n for n, m in zip(self.names, mask, strict=True) if m)


def load_split(run_names: Sequence[str], split: str) -> SplitPredictions:
    """Read ``split`` (and nothing else) from ``results/predictions/<run>.npz`` of each run."""
    if not run_names:
        raise UsageError("no runs to ensemble: train some first (results/predictions is empty)")
    labels, probabilities = None, []
    for name in run_names:
        stored = read_predictions(name)
        if not stored:
            path = predictions_path(name)
            raise UsageError(f"{path}: no predictions for run {name!r}; train it first")
        if split not in stored:
            raise UsageError(f"{predictions_path(name)} has no {split} predictions")
        member_labels, member_probabilities = stored[split]
        probabilities.append(member_probabilities.astype(np.float64))
        if labels is not None and not np.array_equal(labels, member_labels):
            raise ValueError(f"{name}: its {split} labels differ from the other members' (data?)")
        labels = member_labels
    return SplitPredictions(split, labels, tuple(run_names), np.stack(probabilities))


def soft_vote(probabilities: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of members' probabilities (members × N × 7) → (N × 7)."""
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, float)
    return np.tensordot(weights / weights.sum(), probabilities, axes=1)


@dataclass(frozen=True)
class Ensemble:
    """Members with their weights. ``pool="linear"``: the weighted mean of the members'
    probabilities (weights sum to 1); ``pool="log"``: the softmax of the weighted sum of their
    log-probabilities (weights of any sign and size: see :func:`fit_stacking`)."""

    names: tuple[str, ...]
    weights: np.ndarray
    pool: str = "linear"

    def combine(self, members: np.ndarray) -> np.ndarray:
        """The ensemble's probabilities (N × 7) from its members' (members × N × 7)."""
        if self.pool == "log":
            logits = np.tensordot(self.weights, np.log(np.clip(members, EPS, 1)), axes=1)
            return softmax(logits, axis=-1)
        return soft_vote(members, self.weights)

    def predict(self, data: SplitPredictions) -> np.ndarray:
        """The ensemble's probabilities on ``data`` (which must hold every member)."""
        return self.combine(np.stack([data.member(n) for n in self.names]))

    def describe(self) -> dict[str, float]:
        return {n: round(float(w), 4) for n, w in zip(self.names, self.weights, strict=True)}


def _require_selection_split(data: SplitPredictions) -> None:
    if data.split != SELECTION_SPLIT:
        raise ValueError(
            f"ensemble members and weights are chosen on {SELECTION_SPLIT} only, not on "
            f"{data.split}: PrivateTest is for the final number"
        )


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-probability of the true labels (clipped at :data:`EPS` like pooling)."""
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], EPS, 1)).mean())


def uniform(validation: SplitPredictions) -> Ensemble:
    """Plain soft voting of every member (nothing is fitted, but the split is still checked)."""
    _require_selection_split(validation)
    return Ensemble(validation.names, np.full(len(validation.names), 1 / len(validation.names)))


def fit_weights(validation: SplitPredictions) -> Ensemble:
    """Weights on the simplex minimising PublicTest log-loss (softmax-parameterised, L-BFGS);
    members weighted below :data:`MIN_WEIGHT` are left out."""
    _require_selection_split(validation)
    labels, members = validation.labels, validation.probabilities

    def loss(logits: np.ndarray) -> float:
        return _log_loss(labels, soft_vote(members, softmax(logits)))

    weights = softmax(minimize(loss, np.zeros(len(members)), method="L-BFGS-B").x)
    # softmax weights are never exactly 0: drop the negligible ones, so that the ensemble (and a
    # teacher built from it) needs only the members that matter
    keep = weights >= MIN_WEIGHT
    return Ensemble(validation.names_where(keep), weights[keep] / weights[keep].sum())


def fit_stacking(validation: SplitPredictions, l2: float = STACKING_L2) -> Ensemble:
    """Stacking (Wolpert, 1992) in log space: the ensemble's logits are a weighted sum of the
    members' log-probabilities, with weights of any sign fitted by ridge-penalised PublicTest
    log-loss (L-BFGS with the analytic gradient). A negative weight subtracts what a member
    shares with the others (e.g. a run's plain predictions from its TTA ones), and the weights'
    sum acts as a temperature; members with weights below :data:`MIN_WEIGHT` in magnitude are
    left out."""
    _require_selection_split(validation)
    labels = validation.labels
    rows = np.arange(len(labels))
    logs = np.log(np.clip(validation.probabilities, EPS, 1))

    def loss_and_gradient(weights: np.ndarray) -> tuple[float, np.ndarray]:
        log_p = log_softmax(np.tensordot(weights, logs, axes=1), axis=1)
        residual = np.exp(log_p)
        residual[rows, labels] -= 1  # d(log-loss)/d(logits)
        gradient = np.einsum("nk,mnk->m", residual, logs) / len(labels) + 2 * l2 * weights
        return -log_p[rows, labels].mean() + l2 * float(weights @ weights), gradient

    start = np.full(len(logs), 1 / len(logs))
    weights = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B").x
    keep = np.abs(weights) >= MIN_WEIGHT
    return Ensemble(validation.names_where(keep), weights[keep], pool="log")


def greedy_selection(validation: SplitPredictions, rounds: int = 25) -> tuple[Ensemble, list]:
    """Forward selection with replacement (Caruana et al., 2004): add, ``rounds`` times, the
    member whose addition gives the best PublicTest accuracy (log-loss breaks ties); weights
    are how often each was picked. Also returns the order in which members were first picked."""
    _require_selection_split(validation)
    labels, members = validation.labels, validation.probabilities
    counts = np.zeros(len(members))
    order: list[str] = []
    for _ in range(rounds):
        scores = []
        for k in range(len(members)):
            trial = soft_vote(members, counts + np.eye(len(members))[k])
            scores.append((np.mean(trial.argmax(1) == labels), -_log_loss(labels, trial)))
        pick = max(range(len(members)), key=scores.__getitem__)
        counts[pick] += 1
        if validation.names[pick] not in order:
            order.append(validation.names[pick])
    chosen = counts > 0
    return Ensemble(validation.names_where(chosen), counts[chosen] / counts.sum()), order


METHODS: dict[str, Callable[[SplitPredictions], Ensemble]] = {
    "greedy": lambda validation: greedy_selection(validation)[0],
    "weights": fit_weights,
    "stacking": fit_stacking,
    "uniform": uniform,
}


def cross_validate(
    validation: SplitPredictions,
    methods: Sequence[str] = tuple(METHODS),
    folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out accuracy of each of ``methods`` (names in :data:`METHODS`) by stratified
    ``folds``-fold cross-validation within PublicTest (fitted on the other folds, scored on
    each, averaged): how well a method's choices carry over to faces it did not fit, judged
    without touching PrivateTest. An ensemble's own PublicTest accuracy is in-sample (it was
    fitted there), so this is the score to compare ensembles by."""
    _require_selection_split(validation)
    scores: dict[str, list[float]] = {name: [] for name in methods}
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in splitter.split(validation.labels, validation.labels):
        fit, held = (
            replace(
                validation,
                labels=validation.labels[rows],
                probabilities=validation.probabilities[:, rows],
            )
            for rows in (fit_rows, held_rows)
        )
        for name in methods:
            scores[name].append(metrics(held.labels, METHODS[name](fit).predict(held))["accuracy"])
    return {name: float(np.mean(values)) for name, values in scores.items()}


def cross_validated(
    validation: SplitPredictions, methods: Sequence[str] = tuple(METHODS)
) -> tuple[Ensemble, dict[str, float]]:
    """The ensemble of the one of ``methods`` that :func:`cross_validate` scores best, refitted
    on all of PublicTest, with each method's cross-validated accuracy."""
    scores = cross_validate(validation, methods)
    return METHODS[max(scores, key=scores.__getitem__)](validation), scores


def first_picks(order: Sequence[str], size: int) -> Ensemble:
    """The uniform vote of the first ``size`` members of ``order``."""
    return Ensemble(tuple(order[:size]), np.full(size, 1 / size))


def accuracy_by_size(
    order: Sequence[str], validation: SplitPredictions, test: SplitPredictions
) -> pd.DataFrame:
    """The uniform vote of the first 1, 2, … members of ``order`` (an order chosen on
    PublicTest), on PublicTest and on ``test``: one row per split and size (``members``) with
    the accuracy and its 95 % bootstrap interval (``low``, ``high``), and the paired gain over
    the first member alone (``gain``, ``gain_low``, ``gain_high``: the same faces resampled
    together, so the members' shared answers cancel)."""
    _require_selection_split(validation)
    rows = []
    for split in (validation, test):
        alone = first_picks(order, 1).predict(split).argmax(1)
        for size in range(1, len(order) + 1):
            voted = first_picks(order, size).predict(split).argmax(1)
            low, high = bootstrap_ci(split.labels, voted)
            gain_low, gain_high = bootstrap_gain_ci(split.labels, voted, alone)
            accuracy, base = np.mean(voted == split.labels), np.mean(alone == split.labels)
            rows.append({"split": split.split, "members": size, "accuracy": accuracy,
                         "low": low, "high": high, "gain": accuracy - base,
                         "gain_low": gain_low, "gain_high": gain_high})  # fmt: skip
    return pd.DataFrame(rows)


def beyond_best_size(
    order: Sequence[str],
    by_size: pd.DataFrame,
    validation: SplitPredictions,
    test: SplitPredictions,
) -> pd.DataFrame:
    """Whether voting all of ``order`` pays beyond the size PublicTest likes best, per split:
    ``k``, the size whose vote has the highest PublicTest accuracy in ``by_size`` (the table of
    :func:`accuracy_by_size` for this order; ties to the smaller); the accuracies of that vote
    (``first_k``) and of all members (``all``); ``gain``, all − first k in points, with its
    paired 95 % bootstrap interval (``low``, ``high``) and :func:`~fer_utils.evaluation.verdict`."""
    _require_selection_split(validation)
    public = by_size[by_size.split == SELECTION_SPLIT].set_index("members").accuracy
    if sorted(public.index) != list(range(1, len(order) + 1)):
        raise ValueError(f"by_size must be accuracy_by_size's table of these {len(order)} members")
    best = int(public.idxmax())  # the first maximum: sizes ascend, so ties go to the smaller
    rows = {}
    for split in (validation, test):
        every, few = (first_picks(order, k).predict(split).argmax(1) for k in (len(order), best))
        low, high = (100 * v for v in bootstrap_gain_ci(split.labels, every, few))
        right = [np.mean(guess == split.labels) for guess in (few, every)]
        rows[split.split] = {"k": best, "first_k": right[0], "all": right[1],
                             "gain": 100 * (right[1] - right[0]), "low": low, "high": high,
                             "verdict": verdict(low, high, words=("lower", "higher"))}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def record_ensemble(
    ensemble: Ensemble,
    run_name: str,
    validation: SplitPredictions,
    command: str,
    cv_accuracy: float | None = None,
) -> Run:
    """Evaluate a fixed ensemble on PublicTest and, once, on PrivateTest (loaded here, after
    selection), and write it as ``results/<run_name>.json`` + predictions like any model,
    with its method's cross-validated PublicTest accuracy (:func:`cross_validate`) if given
    and the sha256 of each member's predictions file (what it was made from)."""
    _require_selection_split(validation)
    test = load_split(ensemble.names, "PrivateTest")
    members = {n: read_run(n) for n in ensemble.names}
    # A run and its TTA evaluations share one training: count it once.
    seconds = {r.trainer: r.train_seconds for r in members.values()}
    first = members[ensemble.names[0]]
    predictions = {
        s.split: (s.labels, ensemble.predict(s)) for s in (validation, test)
    }  # fmt: skip
    return write_run(
        run_name, "ensemble", f"ensemble of {len(ensemble.names)}", command, first.profile,
        first.data_sha256, sum(seconds.values()), predictions,
        {"members": ensemble.describe(), "pool": ensemble.pool,
         "member_predictions": describe_sources(runs=ensemble.names)["runs"]}
        | ({} if cv_accuracy is None else {"cv_accuracy": round(float(cv_accuracy), 6)}),
    )  # fmt: skip


STALE = 1e-3  # records keep weights to 4 decimals: recombining differs by less than this


def drift(run: Run) -> float:
    """How far an ensemble record's stored probabilities are from its members' current ones
    combined with its recorded weights (largest absolute difference over both splits); above
    :data:`STALE` a member was retrained or re-evaluated after the ensemble was fitted, and
    the record must be fitted again (its command)."""
    if run.kind != "ensemble":
        raise UsageError(f"{run.run_name} is not an ensemble")
    members = run.details["members"]
    pool = run.details.get("pool", "linear")  # (records from before log pooling: linear)
    ensemble = Ensemble(tuple(members), np.array(list(members.values())), pool)
    stored = read_predictions(run.run_name)
    return max(
        float(np.abs(ensemble.predict(load_split(list(members), split)) - stored[split][1]).max())
        for split in EVAL_SPLITS
    )


def member_runs(profile: str, labels: np.ndarray | None = None) -> list[str]:
    """Every saved run of ``profile`` that can be a member: a trained classifier's (plain or
    with TTA), not an ensemble's, a distilled student's (it learnt from members) or a
    self-supervised linear probe's (its model is an encoder).

    With ``labels`` (the PublicTest labels of the data at hand), runs evaluated on other faces
    (another subset, e.g. a quick run with another seed, or other data) are left out, and
    counted in a warning: their predictions cannot be pooled with these."""
    names = sorted(
        run.run_name
        for run in all_runs()
        if run.profile == profile and run.kind in ("trained", "tta") and not run.distilled
    )
    if labels is None:
        return names
    stored = {n: read_predictions(n) for n in names}
    same = [
        n
        for n in names
        if SELECTION_SPLIT in stored[n] and np.array_equal(stored[n][SELECTION_SPLIT][0], labels)
    ]
    if len(same) < len(names):
        other = sorted(set(names) - set(same))
        logging.warning(
            "%d %s runs were evaluated on other faces (another subset or data) and are left "
            "out: %s",
            len(other),
            profile,
            ", ".join(other),
        )
    return same


def with_models(names: Sequence[str]) -> list[str]:
    """Those of ``names`` whose model files exist (the members that can teach a student): often
    none in a fresh clone, which has the members' predictions but not their models (only the
    default model is committed)."""
    return [n for n in names if model_path(read_run(n))]


def load_member_models(names: Sequence[str]) -> dict:
    """The saved models of ensemble members, by the run that trained them, without any
    calibration temperature added since (the records pooled the networks' own probabilities);
    all missing ones are named in one :class:`ModelError`, with the commands that retrain
    them, before anything loads."""
    import keras  # here, not above: ensembles of saved predictions need no TensorFlow

    runs = [read_run(n) for n in names]
    missing: dict[str, Run] = {}  # trainer → the first member that needs its model
    for run in runs:
        if model_path(run) is None:
            missing.setdefault(run.trainer, run)
    if missing:
        files = [f"{r.run_name} ({models_dir() / f'{t}.keras'})" for t, r in missing.items()]
        commands = "; ".join(f"`{trainer_record(r).command}`" for r in missing.values())
        raise ModelError(
            f"{len(missing)} of the members' models are missing: {', '.join(files)}. Only the "
            f"default model is committed; retrain them with {commands}"
        )
    from fer_utils.calibration import uncalibrated  # (it imports this module)

    models = {}
    for run in runs:  # as recorded: a calibration added to a model file since is left out
        if run.trainer not in models:
            model = keras.saving.load_model(model_path(run), safe_mode=True)
            models[run.trainer] = uncalibrated(model)[0]
    return models


def teacher_probabilities(
    ensemble: Ensemble, models: dict, faces: np.ndarray, progress: bool = False
) -> np.ndarray:
    """The ensemble's probabilities for new ``faces`` (e.g. the Training split, as soft targets
    for a distilled student), from its members' models; members that are TTA records predict
    with their TTA set (``progress``: a bar over members)."""
    runs = [read_run(n) for n in ensemble.names]
    members = [
        predict(models[run.trainer], faces, tta=run.tta or False)
        for run in progress_bar(runs, progress, desc="teacher members", unit="member")
    ]
    return ensemble.combine(np.stack(members)).astype(np.float32)


def write_teacher(ensemble: Ensemble, models: dict, train, path: Path) -> Path:
    """Save the ensemble's probabilities on ``train`` (a Dataset) with each row's source index:
    the file that ``TrainConfig(soft_targets="teacher", teacher=path)`` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    probabilities = teacher_probabilities(ensemble, models, train.images, progress=True)
    with atomic_open(path, "wb") as file:  # a file object: written to ``path`` exactly
        np.savez_compressed(file, source_index=train.source_index, probabilities=probabilities)
    return path


def speed_comparison(ensemble: Ensemble, models: dict, student, faces: np.ndarray) -> pd.DataFrame:
    """Faces per second of the ensemble (every member, with its TTA) and of one student model."""
    runs = {
        "ensemble": lambda: teacher_probabilities(ensemble, models, faces),
        "student": lambda: predict(student, faces),
    }
    rows = []
    for name, run in runs.items():
        run()  # warm up
        start = time.perf_counter()
        run()
        rows.append({"model": name, "faces_per_second": len(faces) / (time.perf_counter() - start)})
    return pd.DataFrame(rows).set_index("model").round(0)


def agreement(data: SplitPredictions) -> pd.DataFrame:
    """Share of faces on which each pair of members predicts the same emotion."""
    predicted = data.probabilities.argmax(axis=2)
    shares = (predicted[:, None, :] == predicted[None, :, :]).mean(axis=2)
    return pd.DataFrame(shares, index=list(data.names), columns=list(data.names))


def member_table(test: SplitPredictions, ensembles: dict[str, Ensemble]) -> pd.DataFrame:
    """Accuracy (with its 95 % bootstrap interval), balanced accuracy and macro-F1 on ``test``
    of every member and every (already fixed) ensemble."""
    candidates = {n: test.member(n) for n in test.names}
    candidates |= {name: e.predict(test) for name, e in ensembles.items()}
    return comparison_table(test.labels, candidates)
