"""Inference speed and consistency of the default model on this machine.

    python benchmarks/bench_inference.py [--model models/default.keras] [--data FER2013]
                                         [--images fer2013-images.zip] [--sections NAME ...]

Prints, section by section (``--sections`` picks some; all by default):

- ``runtimes``: batched throughput (faces/s) for Keras, ONNX and TFLite; single-face latency
  (median, p95);
- ``frame``: end-to-end latency per 640×480 frame with Haar and MTCNN detection;
- ``recall``: each detector's recall on real FER2013 PrivateTest faces placed in a larger frame;
- ``startup``: one photo, fresh process: ``python -m fer_utils predict`` from process start to
  its row, with the ``.keras`` model (TensorFlow imported) and its ONNX export (not imported),
  median of 3 runs each;
- ``tta``: the cost per face of each test-time-augmentation set of ``predict --tta``, batched,
  with ONNX and Keras;
- ``consistency``: with the Kaggle image-folder edition (``--images`` or ``$FER2013_IMAGES``),
  accuracy of the prediction path on its test JPEGs next to the csv evaluation of the same faces.

``startup`` needs no data; ``tta`` uses the bundled sample's faces when no FER2013 is found.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from fer_utils.cli import _test_faces
from fer_utils.config import EMOTIONS, project_root
from fer_utils.data import load_fer2013
from fer_utils.errors import run_script
from fer_utils.evaluation import metrics
from fer_utils.inference import load_classifier, make_detector, predict_sources
from fer_utils.inference.export import export_model
from fer_utils.inference.faces import crop_faces
from fer_utils.inference.predict import classify
from fer_utils.tta import TTA_SETS

SECTIONS = ("runtimes", "frame", "recall", "startup", "tta", "consistency")
PHOTO = project_root() / "data" / "sample" / "astronaut.jpg"


def latency_ms(fn, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile of ``fn()`` in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times)), float(np.percentile(times, 95))


def throughput(classifier, faces: np.ndarray, batch: int = 256, repeats: int = 3) -> float:
    """Faces per second, classifying ``faces`` in batches of ``batch``: the best of
    ``repeats`` passes (as ``timeit`` does: slower passes measure other load on the machine)."""
    classifier(faces[:batch], batch)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier(faces, batch)
        seconds.append(time.perf_counter() - start)
    return len(faces) / min(seconds)


def test_frame() -> np.ndarray:
    """A 640×480 BGR frame with one real face (skimage's public-domain astronaut photo)."""
    photo = cv2.resize(skimage.data.astronaut()[..., ::-1], (480, 480))
    return cv2.copyMakeBorder(photo, 0, 0, 80, 80, cv2.BORDER_CONSTANT, value=(90, 90, 90))


def detector_recall(detect, faces: np.ndarray, scale: int = 3) -> tuple[float, float]:
    """Share of ``faces`` found (a box centred inside the face) when each is enlarged ×``scale``
    and set in the middle of a grey frame twice its size, and milliseconds per frame."""
    found, seconds = 0, 0.0
    side = faces.shape[1] * scale
    for face in faces:
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        frame = cv2.copyMakeBorder(big, side // 2, side // 2, side // 2, side // 2,
                                   cv2.BORDER_CONSTANT, value=128)  # fmt: skip
        start = time.perf_counter()
        boxes = detect(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        seconds += time.perf_counter() - start
        lo, hi = side // 2, side // 2 + side
        found += any(lo <= b.x + b.w / 2 <= hi and lo <= b.y + b.h / 2 <= hi for b in boxes)
    return found / len(faces), 1000 * seconds / len(faces)


def startup_seconds(model: Path, runs: int = 3) -> tuple[float, float]:
    """Median seconds of ``python -m fer_utils predict PHOTO --model model`` in a fresh process,
    from its start to its row on standard output, and to its exit."""
    env = {k: v for k, v in os.environ.items() if k != "FER_VERBOSE"}
    command = [sys.executable, "-m", "fer_utils", "predict", str(PHOTO), "--model", str(model)]
    to_row, to_exit = [], []
    for _ in range(runs):
        start = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env, cwd=project_root()) as process:  # fmt: skip
            for line in process.stdout:
                if line.startswith(f"{PHOTO},"):
                    to_row.append(time.perf_counter() - start)
            if process.wait() != 0 or len(to_row) < len(to_exit) + 1:
                raise RuntimeError(f"{' '.join(command)} failed or wrote no row")
        to_exit.append(time.perf_counter() - start)
    return statistics.median(to_row), statistics.median(to_exit)


def tta_cost(classifier, faces: np.ndarray, tta: str, repeats: int = 3) -> float:
    """Faces per second of :func:`classify` with the TTA set ``tta`` on ``faces`` (all their
    views batched, as predict does): the best of ``repeats`` passes after a warm-up pass (of
    the same batch shapes: Keras traces its function again for a new one)."""
    classify(classifier, faces, tta)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        classify(classifier, faces, tta)
        seconds.append(time.perf_counter() - start)
    return len(faces) / min(seconds)


def folder_accuracy(images: Path, classifier) -> dict[str, tuple[float, int]]:
    """Accuracy per split of the prediction path (no detection: the JPEGs are face crops) on
    the image-folder edition's ``test/<emotion>/<Split>_<id>.jpg`` files."""
    with tempfile.TemporaryDirectory() as tmp:
        if images.is_file():
            with zipfile.ZipFile(images) as archive:
                archive.extractall(tmp)
            images = Path(tmp)
        test = next(p for p in (images / "test", images) if p.is_dir())
        rows = predict_sources([str(test)], classifier, "none", tta="none")  # as the csv's
        rows = [r for r in rows if r["status"] == "ok"]
    result = {}
    for split in ("PublicTest", "PrivateTest"):
        mine = [r for r in rows if Path(r["source"]).name.startswith(split)]
        truth = np.array([EMOTIONS.index(Path(r["source"]).parent.name.lower()) for r in mine])
        predicted = np.array([EMOTIONS.index(r["label"]) for r in mine])
        result[split] = (float((truth == predicted).mean()), len(mine))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="default: models/default.keras")
    parser.add_argument("--data", help="FER2013 (default: $FER2013_PATH, then data/)")
    parser.add_argument(
        "--images",
        default=os.environ.get("FER2013_IMAGES"),
        help="Kaggle image-folder edition, folder or zip (the test half suffices)",
    )
    parser.add_argument("--recall-faces", type=int, default=300)
    parser.add_argument(
        "--tta-faces", type=int, default=64, help="faces per pass of the tta section"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="which sections to run (default: all)",
    )
    args = parser.parse_args()
    sections = set(args.sections)

    keras_model = load_classifier(args.model)
    needs_data = sections & {"runtimes", "recall"} or (args.images and "consistency" in sections)
    dataset = load_fer2013(args.data) if needs_data else None
    test = dataset.split("PrivateTest") if dataset else None
    print(f"model: {keras_model.path}   cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        models = {"keras": keras_model}
        for fmt, suffix in (("onnx", ".onnx"), ("litert", ".tflite")):
            if fmt == "onnx" or "runtimes" in sections:
                out = export_model(keras_model.path, Path(tmp) / f"model{suffix}", fmt)
                models[fmt] = load_classifier(out)
        if "runtimes" in sections:
            faces = test.images[..., None].astype(np.float32)
            print("runtime   faces/s (batch 256)   1 face median ms   p95 ms   max |Δp| vs Keras")
            reference = keras_model(faces)
            for name, model in models.items():
                rate = throughput(model, faces)
                median, p95 = latency_ms(lambda m=model: m(faces[:1]), 300)
                delta = np.abs(model(faces) - reference).max()
                print(f"{name:<9} {rate:>19.0f} {median:>18.2f} {p95:>8.2f} {delta:>19.1e}")

        onnx = models["onnx"]
        if "frame" in sections:
            frame = test_frame()
            print("\nend to end, one 640×480 frame (detect + crop + ONNX classify):")
            for name, min_face, haar_step in (
                ("haar", 30, 1.2), ("haar", 48, 1.2), ("haar", 48, 1.3), ("mtcnn", 30, None),
            ):  # fmt: skip
                detect = make_detector(name, min_face, haar_step or 1.2)

                def step(detect=detect) -> None:
                    found = detect(frame)
                    onnx(crop_faces(frame, found)[..., None].astype(np.float32))

                median, p95 = latency_ms(step, 30)
                found = len(detect(frame))
                print(
                    f"  {name:<6} min face {min_face:>2} px, step {haar_step or '-':<3}: "
                    f"median {median:6.1f} ms   "
                    f"p95 {p95:6.1f} ms   faces found {found}"
                )

        if "recall" in sections:
            print(f"\ndetector recall on {args.recall_faces} real PrivateTest faces (×3, on grey):")
            rng = np.random.default_rng(0)
            sample = test.images[rng.choice(len(test), args.recall_faces, replace=False)]
            for name, step in (("haar", 1.2), ("haar", 1.3), ("mtcnn", None)):
                recall, ms = detector_recall(make_detector(name, 40, step or 1.2), sample)
                print(
                    f"  {name:<6} step {step or '-':<3} recall {recall:6.1%}   "
                    f"{ms:6.1f} ms per frame"
                )

        if "startup" in sections:
            print(f"\nstart-up: one photo, fresh process ({PHOTO.name}, median of 3 runs):")
            print("  model     to its row s   to exit s")
            timings = {}
            for name, path in (("keras", keras_model.path), ("onnx", onnx.path)):
                timings[name] = startup_seconds(path)
                print(f"  {name:<7} {timings[name][0]:>12.2f} {timings[name][1]:>11.2f}")
            before, after = timings["keras"][0], timings["onnx"][0]
            print(f"  before (keras) {before:.2f} s, after (onnx) {after:.2f} s: "
                  f"{before / after:.1f}× faster to the row")  # fmt: skip

        if "tta" in sections:
            faces = _test_faces(args.data)
            faces = np.resize(faces, (args.tta_faces, *faces.shape[1:]))  # repeated if few
            sets = ("none", "flip", "shifts", "affine")
            print(f"\npredict --tta: cost per face, {len(faces)} faces batched (views of each "
                  "set classified in one call):")  # fmt: skip
            print("  runtime  tta      views   faces/s   ms per face")
            for name in ("onnx", "keras"):
                for tta in sets:
                    rate = tta_cost(models[name], faces, tta)
                    views = 1 if tta == "none" else len(TTA_SETS[tta])
                    print(f"  {name:<8} {tta:<7} {views:>6} {rate:>9.0f} {1000 / rate:>13.2f}")

    if "consistency" not in sections:
        return
    if args.images:
        print(f"\nconsistency with the csv ({args.images}):")
        for split, (accuracy, n) in folder_accuracy(Path(args.images), keras_model).items():
            part = dataset.split(split)
            csv_acc = metrics(part.labels, keras_model(part.images))["accuracy"]
            print(
                f"  {split:<11} JPEG files {accuracy:.4f} (n={n})   csv {csv_acc:.4f} "
                f"(n={len(part)})   difference {100 * (accuracy - csv_acc):+.2f} points"
            )
    else:
        print("\n(no --images / $FER2013_IMAGES: consistency check skipped)")


if __name__ == "__main__":
    run_script(main)
