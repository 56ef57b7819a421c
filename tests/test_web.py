"""The browser demo (web/) in a real browser: built from models/default.keras, served on
localhost and driven in headless Chromium (playwright-core pointed at the system's Chromium);
its boxes and probabilities are compared with ``python -m fer_utils predict`` on the same files.

Skipped, with the reason, where Chromium, Node.js or web/node_modules are missing (.ci/run
installs them where it can: ``apt-get install chromium``, ``npm ci`` in web/).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fer_utils.config import EMOTIONS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
SAMPLE = ROOT / "data" / "sample"
MODEL = ROOT / "models" / "default.keras"
CHROMIUM = os.environ.get("FER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
NODE_PACKAGES = ("playwright-core", "onnxruntime-web", "@techstark/opencv-js")
N_FER = 8  # FER2013 PrivateTest faces fed whole (predict --detector none)
EXACT = 1e-4  # probabilities: the page against predict, same crops (whole pixels in both)


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return "Chromium is not installed (apt-get install chromium; .ci/run does it as root)"
    if not shutil.which("node"):
        return "Node.js is not installed (needed to drive Chromium with playwright-core)"
    absent = [p for p in NODE_PACKAGES if not (WEB / "node_modules" / p / "package.json").is_file()]
    if absent:
        return f"web/node_modules lacks {', '.join(absent)}: run `npm ci` in web/"
    return None


if reason := _missing():
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=f"browser test skipped: {reason}")]


# --- inputs --------------------------------------------------------------------------------
def _fer_faces() -> list[np.ndarray]:
    sample = pd.read_csv(SAMPLE / "fer2013_sample.csv.gz")
    rows = sample[sample["Usage"] == "PrivateTest"]
    return [np.array(p.split(), np.uint8).reshape(48, 48) for p in rows["pixels"]]


def _group(faces: list[np.ndarray]) -> np.ndarray:
    """A 1200×560 photo of several faces: twelve FER2013 faces enlarged to 120–140 px (some at
    the top edge, where the crop leaves the image) beside the astronaut photo."""
    canvas = np.full((560, 1200, 3), 180, np.uint8)
    canvas[-512:, -512:] = cv2.imread(str(SAMPLE / "astronaut.jpg"))
    for k in range(12):
        r, c = divmod(k, 4)
        side = 120 + 10 * ((r + c) % 3)
        face = cv2.resize(faces[k], (side, side), interpolation=cv2.INTER_CUBIC)
        canvas[r * 186 : r * 186 + side, c * 172 : c * 172 + side] = face[..., None]
    return canvas


def _y4m(path: Path, frame: np.ndarray, count: int = 2) -> Path:
    """A raw video Chromium's fake webcam plays (--use-file-for-fake-video-capture)."""
    h, w = frame.shape[:2]
    i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(count):
            f.write(b"FRAME\n" + i420)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("web-inputs")
    faces = _fer_faces()
    paths = {}
    for i, face in enumerate(faces[:N_FER]):
        paths[f"fer{i}"] = folder / f"fer{i}.png"
        cv2.imwrite(str(paths[f"fer{i}"]), face)
    group = _group(faces)
    paths["group"] = folder / "group.png"
    cv2.imwrite(str(paths["group"]), group)
    paths["frame"] = folder / "frame640x480.png"  # a 640×480 webcam-sized frame with faces
    cv2.imwrite(str(paths["frame"]), group[:480, :640])
    paths["photo"] = SAMPLE / "astronaut.jpg"  # a JPEG: decoded by Chromium, not by OpenCV
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    paths["noface"] = folder / "noise.png"
    cv2.imwrite(str(paths["noface"]), cv2.GaussianBlur(noise, (9, 9), 3))
    paths["text"] = folder / "notes.txt"
    paths["text"].write_text("not a picture\n")
    paths["webcam"] = _y4m(folder / "webcam.y4m", group[:480, :640])
    return paths


# --- the reference: python -m fer_utils predict --------------------------------------------
def _predict(files: list[Path], *extra: str, env: dict | None = None) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "fer_utils",
        "predict",
        *map(str, files),
        "--model",
        str(MODEL),
        "--format",
        "json",
        "--tta",
        "none",  # the page classifies each crop once
        *extra,
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _rows(process: subprocess.Popen) -> dict[str, list[dict]]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    by_file: dict[str, list[dict]] = {}
    for row in json.loads(out):
        by_file.setdefault(Path(row["source"]).name, []).append(row)
    return by_file


