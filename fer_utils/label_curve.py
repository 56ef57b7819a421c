"""The label-efficiency curve of notebook 03: the same network fine-tuned from a SimCLR encoder
or from random weights on a stratified fraction of the Training labels, each pair with the
same budget, compared on PrivateTest with paired bootstrap intervals, and checked against the
aims set for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data import Dataset
from fer_utils.evaluation import bootstrap_ci, bootstrap_gain_ci, verdict
from fer_utils.experiment import train_or_read_record
from fer_utils.runs import Run, read_predictions
from fer_utils.training import TrainConfig

INITS = ("simclr", "random")


def label_curve_config(
    model: str,
    model_kwargs: dict,
    fraction: float,
    epochs: int,
    seed: int,
    init: str | Path | None = None,
) -> TrainConfig:
    """One point of the curve, the same recipe from random weights and from a pretrained
    ``init``: label smoothing 0.1 and, below all the labels, batches of 64 (more optimizer
    steps on few faces) and precise BatchNorm."""
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


@dataclass(frozen=True)
class LabelCurve:
    """Where the curve's runs come from: the SimCLR run whose encoder starts the ``simclr``
    points, the network, the epochs per label fraction, and the seed of the main curve. With
    all labels from random weights the recipe is the project's own ``fast_cnn-ls-<profile>``
    run, so that point is that run rather than a copy of it."""

    ssl_model: str
    ssl_kwargs: dict
    ssl_path: Path
    schedule: dict[float, int]
    profile: str
    seed: int

    def run_name(self, fraction: float, init: str, seed: int | None = None) -> str:
        """The run of one point (``labels-<fraction>-<init>-<profile>[-s<seed>]``)."""
        seed = self.seed if seed is None else seed
        if (fraction, init, seed) == (1.0, "random", self.seed) and self.ssl_model == "fast_cnn":
            return f"fast_cnn-ls-{self.profile}"
        return f"labels-{fraction}-{init}-{self.profile}" + (
            f"-s{seed}" if seed != self.seed else ""
        )

    def point(
        self, fraction: float, init: str, dataset: Dataset, command: str, reuse: bool = True,
        seed: int | None = None,
    ) -> tuple[Run, np.ndarray]:  # fmt: skip
        """Train (or read) one point: its record and its PrivateTest predicted labels."""
        seed = self.seed if seed is None else seed
        run = self.run_name(fraction, init, seed)
        start = self.ssl_path if init == "simclr" else None
        config = label_curve_config(
            self.ssl_model, self.ssl_kwargs, fraction, self.schedule[fraction], seed, start
        )
        record = train_or_read_record(config, run, dataset, self.profile, command, reuse)
        return record, read_predictions(run)["PrivateTest"][1].argmax(axis=1)

    def measure(
        self, dataset: Dataset, command: str, reuse: bool = True, seed: int | None = None,
        fractions: list[float] | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """One row per label fraction: PrivateTest accuracy of both starts with their 95 %
        bootstrap intervals, the gain of SimCLR over random with its paired interval, the
        Training rows used and the two runs' names (``<init>_run``)."""
        labels = dataset.split("PrivateTest").labels
        rows = []
        for fraction in fractions or list(self.schedule):
            row: dict = {"labels": fraction}
            predicted = {}
            for init in INITS:
                record, predicted[init] = self.point(fraction, init, dataset, command, reuse, seed)
                correct = (predicted[init] == labels).astype(float)
                row[init] = correct.mean()
                row[f"{init}_low"], row[f"{init}_high"] = bootstrap_ci(labels, predicted[init])
                row["train_rows"] = record.details["train_rows"]
                row[f"{init}_run"] = record.run_name
            row["gain"] = row["simclr"] - row["random"]
            row["gain_low"], row["gain_high"] = bootstrap_gain_ci(
                labels, predicted["simclr"], predicted["random"]
            )
            rows.append(row)
        return pd.DataFrame(rows).set_index("labels")

    def learning_rate_check(self, fraction: float, rate: float) -> pd.DataFrame:
        """Per start, PublicTest accuracy at ``fraction`` of the labels with the recipe's
        learning rate and with ``rate`` (the run ``labels-<fraction>-<init>-lr<rate>-<profile>``,
        where it was tried), the lower rate's paired gain with its 95 % bootstrap interval and
        whether that is beyond noise; no row for a start whose runs are not recorded."""
        rows = {}
        for init in INITS:
            tried = f"labels-{fraction}-{init}-lr{rate}-{self.profile}"
            splits = [
                read_predictions(run).get("PublicTest")
                for run in (self.run_name(fraction, init), tried)
            ]
            if None in splits or not np.array_equal(splits[0][0], splits[1][0]):
                continue
            labels = splits[0][0]
            recipe, other = (probabilities.argmax(1) for _, probabilities in splits)
            low, high = bootstrap_gain_ci(labels, other, recipe)
            scores = np.mean(recipe == labels), np.mean(other == labels)
            rows[init] = {
                "recipe": scores[0], f"lr {rate:g}": scores[1], "gain": scores[1] - scores[0],
                "gain_low": low, "gain_high": high,
                "verdict": verdict(low, high, words=("lower", "higher")),
            }  # fmt: skip
        return pd.DataFrame.from_dict(rows, orient="index")


@dataclass(frozen=True)
class Aim:
    """An aim set for the curve before it was measured, and how to check it on one row."""

    text: str
    fraction: float
    met: Callable[[pd.Series], bool]


AIMS = (
    Aim("10 % of the labels: SimCLR at least 5 points above random", 0.1,
        lambda r: r.gain >= 0.05),
    Aim("all labels: SimCLR at least 66 % and no worse than random", 1.0,
        lambda r: r.simclr >= 0.66 and r.gain >= 0),
)  # fmt: skip


def check_aims(curve: pd.DataFrame) -> pd.DataFrame:
    """Each aim whose fraction was measured: the measured gain with its paired interval,
    whether the aim was met, said plainly, and whether the gain is within noise (its
    interval holds 0)."""
    rows = []
    for aim in AIMS:
        if aim.fraction not in curve.index:
            continue
        r = curve.loc[aim.fraction]
        rows.append({
            "aim": aim.text,
            "SimCLR": f"{r.simclr:.2%}",
            "random": f"{r.random:.2%}",
            "gain (points, 95 % paired CI)": (
                f"{100 * r.gain:+.2f} [{100 * r.gain_low:+.2f}, {100 * r.gain_high:+.2f}]"
            ),
            "result": "met" if aim.met(r) else "NOT met",
            "difference": verdict(r.gain_low, r.gain_high, words=("beyond noise",) * 2),
        })  # fmt: skip
    return pd.DataFrame(rows)
