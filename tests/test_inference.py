"""The prediction path on users' own files: real faces, detection, every kind of bad input,
and the exported ONNX model."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import skimage.data

from fer_utils.cli import main
from fer_utils.config import EMOTIONS
from fer_utils.data import as_batch, load_fer2013
from fer_utils.inference import (
    ModelError,
    default_model_path,
    load_classifier,
    predict_sources,
    set_default_model,
)
from fer_utils.inference.classifier import record_default_calibration
from fer_utils.inference.export import export_model, max_difference
from fer_utils.inference.media import read_image
from fer_utils.inference.predict import COLUMNS, classify, read_rows
from fer_utils.tf_quiet import _not_a_retracing_hint, kept_lines
from fer_utils.tta import TTA_SETS, tta_views

from conftest import ROOT, SAMPLE_CSV

PHOTO = ROOT / "data" / "sample" / "astronaut.jpg"


@pytest.fixture(scope="module")
def classifier():
    """The committed default model (or ``$FER_MODEL``)."""
    return load_classifier(default_model_path())


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """The default model exported to ONNX (once per module: the export takes seconds)."""
    return export_model(default_model_path(), tmp_path_factory.mktemp("onnx") / "default.onnx")


@pytest.fixture(scope="module")
def test_faces() -> np.ndarray:
    """Real PrivateTest faces from the bundled sample."""
    return load_fer2013(SAMPLE_CSV).split("PrivateTest").images


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A real photo with one frontal face (public domain, shipped with scikit-image), BGR."""
    return np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])


