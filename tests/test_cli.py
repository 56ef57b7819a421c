"""The command line turns bad arguments into one clear message, never a traceback."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fer_utils.cli import build_parser, main
from fer_utils.config import PROFILES, results_dir
from fer_utils.settings import TrainConfig, config_from_args

from conftest import ROOT, SAMPLE_CSV


def test_an_unknown_model_or_option_fails_before_any_data_is_loaded(capsys) -> None:
    missing = "/nonexistent/fer2013.csv"  # would be a DataError if the data were read first
    assert main(["train", "--model", "fast_cnnn", "--data", missing]) == 2
    assert "unknown model 'fast_cnnn'; choose one of" in capsys.readouterr().err
    assert (
        main(["train", "--model", "vgg", "--model-kwargs", '{"widht": 2}', "--data", missing]) == 2
    )
    assert "takes no 'widht'; its options are width" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "vgg", "--model-kwargs", "{width: 2}"], "not JSON"),
        (["train", "--model", "vgg", "--model-kwargs", "[2]"], "a JSON object is needed"),
        (["predict", "a.jpg", "--every", "0"], "at least 1"),
        (["predict", "a.jpg", "--step", "1"], "above 1"),
    ],
)
def test_malformed_arguments_are_usage_errors(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_an_ensemble_of_a_mistyped_run_says_which_run(capsys) -> None:
    (results_dir() / "predictions").mkdir(parents=True, exist_ok=True)
    assert main(["ensemble", "no-such-run", "--data", str(SAMPLE_CSV)]) == 2
    assert "no predictions for run 'no-such-run'; train it first" in capsys.readouterr().err


def test_a_missing_or_foreign_teacher_file_is_explained(tmp_path, capsys) -> None:
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, something=np.zeros(3))
    for teacher, message in ((tmp_path / "none.npz", "not found"), (foreign, "not a teacher")):
        argv = [
            "train",
            "--model",
            "fast_cnn",
            "--teacher",
            str(teacher),
            "--data",
            str(SAMPLE_CSV),
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "--teacher-out" in err


def train_config(argv: list[str]) -> TrainConfig:
    """The TrainConfig ``train ARGV`` would run with (the quick profile's budgets)."""
    args = build_parser().parse_args(["train", *argv])
    quick = PROFILES["quick"]
    return config_from_args(
        TrainConfig, args, {"epochs": quick.epochs, "batch_size": quick.batch_size}
    )


def test_every_setting_has_its_option_and_the_recorded_flags_still_work() -> None:
    parser_options = {action.dest for action in build_parser()._subparsers._group_actions[0]
                      .choices["train"]._actions}  # fmt: skip
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= parser_options
    flags = ["--class-weights", "--ferplus-soft", "--jit", "off", "--precise-bn"]
    config = train_config(["--model", "fast_cnn", "--lr", "0.01", "--time-budget", "5", *flags])
    assert (config.learning_rate, config.time_budget_minutes) == (0.01, 5.0)
    assert config.class_weighting and config.precise_bn and config.jit_compile is False
    assert config.soft_targets == "ferplus"
    assert train_config(["--model", "x", "--teacher", "t.npz"]).soft_targets == "teacher"
    assert train_config(["--model", "x"]).epochs == PROFILES["quick"].epochs


def test_a_config_file_is_layered_under_set_and_the_options_given(tmp_path) -> None:
    recipe = ROOT / "recipes" / "vgg-khaireddin.json"
    config = train_config(["--config", str(recipe)])
    assert (config.model, config.optimizer, config.schedule) == ("vgg", "sgd", "plateau")
    assert config.model_kwargs == {"crop": 40} and config.plateau_factor == 0.75
    config = train_config(["--config", str(recipe), "--set", "plateau_factor=0.5",
                           "--set", "augment=basic", "--lr", "0.02"])  # fmt: skip
    assert (config.plateau_factor, config.augment, config.learning_rate) == (0.5, "basic", 0.02)
    record = tmp_path / "run.json"  # a results record: its config is re-run
    record.write_text(json.dumps({"run_name": "r", "config": dataclasses.asdict(config)}))
    assert train_config(["--config", str(record)]) == config


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "learning_rat=0.1"], "no setting 'learning_rat'; the settings are model,"),
        (["--model", "vgg", "--set", "optimizer=adam"], "optimizer='adam': must be one of adamw"),
        (["--config", "/nonexistent.json"], "cannot read it as JSON"),
        ([], "model=None: must be an architecture name"),
    ],
)
def test_bad_settings_from_files_and_set_are_one_line(argv, message, capsys) -> None:
    assert main(["train", "--data", "/nonexistent/fer2013.csv", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
