"""Temperature scaling: the fit, the expected calibration error, the temperature inside a saved
model (safe-mode load, labels unchanged, ONNX), and the calibrate command."""

from __future__ import annotations

import json
import shutil
import sys

import keras
import numpy as np
import pytest
from scipy.special import softmax

from fer_utils.calibration import (
    Temperature,
    apply_temperature,
    calibrate_model,
    ece,
    fit_temperature,
    reliability,
    uncalibrated,
)
from fer_utils.cli import main
from fer_utils.config import figures_dir, results_dir
from fer_utils.data import load_fer2013
from fer_utils.evaluation import predict
from fer_utils.files import file_sha256
from fer_utils.inference import load_classifier
from fer_utils.inference.export import export_model, max_difference
from fer_utils.models import build_model, save_for_inference
from fer_utils.runs import write_run

from conftest import ROOT, SAMPLE_CSV


def overconfident(n: int = 6000, accuracy: float = 0.6, confidence: float = 0.95, seed: int = 0):
    """Probabilities right on a fraction ``accuracy`` of faces, always ``confidence`` sure."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    right = rng.random(n) < accuracy
    predicted = np.where(right, labels, (labels + rng.integers(1, 7, n)) % 7)
    probabilities = np.full((n, 7), (1 - confidence) / 6)
    probabilities[np.arange(n), predicted] = confidence
    return probabilities, labels


def test_an_overconfident_model_gets_a_temperature_above_one_and_a_far_smaller_ece():
    probabilities, labels = overconfident()
    temperature = fit_temperature(probabilities, labels)
    calibrated = apply_temperature(probabilities, temperature)
    before, after = ece(probabilities, labels), ece(calibrated, labels)
    assert temperature > 1
    assert before == pytest.approx(0.95 - 0.6, abs=0.02) and after < 0.1 * before
    assert calibrated.max(axis=1) == pytest.approx(np.mean(calibrated.argmax(1) == labels), 0.02)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), probabilities.argmax(axis=1))


def test_calibrated_probabilities_keep_a_temperature_near_one():
    """Labels drawn from the probabilities themselves: already calibrated."""
    rng = np.random.default_rng(1)
    probabilities = softmax(rng.normal(0, 2, (20000, 7)), axis=1)
    labels = (probabilities.cumsum(axis=1) < rng.random((20000, 1))).sum(axis=1)
    assert fit_temperature(probabilities, labels) == pytest.approx(1, abs=0.05)
    assert ece(probabilities, labels) < 0.02


def test_ece_and_the_reliability_bins_by_hand():
    """Two faces at confidence 0.9, one right; two at 0.6, both right: ECE = (2·0.4 + 2·0.4)/4."""
    probabilities = np.full((4, 7), 0.1 / 6)
    probabilities[[0, 1], [0, 0]] = 0.9
    probabilities[[2, 3]] = (1 - 0.6) / 6
    probabilities[[2, 3], [1, 1]] = 0.6
    labels = np.array([0, 2, 1, 1])
    curve = reliability(probabilities, labels, bins=15)
    assert ece(probabilities, labels) == pytest.approx(0.4)
    assert curve.count.sum() == 4 and curve.count[13] == 2 and curve.count[8] == 2
    assert curve.accuracy[13] == 0.5 and curve.confidence[8] == pytest.approx(0.6)


def test_the_calibrated_model_round_trips_keeps_its_labels_and_exports(tmp_path):
    rng = np.random.default_rng(0)
    faces = rng.uniform(0, 255, (96, 48, 48, 1)).astype(np.float32)
    model = build_model("five_layer", dense=16)
    save_for_inference(model, tmp_path / "tiny.keras")
    raw = predict(model, faces)
    labels = np.where(rng.random(len(faces)) < 0.5, raw.argmax(axis=1), rng.integers(0, 7, 96))
    out = tmp_path / "tiny-calibrated.keras"
    temperature, report = calibrate_model(
        tmp_path / "tiny.keras", out, faces[:64], labels[:64], {"held": (faces[64:], labels[64:])}
    )
    saved = keras.saving.load_model(out, safe_mode=True)
    assert isinstance(saved.layers[-1], Temperature)
    assert saved.layers[-1].temperature == temperature
    calibrated = predict(saved, faces)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), raw.argmax(axis=1))
    np.testing.assert_allclose(calibrated, apply_temperature(raw, temperature), atol=1e-5)
    assert report["splits"]["held"]["argmax_changed"] == 0
    assert report["max_difference_from_formula"] < 1e-5
    onnx = export_model(out, tmp_path / "tiny-calibrated.onnx")
    assert max_difference(load_classifier(out), onnx, faces) < 1e-4
    # calibrating the calibrated model refits its temperature rather than adding another
    again, report = calibrate_model(out, out, faces[:64], labels[:64])
    assert report["input_temperature"] == temperature
    assert again == pytest.approx(temperature, rel=1e-3)
    reloaded = keras.saving.load_model(out, safe_mode=True)
    assert sum(isinstance(layer, Temperature) for layer in reloaded.layers) == 1


def test_the_calibrate_command_fits_on_publictest_and_records_both_splits(
    tmp_path, capsys, monkeypatch
):
    model = tmp_path / "m.keras"
    shutil.copyfile(ROOT / "models" / "default.keras", model)
    original = file_sha256(model)
    argv = ["calibrate", "--model", str(model), "--data", str(SAMPLE_CSV)]
    monkeypatch.setattr(sys, "argv", ["fer_utils/__main__.py", *argv])  # the recorded command
    assert main(argv) == 0
    assert "PrivateTest" in capsys.readouterr().out
    record = json.loads((results_dir() / "calibration" / "m.json").read_text())
    out = tmp_path / "m-calibrated.keras"
    assert record["model"]["sha256"] == original == file_sha256(model)  # left as it was
    assert record["calibrated_model"]["sha256"] == file_sha256(out)
    assert record["bins"] == 15 and record["fitted_on"] == "PublicTest"
    assert record["command"].startswith(f"python -m fer_utils calibrate --model {model} --data")
    assert (figures_dir() / "calibration_m.png").is_file()
    sample = load_fer2013(SAMPLE_CSV)
    for split, values in record["splits"].items():
        assert values["n"] == len(sample.split(split)) and values["argmax_changed"] == 0
        assert {"ece_before", "ece_after", "nll_before", "nll_after"} <= set(values)
    # T is PublicTest's alone: refitting on the network's own PublicTest probabilities (without
    # the temperature that the committed default already has) gives it again
    public = sample.split("PublicTest")
    network, _ = uncalibrated(keras.saving.load_model(model, safe_mode=True))
    probabilities = predict(network, public.images)
    assert record["temperature"] == pytest.approx(fit_temperature(probabilities, public.labels))
    # --out the model's own path replaces it
    argv = ["calibrate", "--model", str(model), "--out", str(model), "--data", str(SAMPLE_CSV)]
    assert main(argv) == 0
    record = json.loads((results_dir() / "calibration" / "m.json").read_text())
    assert record["model"]["sha256"] == original != file_sha256(model)
    assert record["calibrated_model"]["sha256"] == file_sha256(model)


def test_calibrate_of_a_missing_model_is_one_line(capsys):
    assert main(["calibrate", "--model", "nowhere.keras", "--data", str(SAMPLE_CSV)]) == 2
    err = capsys.readouterr().err
    assert "model file not found: nowhere.keras" in err and "Traceback" not in err


@pytest.mark.parametrize("out", ["m.h5", "folder"])
def test_calibrate_refuses_an_out_that_is_not_a_keras_file_before_fitting(tmp_path, capsys, out):
    (tmp_path / "folder").mkdir()
    model = tmp_path / "m.keras"
    shutil.copyfile(ROOT / "models" / "default.keras", model)
    argv = ["calibrate", "--model", str(model), "--out", str(tmp_path / out)]
    assert main([*argv, "--data", str(SAMPLE_CSV)]) == 2
    err = capsys.readouterr().err
    assert "the calibrated model is a .keras file" in err and err.count("\n") == 1
    assert not (results_dir() / "calibration" / "m.json").exists()


def test_calibrate_refuses_data_other_than_the_runs_own(tmp_path, capsys):
    """A run's model calibrated on other faces would overwrite its calibration record with a
    fit on data it was never scored on: refused, like evaluate."""
    labels = np.arange(70) % 7
    splits = {s: (labels, np.eye(7)[labels]) for s in ("PublicTest", "PrivateTest")}
    write_run("mine", "trained", "toy", "train mine", "cpu", "f" * 64, 1.0, splits)
    model = tmp_path / "mine.keras"
    shutil.copyfile(ROOT / "models" / "default.keras", model)
    assert main(["calibrate", "--model", str(model), "--data", str(SAMPLE_CSV)]) == 2
    err = capsys.readouterr().err
    assert "mine was trained on data ffffffffffff…" in err and err.count("\n") == 1
    assert not (results_dir() / "calibration" / "mine.json").exists()
