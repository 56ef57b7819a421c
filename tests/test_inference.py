"""The prediction path on users' own files: real faces, detection, every kind of bad input,
and the exported ONNX model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import skimage.data

from fer_utils.cli import main
from fer_utils.config import EMOTIONS
from fer_utils.data import load_fer2013
from fer_utils.inference import (
    ModelError,
    default_model_path,
    load_classifier,
    predict_sources,
    set_default_model,
)
from fer_utils.inference.export import export_model, max_difference
from fer_utils.inference.media import read_image

from conftest import SAMPLE_CSV


@pytest.fixture(scope="module")
def classifier():
    """The committed default model (or ``$FER_MODEL``)."""
    return load_classifier(default_model_path())


@pytest.fixture(scope="module")
def test_faces() -> np.ndarray:
    """Real PrivateTest faces from the bundled sample."""
    return load_fer2013(SAMPLE_CSV).split("PrivateTest").images


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A real photo with one frontal face (public domain, shipped with scikit-image), BGR."""
    return np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])


def predict_json(tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / "rows.json"
    assert main(["predict", *args, "--format", "json", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_cli_labels_match_direct_predictions(tmp_path, classifier, test_faces):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(test_faces):
        cv2.imwrite(str(folder / f"{i:03d}.png"), face)
    rows = predict_json(tmp_path, str(folder), "--detector", "none")
    direct = classifier(test_faces).argmax(1)
    assert [r["label"] for r in rows] == [EMOTIONS[k] for k in direct]
    assert all(r["status"] == "ok" for r in rows) and len(rows) == len(test_faces)


@pytest.mark.parametrize("step", ["1.2", "1.3"])  # the default, and the faster webcam setting
def test_frame_with_two_faces_yields_two_rows_left_to_right(tmp_path, astronaut, step):
    cv2.imwrite(str(tmp_path / "two.png"), np.hstack([astronaut, astronaut]))
    rows = predict_json(tmp_path, str(tmp_path / "two.png"), "--step", step)
    assert [r["face"] for r in rows] == [0, 1]
    assert rows[0]["x"] < astronaut.shape[1] <= rows[1]["x"]
    assert all(abs(sum(r[f"p_{e}"] for e in EMOTIONS) - 1) < 1e-3 for r in rows)


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path, astronaut):
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), astronaut)
    (tmp_path / "corrupt.jpg").write_bytes(good.read_bytes()[:200])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((240, 320, 3), 128, np.uint8))
    names = ["corrupt.jpg", "empty.png", "notes.txt", "missing.jpg", "wall.png", "good.jpg"]
    rows = predict_json(tmp_path, *(str(tmp_path / n) for n in names))
    status = {Path(r["source"]).name: (r["status"], r["message"]) for r in rows}
    assert status["corrupt.jpg"] == ("error", "corrupt or not an image (OpenCV cannot decode it)")
    assert status["empty.png"] == ("error", "the file is empty")
    assert status["notes.txt"][0] == "error" and "unsupported file type '.txt'" in status[
        "notes.txt"][1]  # fmt: skip
    assert status["missing.jpg"] == ("error", "no such file or folder")
    assert status["wall.png"] == ("no_face", "no face found")
    assert status["good.jpg"][0] == "ok"


@pytest.mark.parametrize(
    ("convert", "scale"),
    [
        (lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 1),
        (lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), 1),
        (lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, 1),
        (lambda bgr: cv2.resize(bgr, None, fx=10, fy=10, interpolation=cv2.INTER_LINEAR), 10),
    ],
    ids=["grey", "rgba", "16-bit", "huge"],
)
def test_any_image_layout_gives_the_same_prediction(tmp_path, astronaut, convert, scale):
    cv2.imwrite(str(tmp_path / "reference.png"), astronaut)
    cv2.imwrite(str(tmp_path / "variant.png"), convert(astronaut))
    reference, variant = (
        max(predict_json(tmp_path, str(tmp_path / f"{n}.png")), key=lambda r: r["w"] or 0)
        for n in ("reference", "variant")
    )  # the largest face: the huge copy may show a few small false detections too
    assert variant["status"] == "ok"
    for key in "xywh":  # boxes are in the pixels of the image as given
        assert abs(variant[key] / scale - reference[key]) < 0.1 * reference["w"]
    probs = [np.array([r[f"p_{e}"] for e in EMOTIONS]) for r in (reference, variant)]
    assert np.abs(probs[0] - probs[1]).max() < 0.1


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path, astronaut):
    from PIL import Image

    sensor = cv2.rotate(astronaut, cv2.ROTATE_90_COUNTERCLOCKWISE)  # pixels as the phone stores
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: "turn 90° clockwise to display"
    Image.fromarray(sensor[..., ::-1]).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == astronaut.shape
    assert np.abs(upright.astype(int) - astronaut).mean() < 5  # only JPEG loss
    assert any(r["status"] == "ok" for r in predict_json(tmp_path, str(tmp_path / "phone.jpg")))


