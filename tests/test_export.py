"""An ensemble record built into one model: its members, their test-time views and its pooling
inside the graph, saved, loaded in safe mode, checked against the record, exported to ONNX."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from test_ensemble import save_member

from fer_utils import ensemble as ens
from fer_utils.calibration import with_temperature
from fer_utils.cli import main
from fer_utils.config import models_dir
from fer_utils.data import load_fer2013
from fer_utils.errors import ModelError
from fer_utils.evaluation import predict
from fer_utils.inference import load_classifier
from fer_utils.inference.export import (
    FaceView,
    check_ensemble,
    export_ensemble,
    max_difference,
    record_faces,
    view_maps,
)
from fer_utils.models import build_model, save_for_inference
from fer_utils.tta import TTA, tta_views

from conftest import SAMPLE_CSV

SPLITS = ("PublicTest", "PrivateTest")
FOLDERS = ("results", "models")
# two tiny untrained architectures; "five-tta" is five's model evaluated with the shifts set
ARCHITECTURES = {"five": ("five_layer", {"dense": 16}), "fast": ("fast_cnn", {"width": 4})}
MEMBERS = {"five": None, "five-tta": "shifts", "fast": None}


@pytest.fixture(scope="module")
def sample():
    """The bundled sample: its PublicTest and PrivateTest faces are the members' 'test sets'."""
    return load_fer2013(SAMPLE_CSV)