def predict_json(tmp_path: Path, *args: str) -> list[dict]:
    """The rows of ``predict ARGS``; its exit status is 1 exactly when a row is an error."""
    out = tmp_path / "rows.json"
    status = main(["predict", *args, "--format", "json", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert status == (1 if any(row["status"] == "error" for row in rows) else 0)
    return rows


def test_cli_labels_match_direct_predictions(tmp_path, classifier, test_faces):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(test_faces):
        cv2.imwrite(str(folder / f"{i:03d}.png"), face)
    rows = predict_json(tmp_path, str(folder), "--detector", "none", "--tta", "none")
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


def huge_png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width``×``height`` pixels (its IHDR patched, CRC fixed):
    what a decompression bomb looks like before decoding."""
    cv2.imwrite(str(path), np.zeros((1, 1), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR: after signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC of type + fields
    path.write_bytes(bytes(data))
    return path


def warned_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warning lines of the prediction pipeline (not TensorFlow's)."""
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name.startswith("fer_utils")]  # fmt: skip


@pytest.fixture
def fast_model(monkeypatch, classifier):
    """``main(["predict", ...])`` uses the module's classifier instead of loading it again."""
    monkeypatch.setattr("fer_utils.inference.load_classifier", lambda path=None: classifier)
    return classifier


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the command gets as far as loading the model."""

    def load(path=None):
        pytest.fail("the model was loaded: the check should have come before any work")

    monkeypatch.setattr("fer_utils.inference.load_classifier", load)


def test_every_input_in_a_folder_gets_its_row_whatever_happens(
    tmp_path, astronaut, fast_model, capsys, caplog
):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.jpg"), astronaut)
    (folder / "corrupt.jpg").write_bytes((folder / "good.jpg").read_bytes()[:200])
    cv2.imwrite(str(folder / "thin.png"), np.full((1, 20000, 3), 128, np.uint8))  # was cv2.error
    huge_png_header(folder / "huge.png", 30000, 30000)  # 900 megapixels: 2.7 GB decoded
    (folder / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic")
    assert main(["predict", str(folder)]) == 1  # CSV streamed; an input failed: exit status 1
    captured = capsys.readouterr()
    rows = {Path(r["source"]).name: r for r in csv.DictReader(io.StringIO(captured.out))}
    assert sorted(rows) == ["corrupt.jpg", "good.jpg", "huge.png", "photo.heic", "thin.png"]
    assert rows["good.jpg"]["status"] == "ok" and rows["good.jpg"]["label"] in EMOTIONS
    assert rows["thin.png"]["status"] == "no_face"
    assert (rows["huge.png"]["status"], rows["huge.png"]["message"]) == (
        "error", "image is 30000×30000 = 900 megapixels, above the limit of 100 megapixels; "
        "resize it first")  # fmt: skip
    assert rows["corrupt.jpg"]["status"] == "error"
    assert rows["photo.heic"]["status"] == "skipped"
    assert "not an image or video: file type '.heic' (supported: " in rows["photo.heic"]["message"]
    assert "default.keras: 1 ok, 1 no_face, 2 error, 1 skipped" in captured.err
    warned = sorted(warned_lines(caplog))
    assert [w.split(": ")[0] for w in warned] == [
        str(folder / n) for n in ("corrupt.jpg", "huge.png", "thin.png")
    ]  # one line each: an error, an error, no face
    assert "thin.png: no face found" in warned[2]
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in captured.err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_an_interrupted_predict_keeps_finished_rows_and_resume_does_the_rest(
    tmp_path, astronaut, fast_model, monkeypatch, capsys, fmt
):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in "abcd":
        cv2.imwrite(str(folder / f"{name}.jpg"), astronaut)
    out = tmp_path / f"rows.{fmt}"
    args = ["predict", str(folder), "--out", str(out), "--format", fmt]
    run, calls = fast_model.run, []

    def stopped_on_the_third(faces):
        calls.append(len(faces))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while c.jpg is being classified
        return run(faces)

    monkeypatch.setattr(fast_model, "run", stopped_on_the_third)
    assert main(args) == 130
    assert "add --resume to continue" in capsys.readouterr().err
    kept = read_rows(out, fmt)
    assert [Path(r["source"]).name for r in kept] == ["a.jpg", "b.jpg"]

    assert main([*args, "--resume"]) == 0
    assert "(2 rows kept from --out)" in capsys.readouterr().err
    rows = read_rows(out, fmt)
    assert [Path(r["source"]).name for r in rows] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert {r["status"] for r in rows} == {"ok"} and rows[:2] == kept
    assert len(calls) == 3 + 2  # c and d only


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [("notes.csv", "title,author\nA,B\n", "csv"), ("header.csv", "title,author\n", "csv"),
     ("five.json", "5", "json"), ("rows.jsonl", '{"source": "a.jpg"}\n', "jsonl")],
)  # fmt: skip
def test_resume_needs_out_and_refuses_a_file_of_other_rows(
    tmp_path, astronaut, no_model, capsys, name, text, fmt
):
    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut)
    assert main(["predict", str(tmp_path / "a.jpg"), "--resume"]) == 2
    assert "--resume continues the rows of --out" in capsys.readouterr().err
    (tmp_path / name).write_text(text)
    assert main(["predict", str(tmp_path / "a.jpg"), "--resume", "--format", fmt, "--out",
                 str(tmp_path / name)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"does not hold predict's {fmt} rows" in err and err.count("\n") == 1
    assert (tmp_path / name).read_text() == text


def test_resume_tries_a_failed_input_again_and_keeps_annotated_names(
    tmp_path, astronaut, fast_model, capsys
):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    cv2.imwrite(str(tmp_path / "a" / "img.jpg"), astronaut)
    (tmp_path / "b" / "img.jpg").write_bytes(b"not yet a photo")
    out, annotated = tmp_path / "rows.csv", tmp_path / "annotated"
    args = ["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
            "--annotate", str(annotated)]  # fmt: skip
    assert main(args) == 1  # b/img.jpg failed
    first = (annotated / "img.annotated.jpg").read_bytes()
    cv2.imwrite(str(tmp_path / "b" / "img.jpg"), astronaut[:, ::-1])  # fixed
    assert main([*args, "--resume"]) == 0
    rows = read_rows(out)
    statuses = [(Path(r["source"]).parent.name, r["status"]) for r in rows]
    assert statuses == [("a", "ok"), ("b", "ok")]
    assert (annotated / "img.annotated.jpg").read_bytes() == first  # a's copy kept its name
    assert (annotated / "img-2.annotated.jpg").is_file()


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (RuntimeError("model\n  exploded"), "RuntimeError: model exploded"),
        (MemoryError(), "not enough memory to process it"),
        (cv2.error("resize went wrong"), "OpenCV failed in a function: resize went wrong"),
    ],
    ids=["RuntimeError", "MemoryError", "cv2.error"],
)
def test_an_exception_on_one_input_is_its_row_and_the_batch_goes_on(
    tmp_path, astronaut, classifier, monkeypatch, caplog, failure, message
):
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), astronaut)
    run, calls = classifier.run, []

    def fails_once(faces):
        calls.append(len(faces))
        if len(calls) == 1:
            raise failure
        return run(faces)

    monkeypatch.setattr(classifier, "run", fails_once)
    inputs = [str(tmp_path / n) for n in ("a.jpg", "b.jpg")]
    rows = list(predict_sources(inputs, classifier, progress=False))
    assert [(Path(r["source"]).name, r["status"]) for r in rows] == [("a.jpg", "error"),
                                                                     ("b.jpg", "ok")]  # fmt: skip
    assert rows[0]["message"] == message
    assert warned_lines(caplog) == [f"{inputs[0]}: {message}"]


def test_a_second_predict_writing_the_same_out_fails_at_once(tmp_path, astronaut, no_model,
                                                             capsys):  # fmt: skip
    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut)
    out = tmp_path / "rows.csv"
    with open(tmp_path / "rows.csv.lock", "a") as lock:  # the first predict, still writing
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["predict", str(tmp_path / "a.jpg"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: another predict is writing {out}; wait for it or choose another "
                   "--out\n")  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("missing/rows.csv", "missing/rows.csv does not exist: create the folder"),
        ("file.txt/rows.csv", "file.txt/rows.csv is a file, not a folder"),
        (".", "is a folder: give a file name"),
    ],
    ids=["missing-folder", "under-a-file", "a-folder"],
)
def test_out_where_it_cannot_be_written_is_refused_before_any_work(
    tmp_path, astronaut, no_model, capsys, where, says
):
    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut)
    (tmp_path / "file.txt").write_text("a regular file")
    out = tmp_path / where
    assert main(["predict", str(tmp_path / "a.jpg"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("where", ["file.txt", "file.txt/annotated"])
def test_annotate_where_it_cannot_be_written_is_refused_before_any_work(
    tmp_path, astronaut, no_model, capsys, where
):
    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut)
    (tmp_path / "file.txt").write_text("a regular file")
    args = ["predict", str(tmp_path / "a.jpg"), "--annotate", str(tmp_path / where)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --annotate ") and str(tmp_path / where) in err
    assert err.count("\n") == 1 and not (tmp_path / "annotated").exists()


class _ClosedVideoWriter:
    """A VideoWriter that could not be opened (as without an mp4v encoder)."""

    def __init__(self, *args) -> None:
        pass

    def isOpened(self) -> bool:  # (OpenCV's name)
        return False

    def write(self, image) -> None:
        raise AssertionError("written to a writer that is not open")

    def release(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["image", "video"])
def test_an_annotated_copy_that_cannot_be_written_is_reported(
    tmp_path, astronaut, fast_model, monkeypatch, capsys, caplog, kind
):
    if kind == "image":
        source = tmp_path / "a.jpg"
        cv2.imwrite(str(source), astronaut)
        monkeypatch.setattr(cv2, "imwrite", lambda *args, **kwargs: False)  # e.g. disk full
    else:
        source = tmp_path / "clip.mp4"
        size = astronaut.shape[1::-1]
        video = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
        for _ in range(2):
            video.write(astronaut)
        video.release()
        monkeypatch.setattr(cv2, "VideoWriter", _ClosedVideoWriter)
    rows = predict_json(tmp_path, str(source), "--annotate", str(tmp_path / "ann"))
    assert [r["status"] for r in rows] == ["ok"] * (1 if kind == "image" else 2)
    assert rows[0]["message"].startswith(f"annotated copy not written: {tmp_path / 'ann'}")
    assert all(r["message"] == "" for r in rows[1:])  # said once, where it first failed
    assert "; 1 annotated copies not written" in capsys.readouterr().err
    assert [w.split(": ", 1)[1].split(":")[0] for w in warned_lines(caplog)] == [
        "annotated copy not written"]  # fmt: skip


def test_out_is_never_torn(tmp_path, astronaut, fast_model, monkeypatch):
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), astronaut)
    out = tmp_path / "rows.json"
    out.write_text("the previous run's rows\n")
    run, calls = fast_model.run, []

    def killed_on(call: int):
        def run_until(faces):
            calls.append(len(faces))
            if len(calls) == call:
                raise KeyboardInterrupt  # ^C, or anything that stops the process mid-batch
            return run(faces)

        return run_until

    monkeypatch.setattr(fast_model, "run", killed_on(1))
    args = ["predict", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--format", "json",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 130  # Ctrl-C before any input finished: --out as it was
    assert out.read_text() == "the previous run's rows\n"
    calls.clear()
    monkeypatch.setattr(fast_model, "run", killed_on(2))
    assert main(args) == 130  # Ctrl-C: one line, no traceback
    finished = json.loads(out.read_text())  # whole: the rows of a.jpg, not half of b.jpg's
    assert [Path(r["source"]).name for r in finished] == ["a.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.jpg", "b.jpg", "rows.json", "rows.json.lock"]  # no temporary file left  # fmt: skip
    assert main(args) == 0  # the lock was released
    assert [r["status"] for r in json.loads(out.read_text())] == ["ok", "ok"]


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
    assert {r["tta"] for r in rows} == {"none"}  # videos: no TTA unless asked (time per frame)
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


def test_wrong_model_files_give_clear_errors(tmp_path, capsys, monkeypatch):
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(ModelError, match=r"folder\.keras is a folder, not a model file"):
        load_classifier(tmp_path / "folder.keras")
    with monkeypatch.context() as env:
        env.setenv("FER_MODEL", str(tmp_path / "moved.keras"))
        with pytest.raises(ModelError, match=r"found: .*moved\.keras \(named by \$FER_MODEL\)"):
            load_classifier()
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


def test_onnx_export_matches_keras(classifier, test_faces, onnx_model):
    assert max_difference(classifier, onnx_model, test_faces) < 1e-4
    rows = list(predict_sources([str(onnx_model.parent)], load_classifier(onnx_model), "none"))
    assert rows[0]["status"] == "error"  # the folder holds only the .onnx file: nothing to read


def test_tta_averages_the_classifier_over_the_views_of_tta_py(tmp_path, classifier, test_faces,
                                                             fast_model):  # fmt: skip
    faces, folder = as_batch(test_faces[:3]), tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(test_faces[:3]):  # FER2013 faces: with --detector none, the crop
        cv2.imwrite(str(folder / f"{i}.png"), face)
    for name in ("flip", "shifts"):
        views = list(tta_views(faces, TTA_SETS[name]))
        manual = np.mean([classifier(view) for view in views], axis=0)
        assert len(views) == len(TTA_SETS[name]) == {"flip": 2, "shifts": 10}[name]
        np.testing.assert_allclose(classify(classifier, faces, name), manual, atol=1e-5)
        rows = predict_json(tmp_path, str(folder), "--detector", "none", "--tta", name)
        assert [r["tta"] for r in rows] == [name] * 3
        probs = np.array([[r[f"p_{e}"] for e in EMOTIONS] for r in rows])
        np.testing.assert_allclose(probs, manual, atol=1e-5)  # (rows round to 5 decimals)
    np.testing.assert_array_equal(classify(classifier, faces, "none"), classifier(faces))
    default = predict_json(tmp_path, str(folder), "--detector", "none")
    assert [r["tta"] for r in default] == ["shifts"] * 3  # images: shifts unless told
    assert [r["p_happy"] for r in default] == [r["p_happy"] for r in rows]
    assert COLUMNS[-1] == "tta"  # appended: the older columns keep their places


@pytest.fixture(scope="module")
def big_and_small(astronaut, tmp_path_factory) -> Path:
    """A photo with two faces: the astronaut, and beside her a copy at 0.6 of the size."""
    small = cv2.resize(astronaut, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    canvas = np.full((astronaut.shape[0], astronaut.shape[1] + small.shape[1], 3), 128, np.uint8)
    canvas[-small.shape[0] :, : small.shape[1]] = small  # the small face on the left
    canvas[:, small.shape[1] :] = astronaut
    path = tmp_path_factory.mktemp("two") / "two.png"
    cv2.imwrite(str(path), canvas)
    return path


def test_largest_keeps_only_the_largest_face(tmp_path, big_and_small, fast_model):
    both = predict_json(tmp_path, str(big_and_small), "--tta", "none")
    assert [r["face"] for r in both] == [0, 1] and both[0]["x"] < both[1]["x"]  # left to right
    assert both[0]["w"] < both[1]["w"]  # the first row is the small face
    (largest,) = predict_json(tmp_path, str(big_and_small), "--tta", "none", "--largest")
    assert {k: largest[k] for k in (*"xywh", "face")} == {**{k: both[1][k] for k in "xywh"},
                                                           "face": 0}  # fmt: skip
    assert largest["p_happy"] == both[1]["p_happy"]


def test_detector_score_per_row_and_min_score(tmp_path, big_and_small, fast_model):
    rows = predict_json(tmp_path, str(big_and_small), "--tta", "none")
    scores = sorted(r["detector_score"] for r in rows)
    assert len(scores) == 2 and scores[0] < scores[1]  # Haar's weights: not probabilities
    middle = (scores[0] + scores[1]) / 2
    (kept,) = predict_json(tmp_path, str(big_and_small), "--tta", "none", "--min-score",
                           str(middle))  # fmt: skip
    assert kept["detector_score"] == scores[1]
    (none,) = predict_json(tmp_path, str(big_and_small), "--min-score", str(scores[1] + 1))
    assert none["status"] == "no_face"
    assert none["message"] == f"no face found (2 scored below {scores[1] + 1:g})"
    (crop,) = predict_json(tmp_path, str(big_and_small), "--detector", "none")
    assert crop["detector_score"] == 1.0  # no detector: the whole image, score 1


def _clean_env() -> dict:
    """This environment, without the settings that turn TensorFlow's start-up lines on."""
    return {k: v for k, v in os.environ.items() if k not in ("FER_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}


def test_predict_writes_no_tensorflow_lines_to_stderr():
    done = subprocess.run(
        [sys.executable, "-m", "fer_utils", "predict", str(PHOTO)],
        capture_output=True, text=True, env=_clean_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "default.keras: 1 ok, 0 no_face, 0 error, 0 skipped\n"
    assert done.stdout.splitlines()[1].startswith(f"{PHOTO},0,0,ok,")


_PREDICT_AND_LIST_MODULES = """
import sys
from fer_utils.cli import main
code = main(["predict", *sys.argv[1:]])
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules), file=sys.stderr)
raise SystemExit(code)
"""


def test_predict_with_an_onnx_model_never_imports_tensorflow(onnx_model):
    done = subprocess.run(
        [sys.executable, "-c", _PREDICT_AND_LIST_MODULES, str(PHOTO), "--model", str(onnx_model)],
        capture_output=True, text=True, env=_clean_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "default.onnx: 1 ok, 0 no_face, 0 error, 0 skipped\n[]\n"
    assert done.stdout.splitlines()[1].startswith(f"{PHOTO},0,0,ok,")


TF_STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796150570.207501   15232 port.cc:153] oneDNN custom operations are on. You may see \
slightly different numerical results due to floating-point round-off errors.
I0000 00:00:1796150570.208010   15232 cudart_stub.cc:31] Could not find cuda drivers on your \
machine, GPU will not be used.
I0000 00:00:1796150570.3   15232 cpu_feature_guard.cc:210] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.
/x/y.py:3: UserWarning: a Python warning
  warnings.warn("a Python warning")
W0000 00:00:1796150570.4   15232 some.cc:1] a warning
E0000 00:00:1796150580.070102   15232 cuda_platform.cc:52] failed call to cuInit: INTERNAL: \
CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1796150580.1   15232 other.cc:9] a real error
"""  # what TensorFlow 2.21 writes while it starts on a machine without a GPU, and others


def test_tensorflow_start_up_lines_are_filtered_by_level():
    lines = TF_STARTUP.splitlines(keepends=True)
    warning, real_error = lines[5:7], lines[-1]
    assert kept_lines(TF_STARTUP, 2, gpu_present=False) == "".join([*warning, real_error])
    assert kept_lines("".join(lines[1:]), 2, gpu_present=False) == "".join([*warning, real_error])
    cuinit = lines[-2]
    assert kept_lines(TF_STARTUP, 2, gpu_present=True) == "".join([*warning, cuinit, real_error])
    assert kept_lines(TF_STARTUP, 1, gpu_present=True) == "".join(
        [*warning, lines[7], cuinit, real_error])  # fmt: skip


def test_only_the_retracing_hint_is_dropped_from_tensorflows_warnings():
    def shown(message: str) -> bool:
        record = logging.LogRecord("tensorflow", logging.WARNING, "x.py", 1, message, None, None)
        return _not_a_retracing_hint(record)

    assert not shown("5 out of the last 31 calls to <function f> triggered tf.function retracing.")
    assert shown("Model failed to serialize as JSON.")


@pytest.mark.real_data
def test_image_folder_jpegs_read_like_the_dataset_loader(real_images_zip, classifier, tmp_path):
    """Kaggle test JPEGs through the prediction path get the labels that the same faces, read
    by the dataset loader, get from the model directly."""
    import zipfile

    with zipfile.ZipFile(real_images_zip) as archive:
        names = [n for n in archive.namelist() if "/PrivateTest_" in n][::10]
        archive.extractall(tmp_path, names)
    rows = list(predict_sources([str(tmp_path)], classifier, "none", progress=False, tta="none"))
    by_id = {int(Path(r["source"]).stem.split("_")[1]): r["label"] for r in rows}
    loaded = load_fer2013(tmp_path)
    direct = classifier(loaded.images).argmax(1)
    assert len(rows) == len(names) == len(loaded) > 300
    assert [by_id[i] for i in loaded.source_index] == [EMOTIONS[k] for k in direct]


def test_set_default_leaves_out_a_run_that_loses_one_emotion_beyond_noise(caplog):
    from fer_utils.config import models_dir
    from fer_utils.runs import write_run

    labels = np.repeat(np.arange(7), 100)
    rng = np.random.default_rng(0)

    def right(share: list[float]) -> np.ndarray:
        """Probabilities right on the given share of each emotion's faces."""
        hit = rng.random(len(labels)) < np.asarray(share)[labels]
        return np.eye(7)[np.where(hit, labels, (labels + 1) % 7)]

    shares = {"old": [0.6] * 7, "new": [0.9] * 6 + [0.2], "fair": [0.65] * 7}
    for run, share in shares.items():
        splits = {"PublicTest": (labels, right(share)), "PrivateTest": (labels, right(share))}
        write_run(run, "trained", "toy", f"train {run}", "cpu", "sha", 1.0, splits)
        (models_dir() / f"{run}.keras").write_bytes(run.encode())
    assert set_default_model(["old"]) == "old"
    # "new" is better on PublicTest overall (0.8 against 0.6) but loses "neutral" by 40 points
    assert set_default_model(["old", "new", "fair"]) == "fair"
    assert "new recognises neutral less often than the current default old" in caplog.text