def test_video_frames_are_sampled(tmp_path, astronaut):
    path = tmp_path / "clip.mp4"
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, astronaut.shape[1::-1])
    for _ in range(5):
        video.write(astronaut)
    video.release()
    rows = predict_json(tmp_path, str(path), "--every", "2", "--annotate", str(tmp_path / "ann"))
    assert [r["frame"] for r in rows] == [0, 2, 4]
    annotated = cv2.VideoCapture(str(tmp_path / "ann" / "clip.annotated.mp4"))
    assert annotated.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(5)  # 10 fps, every 2nd frame
    annotated.release()


def test_annotated_copies_of_same_named_files_do_not_overwrite_each_other(tmp_path, astronaut):
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "in" / folder / "img.jpg"), astronaut)
    predict_json(tmp_path, str(tmp_path / "in"), "--annotate", str(tmp_path / "ann"))
    written = sorted(p.name for p in (tmp_path / "ann").iterdir())
    assert written == ["img-2.annotated.jpg", "img.annotated.jpg"]


def test_wrong_model_files_give_clear_errors(tmp_path, capsys):
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(default_model_path().read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a Keras model file"):
        load_classifier(truncated)
    with pytest.raises(ModelError, match="model file not found"):
        load_classifier(tmp_path / "nothing.keras")
    with pytest.raises(ModelError, match=r"must be a \.keras, \.onnx or \.tflite"):
        load_classifier(Path(__file__))
    five_classes = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                                     keras.layers.Dense(5, activation="softmax")])  # fmt: skip
    five_classes.save(tmp_path / "five.keras")
    with pytest.raises(ModelError, match="gives 7 probabilities"):
        load_classifier(tmp_path / "five.keras")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    with pytest.raises(ModelError, match="could not be loaded as an ONNX model"):
        load_classifier(garbage)
    assert main(["predict", "x.png", "--model", str(truncated)]) == 2
    assert "error:" in capsys.readouterr().err


def test_onnx_export_matches_keras(tmp_path, classifier, test_faces):
    onnx_path = export_model(default_model_path(), tmp_path / "model.onnx")
    assert max_difference(classifier, onnx_path, test_faces) < 1e-4
    rows = list(predict_sources([str(tmp_path)], load_classifier(onnx_path), "none"))
    assert rows[0]["status"] == "error"  # the folder holds only the .onnx file: nothing to read


@pytest.mark.real_data
def test_image_folder_jpegs_read_like_the_dataset_loader(real_images_zip, classifier, tmp_path):
    """Kaggle test JPEGs through the prediction path get the labels that the same faces, read
    by the dataset loader, get from the model directly."""
    import zipfile

    with zipfile.ZipFile(real_images_zip) as archive:
        names = [n for n in archive.namelist() if "/PrivateTest_" in n][::10]
        archive.extractall(tmp_path, names)
    rows = list(predict_sources([str(tmp_path)], classifier, "none", progress=False))
    by_id = {int(Path(r["source"]).stem.split("_")[1]): r["label"] for r in rows}
    loaded = load_fer2013(tmp_path)
    direct = classifier(loaded.images).argmax(1)
    assert len(rows) == len(names) == len(loaded) > 300
    assert [by_id[i] for i in loaded.source_index] == [EMOTIONS[k] for k in direct]


def test_set_default_picks_the_best_publictest_run_and_never_privatetest(tmp_path):
    from fer_utils.config import models_dir, results_dir

    public, private = {"a": 0.60, "b": 0.64, "big": 0.9}, {"a": 0.70, "b": 0.50, "big": 0.9}
    for run in public:
        record = {
            "command": f"python -m fer_utils train --run-name {run}",
            "metrics": {
                "PublicTest": {"accuracy": public[run]},
                "PrivateTest": {"accuracy": private[run]},
            },
        }
        (results_dir() / f"{run}.json").write_text(json.dumps(record))
        (models_dir() / f"{run}.keras").write_bytes(run.encode() * 10)
    (models_dir() / "big.keras").write_bytes(bytes(11 * 2**20))  # too big to commit: left out
    assert main(["set-default", "a", "b", "big"]) == 0
    assert (models_dir() / "default.keras").read_bytes() == b"b" * 10
    choice = json.loads((models_dir() / "default.json").read_text())
    assert choice["run_name"] == "b" and choice["candidates"] == {"a": 0.60, "b": 0.64}

    (models_dir() / "b.keras").unlink()  # a fresh clone: only the default is committed
    assert set_default_model(["a", "b"]) == "b"
    assert (models_dir() / "default.keras").read_bytes() == b"b" * 10
    (models_dir() / "a.keras").unlink()
    with pytest.raises(
        ModelError, match=re.escape("rerun `python -m fer_utils train --run-name a`")
    ):
        set_default_model(["a", "b"])
    with pytest.raises(ModelError, match=r"no results/c\.json"):
        set_default_model(["b", "c"])
