"""The command line turns bad arguments into one clear message, never a traceback."""

from __future__ import annotations

import numpy as np
import pytest

from fer_utils.cli import main
from fer_utils.config import results_dir

from conftest import SAMPLE_CSV


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