def test_set_default_keeps_the_current_default_its_calibration_and_its_data(caplog):
    """The current default always competes; if it stays, its file and calibration record stay;
    a run on other data (a sample run) cannot replace it."""
    from fer_utils.config import models_dir
    from fer_utils.runs import default_choice, write_run

    labels = np.arange(100) % 7

    def right(count: int) -> np.ndarray:
        return np.eye(7)[np.where(np.arange(100) < count, labels, (labels + 1) % 7)]

    runs = (("chosen", 70, "sha"), ("weaker", 60, "sha"), ("sample", 99, "other"))
    for run, public, data in runs:
        splits = {"PublicTest": (labels, right(public)), "PrivateTest": (labels, right(public))}
        write_run(run, "trained", "toy", f"train {run}", "cpu", data, 1.0, splits)
        (models_dir() / f"{run}.keras").write_bytes(run.encode())
    assert set_default_model(["chosen"]) == "chosen"
    (models_dir() / "default.keras").write_bytes(b"calibrated")  # as calibrate --out leaves it
    record_default_calibration(models_dir() / "calibration.json")
    calibrated = default_choice()

    assert set_default_model(["weaker"]) == "chosen"  # not named, yet it competes and stays
    write_run("tied", "trained", "toy", "train tied", "cpu", "sha", 1.0,
              {s: (labels, right(70)) for s in ("PublicTest", "PrivateTest")})  # fmt: skip
    (models_dir() / "tied.keras").write_bytes(b"tied")
    assert set_default_model(["tied"]) == "chosen"  # a tie keeps the calibrated default
    assert set_default_model(["chosen"]) == "chosen"
    assert set_default_model(["sample"]) == "chosen"  # 99 % on other faces: left out
    assert "sample was trained on other data" in caplog.text
    assert (models_dir() / "default.keras").read_bytes() == b"calibrated"
    choice = default_choice()
    assert choice["calibration"] == calibrated["calibration"]
    assert choice["sha256"] == calibrated["sha256"]
    assert choice["candidates"] == {"chosen": 0.7, "weaker": 0.6, "tied": 0.7}
    (models_dir() / "default.keras").unlink()  # deleted by hand: it cannot compete
    assert set_default_model(["weaker"]) == "weaker"
    assert "default.keras is missing: the current default chosen cannot compete" in caplog.text


def test_set_default_picks_the_best_publictest_run_and_never_privatetest(tmp_path):
    from fer_utils.config import models_dir
    from fer_utils.runs import write_run

    labels = np.arange(100) % 7

    def right(count: int) -> np.ndarray:
        """Probabilities that get exactly the first ``count`` of 100 faces right."""
        return np.eye(7)[np.where(np.arange(100) < count, labels, (labels + 1) % 7)]

    public, private = {"a": 60, "b": 64, "big": 90}, {"a": 70, "b": 50, "big": 90}
    for run in public:
        splits = {"PublicTest": (labels, right(public[run])),
                  "PrivateTest": (labels, right(private[run]))}  # fmt: skip
        command = f"python -m fer_utils train --run-name {run}"
        write_run(run, "trained", "toy", command, "cpu", "sha", 1.0, splits)
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