# --- the page --------------------------------------------------------------------------------
def _load_build():
    spec = importlib.util.spec_from_file_location("web_build", WEB / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Everything at once: predict (three ways, in the background), the build, the server,
    and one browser session over the plan; returns their outputs."""
    fer = [inputs[f"fer{i}"] for i in range(N_FER)]
    detected = [inputs["group"], inputs["frame"], inputs["photo"], inputs["noface"]]
    reference = {
        "none": _predict(fer, "--detector", "none"),
        "haar": _predict(detected),
    }
    build = _load_build()
    dist = build.build(MODEL, tmp_path_factory.mktemp("web") / "dist")
    handler = functools.partial(build.Handler, directory=str(dist))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    steps = [
        *({"id": p.stem, "action": "upload", "file": str(p), "whole": True} for p in fer),
        *({"id": p.stem, "action": "upload", "file": str(p)} for p in detected),
        {"id": "text", "action": "upload", "file": str(inputs["text"])},
        {"id": "benchmark", "action": "benchmark", "file": str(inputs["frame"]), "repeats": 15},
        {
            "id": "benchmark60",
            "action": "benchmark",
            "file": str(inputs["frame"]),
            "repeats": 15,
            "minFace": 60,
        },
        {"id": "webcam", "action": "webcam", "minFrames": 3},
        {
            "id": "screenshot",
            "action": "screenshot",
            "file": str(inputs["photo"]),
            "path": str(dist.parent / "page.png"),
            "width": 1100,
            "height": 880,
        },
    ]
    plan = {
        "url": f"http://127.0.0.1:{server.server_address[1]}/",
        "chromium": CHROMIUM,
        "webcamVideo": str(inputs["webcam"]),
        "timeoutMs": 120_000,
        "steps": steps,
    }
    plan_file = dist.parent / "plan.json"
    plan_file.write_text(json.dumps(plan))
    try:
        done = subprocess.run(
            ["node", str(WEB / "test" / "drive.mjs"), str(plan_file)],
            cwd=WEB,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        server.shutdown()
        server.server_close()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    page = {line["id"]: line for line in lines}
    assert done.returncode == 0 and "_load" in page, done.stderr[-3000:] + done.stdout[-3000:]
    if target := os.environ.get("FER_WEB_SCREENSHOT"):  # e.g. figures/web_demo.png
        _save_small_png(Path(page["screenshot"]["path"]), ROOT / target)
    return {"page": page, "python": {k: _rows(p) for k, p in reference.items()}, "dist": dist}


def _save_small_png(source: Path, target: Path) -> None:
    """The screenshot as a 256-colour PNG (a third of the size) for the README."""
    from PIL import Image

    with Image.open(source) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(target, optimize=True)


def _probs(row: dict) -> np.ndarray:
    return np.array([row[f"p_{e}"] for e in EMOTIONS])


def _pairs(run: dict, reference: str, name: str) -> list[tuple[dict, dict]]:
    """(page face, predict row) for each face of ``name``, after checking they are as many."""
    rows = [r for r in run["python"][reference][name] if r["status"] == "ok"]
    faces = run["page"][Path(name).stem]["result"]["faces"]
    boxes = lambda items: [[f[k] for k in "xywh"] for f in items]  # noqa: E731
    assert len(faces) == len(rows), (name, boxes(faces), boxes(rows))
    return list(zip(faces, rows, strict=True))


def _largest(pairs: list[tuple[dict, dict]]) -> float:
    return max(float(np.abs(np.array(f["probs"]) - _probs(r)).max()) for f, r in pairs)


# --- the checks ------------------------------------------------------------------------------
def test_page_loads_everything_from_its_own_folder(run: dict) -> None:
    session = run["page"]["_session"]
    assert run["page"]["_load"]["state"] == "ready"
    assert session["foreign"] == [], "the page asked for something outside its own origin"
    assert session["errors"] == []
    info = json.loads((run["dist"] / "model-info.json").read_text())
    record = json.loads((ROOT / "results" / f"{info['run_name']}.json").read_text())
    assert info["metrics"]["PrivateTest"] == record["metrics"]["PrivateTest"]


def test_classifier_matches_predict_on_fer2013_faces(run: dict, capsys) -> None:
    pairs = [p for i in range(N_FER) for p in _pairs(run, "none", f"fer{i}.png")]
    assert len(pairs) == N_FER
    for face, row in pairs:
        assert face["label"] == row["label"]
    largest = _largest(pairs)
    with capsys.disabled():
        print(
            f"\n[web] {N_FER} FER2013 faces, whole (--detector none): largest |p_page - "
            f"p_predict| = {largest:.2e}"
        )
    assert largest < EXACT


@pytest.mark.parametrize("name", ["group.png", "frame640x480.png", "astronaut.jpg"])
def test_detected_faces_match_predict(run: dict, name: str, capsys) -> None:
    pairs = _pairs(run, "haar", name)
    for face, row in pairs:  # boxes: the same cascade and the same downscaling
        assert max(abs(face[k] - row[k]) for k in "xywh") <= 2, (face, row)
    same_boxes = all(all(face[k] == row[k] for k in "xywh") for face, row in pairs)
    largest = _largest(pairs)
    boxes = "identical" if same_boxes else "within 2 px"
    with capsys.disabled():
        print(
            f"\n[web] {name}: {_faces(len(pairs))}, boxes {boxes}; largest |p_page - p_predict| "
            f"{largest:.2e}"
        )
    # (astronaut.jpg: Chromium's JPEG decoder gives the pixels OpenCV's libjpeg gives)
    assert largest < EXACT


def test_clear_messages_for_no_face_and_not_an_image(run: dict) -> None:
    noface = run["page"]["noise"]
    assert noface["result"]["status"] == "no_face"
    assert noface["shown"].startswith("No face found in “noise.png”")
    assert run["python"]["haar"]["noise.png"][0]["status"] == "no_face"
    text = run["page"]["text"]
    assert text["result"]["status"] == "not_image"
    assert "is not an image" in text["shown"] and "notes.txt" in text["shown"]
    assert text["barsShown"] == 0


def test_bars_show_the_seven_probabilities(run: dict) -> None:
    group = run["page"]["group"]
    assert group["barsShown"] == 7 * len(group["result"]["faces"]) > 7
    assert Path(run["page"]["screenshot"]["path"]).stat().st_size > 10_000


def test_webcam_frames_are_analysed(run: dict) -> None:
    webcam = run["page"]["webcam"]
    faces = webcam["result"]["faces"]
    assert webcam["result"]["source"] == "webcam" and webcam["frames"] >= 3
    assert (webcam["result"]["width"], webcam["result"]["height"]) == (640, 480)
    # The fake camera passes the frame through YUV 4:2:0, so pixels (and boxes) move a little.
    expected = [[r[k] for k in "xywh"] for r in run["python"]["haar"]["frame640x480.png"]]
    near = [
        f
        for f in faces
        if any(max(abs(f[k] - e[i]) for i, k in enumerate("xywh")) <= 8 for e in expected)
    ]
    assert near, (faces, expected)


def test_latency_is_printed(run: dict, capsys) -> None:
    """A benchmark figure, not a timed assertion: the machine may be busy."""
    with capsys.disabled():
        print(f"\n[web] in-browser latency, headless Chromium {_chromium_version()}:")
        for key in ("benchmark", "benchmark60"):
            b = run["page"][key]["benchmark"]
            print(
                f"[web]   {b['width']}×{b['height']} frame, {_faces(b['faces'])}, smallest face "
                f"{b['min_face']} px: {b['frame_ms']:.1f} ms per frame (detection "
                f"{b['detect_ms']:.1f}, crops {b['crop_ms']:.1f}, model {b['classify_ms']:.1f}); "
                f"model alone on one face {b['model_one_face_ms']:.1f} ms (medians of "
                f"{b['repeats']})"
            )
            assert (b["width"], b["height"]) == (640, 480) and b["faces"] > 0
            assert b["frame_ms"] > 0 and b["model_one_face_ms"] > 0
        print(f"[web]   webcam (fake camera, 640×480): {run['page']['webcam']['timing']}")


def _faces(n: int) -> str:
    return f"{n} face{'' if n == 1 else 's'}"


def _chromium_version() -> str:
    try:
        done = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    words = [w for w in done.stdout.split() if w[:1].isdigit()]
    return words[0] if words else "?"