@pytest.fixture(scope="module")
def store(sample, tmp_path_factory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Built once: the members' models (models/) and their records and predictions on the
    sample (results/, cpu profile) in one folder; and every member's probabilities per split."""
    root = tmp_path_factory.mktemp("store")
    models, probabilities = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        for folder in FOLDERS:
            patch.setenv(f"FER_{folder.upper()}", str(root / folder))
        for name, (architecture, kwargs) in ARCHITECTURES.items():
            models[name] = build_model(architecture, **kwargs)
            save_for_inference(models[name], models_dir() / f"{name}.keras")
        for name, tta in MEMBERS.items():
            trainer = name.removesuffix("-tta")
            probabilities[name] = {
                s: predict(models[trainer], sample.split(s).images, tta=tta or False)
                for s in SPLITS
            }
            splits = {s: (sample.split(s).labels, p) for s, p in probabilities[name].items()}
            fields = {"tta": tta, "trained_by": trainer} if tta else {}
            save_member(name, splits, "tta" if tta else "trained", **fields)
    return root, probabilities


@pytest.fixture
def members(store, tmp_path, monkeypatch) -> dict[str, dict[str, np.ndarray]]:
    """A copy of the store as this test's models/ and results/; the members' probabilities."""
    root, probabilities = store
    for folder in FOLDERS:
        shutil.copytree(root / folder, tmp_path / folder)
        monkeypatch.setenv(f"FER_{folder.upper()}", str(tmp_path / folder))
    return probabilities


def record(name: str, weights: list[float], pool: str = "linear") -> ens.Ensemble:
    """Write the ensemble record ``name`` of the three members with ``weights``."""
    ensemble = ens.Ensemble(tuple(MEMBERS), np.array(weights), pool)
    validation = ens.load_split(list(MEMBERS), "PublicTest")
    ens.record_ensemble(ensemble, name, validation, f"python -m fer_utils ensemble --name {name}")
    return ensemble


def test_views_inside_the_model_are_the_tta_views():
    """A view with a scale, a rotation and a shift (bilinear, edges replicated), and its
    mirror image, computed by FaceView equal OpenCV's warp of the same faces."""
    tta = TTA(shifts=((0, 0), (1, -2)), scales=(1.1,), angles=(8.0,))
    faces = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    for (index, weight), expected in zip(view_maps(tta), tta_views(faces, tta), strict=True):
        layer = FaceView()
        layer.build(faces.shape)
        layer.set_weights([index, weight])
        np.testing.assert_allclose(np.asarray(layer(faces)), expected, atol=1e-3)


def test_the_exported_ensemble_is_the_weighted_vote_of_its_members(members, sample, tmp_path):
    """Weighted soft voting, with the TTA member's ten views averaged inside the graph: the
    saved model (loaded in safe mode) gives the record's probabilities."""
    ensemble = record("toy-ensemble", [0.5, 0.3, 0.2])
    path = export_ensemble("toy-ensemble")
    assert path == models_dir() / "toy-ensemble.keras"
    model = load_classifier(path)
    for split in SPLITS:
        stacked = np.stack([members[name][split] for name in MEMBERS])
        expected = ens.soft_vote(stacked, ensemble.weights)
        assert expected.max(axis=1).min() < 0.99  # the members are not saturated
        np.testing.assert_allclose(model(sample.split(split).images), expected, atol=1e-5)
    faces = record_faces("toy-ensemble", sample)
    assert faces is not None and len(faces) == len(sample.split("PublicTest"))
    difference, speed = check_ensemble(model, "toy-ensemble", faces)
    assert difference < 1e-5 and speed > 0


def test_log_pooled_stacking_is_built_in_too(members, sample):
    """Stacking's weights of any sign on log-probabilities (``pool='log'``)."""
    ensemble = record("toy-stacking", [1.2, -0.4, 0.5], pool="log")
    model = load_classifier(export_ensemble("toy-stacking"))
    faces = sample.split("PublicTest").images
    expected = ensemble.combine(np.stack([members[name]["PublicTest"] for name in MEMBERS]))
    np.testing.assert_allclose(model(faces), expected, atol=1e-5)


@pytest.mark.slow
def test_the_export_command_builds_checks_and_exports_to_onnx(members, sample, capsys):
    record("toy-ensemble", [0.5, 0.3, 0.2])
    argv = ["export", "--ensemble", "toy-ensemble", "--format", "onnx", "--data", str(SAMPLE_CSV)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"toy-ensemble\.keras \(\d+\.\d\d MB\)", out)
    assert "faces/s; largest |difference| from the record's probabilities" in out
    onnx = models_dir() / "toy-ensemble.onnx"
    assert f"onnx: {onnx}" in out
    keras_model = load_classifier(models_dir() / "toy-ensemble.keras")
    assert max_difference(keras_model, onnx, sample.split("PublicTest").images) < 1e-4


def test_missing_member_models_name_the_members_and_their_commands(members, capsys):
    record("toy-ensemble", [0.5, 0.3, 0.2])
    (models_dir() / "fast.keras").unlink()
    with pytest.raises(ModelError, match=r"missing: fast \(.*fast\.keras\)\. .*`test`"):
        export_ensemble("toy-ensemble")
    (models_dir() / "five.keras").unlink()  # five and five-tta: one model, named once
    assert main(["export", "--ensemble", "toy-ensemble"]) == 2
    err = capsys.readouterr().err
    assert "2 of the members' models are missing: five (" in err and "Traceback" not in err


def test_only_ensemble_records_are_exported_as_ensembles(members):
    with pytest.raises(ModelError, match="five is a record of kind 'trained', not an ensemble"):
        export_ensemble("five")
    with pytest.raises(ModelError, match=r"no results/nothing\.json: fit the ensemble first"):
        export_ensemble("nothing")


def test_a_member_calibrated_since_counts_without_its_temperature(members, sample):
    """The record pooled its members' uncalibrated probabilities: a member's model calibrated
    afterwards (e.g. the default, in place) is used without its temperature."""
    record("toy-ensemble", [0.5, 0.3, 0.2])
    path = models_dir() / "five.keras"
    save_for_inference(with_temperature(keras.saving.load_model(path), 3.0), path)
    model = load_classifier(export_ensemble("toy-ensemble"))
    faces = record_faces("toy-ensemble", sample)
    assert check_ensemble(model, "toy-ensemble", faces)[0] < 1e-5
