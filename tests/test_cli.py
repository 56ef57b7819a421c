"""The command line turns bad arguments into one clear message, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

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
        (["predict", "a.jpg", "--margin", "-5"], "at least 0"),
        (["train", "--model", "fast_cnn", "--threads", "0"], "at least 1"),
        (["sample", "--eval-per-class", "0"], "at least 1"),
        (["sample", "--train-per-class", "-3"], "at least 1"),
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


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("epochs=abc", "setting epochs='abc': must be a whole number"),
        ("epochs=2.5", "setting epochs=2.5: must be a whole number"),
        ("epochs", "setting epochs='': must be a whole number"),
        ("learning_rate=fast", "setting learning_rate='fast': must be a number"),
        ("class_weighting=maybe", "setting class_weighting='maybe': must be true or false"),
        ("model_kwargs=x", "setting model_kwargs='x': must be a JSON object"),
    ],
)
def test_a_setting_of_the_wrong_type_is_one_line_before_any_data(capsys, setting, message):
    missing = "/nonexistent/fer2013.csv"  # would be a DataError if the data were read first
    assert main(["train", "--model", "fast_cnn", "--set", setting, "--data", missing]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"


NO_DATA = ["--data", "/nonexistent/fer2013.csv"]  # a DataError if the data were read first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "fast_cnn", "--no-tta", "--tta", "affine", *NO_DATA],
         "--no-tta and --tta"),
        (["train", "--model", "fast_cnn", "--focal-gamma", "1", *NO_DATA], "add --loss focal"),
        (["predict", "a.jpg", "--detector", "none", "--margin", "0.2"], "--detector none takes"),
    ],
)  # fmt: skip
def test_options_that_contradict_each_other_are_one_line_before_any_work(
    capsys, argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_whole_number_is_a_float_setting_and_a_config_file_is_typed_too(tmp_path, capsys):
    assert train_config(["--model", "fast_cnn", "--set", "learning_rate=1"]).learning_rate == 1.0
    (tmp_path / "c.json").write_text('{"epochs": "3"}')
    argv = ["train", "--model", "fast_cnn", "--config", str(tmp_path / "c.json")]
    assert main([*argv, "--data", "/nonexistent/fer2013.csv"]) == 2
    assert "setting epochs='3': must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "not a model", "another architecture"])
def test_a_bad_init_model_is_one_line_before_any_data(tmp_path, capsys, case):
    init = {"missing": tmp_path / "none.keras", "not a model": tmp_path / "notes.keras",
            "another architecture": ROOT / "models" / "default.keras"}[case]  # fmt: skip
    (tmp_path / "notes.keras").write_text("not a zip")
    argv = ["train", "--model", "fast_cnn", "--init", str(init)]
    assert main([*argv, "--data", "/nonexistent/fer2013.csv"]) == 2
    err = capsys.readouterr().err
    expected = {"missing": "no such file", "not a model": "is not a .keras model file",
                "another architecture": "its weights do not fit a 'fast_cnn' model"}  # fmt: skip
    assert err.startswith(f"error: --init {init}") and expected[case] in err
    assert err.count("\n") == 1


def test_train_sets_its_threads_before_an_init_model_starts_tensorflow(monkeypatch) -> None:
    # TensorFlow fixes its thread pools at its first op: --threads set after check_init has
    # loaded the --init model would only warn, and two runs side by side would share the cores
    import fer_utils.devices
    import fer_utils.models

    calls: list[str] = []
    monkeypatch.setattr(fer_utils.devices, "set_threads", lambda n: calls.append(f"threads {n}"))
    monkeypatch.setattr(fer_utils.models, "check_init", lambda *a, **k: calls.append("init"))
    argv = ["train", "--model", "fast_cnn", "--init", "m.keras", "--threads", "1"]
    assert main([*argv, "--data", "/nonexistent/fer2013.csv"]) == 2  # stops at the data
    assert calls == ["threads 1", "init"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "--out", "{file}"], "is a file: give a folder for the sample"),
        (["download", "--dest", "{file}"], "is a file: give a folder to download into"),
        (["export", "--out", "{folder}"], "a onnx model is a file whose name ends in .onnx"),
        (["export", "--format", "litert", "--out", "{folder}/m.onnx"], "ends in .tflite"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    tmp_path, capsys, argv, message
):
    (tmp_path / "file").write_text("a file")
    (tmp_path / "folder").mkdir()
    argv = [a.format(file=tmp_path / "file", folder=tmp_path / "folder") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert not any((tmp_path / "folder").iterdir())


def test_export_takes_its_format_from_the_out_suffix() -> None:
    from fer_utils.inference.export import format_of

    assert [format_of(o) for o in ("m.tflite", "m.onnx", "m.bin", None)] == [
        "litert", "onnx", "onnx", "onnx"
    ]  # fmt: skip


def test_a_sample_replaces_the_files_whole_and_drops_votes_of_another_sample(tmp_path, caplog):
    from fer_utils.data import load_fer2013
    from fer_utils.data.sample import write_sample

    with_votes = load_fer2013(SAMPLE_CSV)
    csv_path, votes = write_sample(with_votes, tmp_path, 2, 1)
    assert votes is not None and votes.is_file()
    again = load_fer2013(csv_path)
    assert len(again) == 2 * 7 + 2 * 7 and again.ferplus is not None
    csv_path, votes = write_sample(load_fer2013(SAMPLE_CSV, ferplus=False), tmp_path, 3, 1)
    assert votes is None and not (tmp_path / "fer2013new.csv").exists()
    assert "held the votes of an earlier sample" in caplog.text
    assert len(load_fer2013(csv_path)) == 3 * 7 + 2 * 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013_sample.csv.gz"]  # no temp


@pytest.mark.parametrize("script", sorted((ROOT / "benchmarks").glob("bench_*.py")))
def test_every_benchmark_runs_through_the_one_line_error_handler(script) -> None:
    """Each benchmark hands its ``main`` to ``errors.run_script``, so bad input is one line."""
    assert 'if __name__ == "__main__":\n    run_script(main)' in script.read_text()


def test_a_benchmark_without_its_data_says_so_in_one_line(tmp_path) -> None:
    missing = tmp_path / "fer2013.csv"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_inference.py"), "--sections",
         "runtimes", "--data", str(missing)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert lines[-1].startswith("error: ") and str(missing) in lines[-1]
