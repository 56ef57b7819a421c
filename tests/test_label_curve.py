"""Notebook 03's label-efficiency recipe (fer_utils.label_curve): run names, the aims said
plainly, and the committed curve read back, not retrained."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fer_utils import experiment
from fer_utils.config import get_profile, project_root
from fer_utils.experiment import profile_data
from fer_utils.label_curve import LabelCurve, check_aims

CURVE = LabelCurve("fast_cnn", {}, Path("simclr.keras"), {0.1: 40, 1.0: 48}, "cpu", 13)


def test_run_names() -> None:
    assert CURVE.run_name(1.0, "random") == "fast_cnn-ls-cpu"  # the project's own recipe
    assert CURVE.run_name(1.0, "simclr") == "labels-1.0-simclr-cpu"
    assert CURVE.run_name(0.1, "random", seed=14) == "labels-0.1-random-cpu-s14"
    assert LabelCurve("vgg", {}, Path("x"), {1.0: 1}, "cpu", 13).run_name(1.0, "random") == (
        "labels-1.0-random-cpu"
    )


def _curve(gain: float, low: float, high: float, simclr: float = 0.66) -> pd.DataFrame:
    return pd.DataFrame(
        {"simclr": simclr, "random": simclr - gain, "gain": gain, "gain_low": low,
         "gain_high": high},
        index=pd.Index([0.1, 1.0], name="labels"),
    )  # fmt: skip


def test_aims_say_when_they_are_missed_and_when_it_is_noise() -> None:
    missed = check_aims(_curve(0.0248, 0.0111, 0.0387)).set_index("aim")["result"]
    assert missed.iloc[0] == "NOT met"  # +2.5 points is not the +5 aimed at
    assert missed.iloc[1] == "met"  # 66 % and ahead of random
    worse = check_aims(_curve(-0.0005, -0.01, 0.009)).iloc[1]
    assert (worse["result"], worse["difference"]) == ("NOT met", "within noise")
    assert check_aims(_curve(0.06, 0.05, 0.07)).iloc[0]["result"] == "met"


@pytest.mark.real_data
def test_committed_curve_is_read_not_retrained(real_csv, monkeypatch) -> None:
    """On the real data the committed cpu runs answer every point: nothing trains, and the
    gains and intervals are computed from their predictions."""
    monkeypatch.setenv("FER_RESULTS", str(project_root() / "results"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"would train {args[1]}")

    monkeypatch.setattr(experiment, "run_experiment", refuse)
    dataset = profile_data(real_csv, "cpu", 13)
    schedule = dict(get_profile("cpu").label_curve)
    curve = LabelCurve("fast_cnn", {}, Path("unused.keras"), schedule, "cpu", 13)
    measured = curve.measure(dataset, "test", fractions=[0.1, 1.0])
    assert (measured.gain - (measured.simclr - measured.random)).abs().max() < 1e-12
    assert (measured.gain_low <= measured.gain).all() and (
        measured.gain <= measured.gain_high
    ).all()
    assert (measured.simclr_low <= measured.simclr).all()
    assert len(check_aims(measured)) == 2


def test_the_learning_rate_check_pairs_the_runs_and_says_when_it_is_noise() -> None:
    import numpy as np

    from fer_utils.runs import write_run

    labels = np.arange(700) % 7

    def right(start: int, stop: int) -> np.ndarray:
        """Probabilities right on faces start … stop − 1 only."""
        hit = (np.arange(700) >= start) & (np.arange(700) < stop)
        return np.eye(7)[np.where(hit, labels, (labels + 1) % 7)]

    # random: 2e-3 right on 420 faces, 5e-4 on 280 of them (beyond noise); simclr: 400 and
    # 398, disagreeing on 18 faces both ways (noise)
    for run, (start, stop) in (
        ("labels-0.1-random-cpu", (0, 420)), ("labels-0.1-random-lr0.0005-cpu", (0, 280)),
        ("labels-0.1-simclr-cpu", (0, 400)), ("labels-0.1-simclr-lr0.0005-cpu", (10, 408)),
    ):  # fmt: skip
        probabilities = right(start, stop)
        splits = {"PublicTest": (labels, probabilities), "PrivateTest": (labels, probabilities)}
        write_run(run, "trained", "fast_cnn", "cmd", "cpu", "sha", 1.0, splits)
    curve = LabelCurve("fast_cnn", {}, Path("simclr.keras"), {0.1: 30, 0.05: 40}, "cpu", 0)
    check = curve.learning_rate_check(0.1, 0.0005)
    assert check.loc["random", "verdict"] == "lower"
    assert check.loc["random", "gain"] == pytest.approx(-0.2)
    assert check.loc["simclr", "verdict"] == "within noise"
    assert check.loc["simclr", "gain_low"] < 0 < check.loc["simclr", "gain_high"]
    assert curve.learning_rate_check(0.05, 0.0005).empty  # never tried there
