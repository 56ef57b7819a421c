"""Build the browser demo into web/dist/ (static files only) and optionally serve it.

    python web/build.py                  # export models/default.keras to ONNX, assemble web/dist/
    python web/build.py --serve          # … then serve it on http://127.0.0.1:8000/
    python web/build.py --serve-only     # serve an existing web/dist/

The build runs `python -m fer_utils export --format onnx` (which checks the export against
Keras), copies the page (web/src/), the Haar cascade that `predict` uses (from this Python's
OpenCV), and the pinned JavaScript runtimes from web/node_modules/ (installed with `npm ci` from
package-lock.json when missing) into dist/, and writes dist/model-info.json from the model's
run record (results/<run>.json): what the page states about accuracy and training comes from
there. dist/ needs no server code: publish it as it is on any static host.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

WEB = Path(__file__).resolve().parent
ROOT = WEB.parent
SRC = WEB / "src"
NODE_MODULES = WEB / "node_modules"
CASCADE = "haarcascade_frontalface_default.xml"
EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
# what the page loads from node_modules: (package, file in the package, name in dist/vendor/)
VENDOR = [
    ("onnxruntime-web", "dist/ort.wasm.min.mjs", "ort.wasm.min.mjs"),
    ("onnxruntime-web", "dist/ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.mjs"),
    ("onnxruntime-web", "dist/ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.wasm"),
    ("@techstark/opencv-js", "dist/opencv.js", "opencv.js"),
    ("@techstark/opencv-js", "LICENSE", "LICENSE.opencv-js"),
]


class BuildError(Exception):
    """A build step that cannot be done; the message says what to do."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_node_modules() -> None:
    """``npm ci`` in web/ when a vendored file is missing (the versions are package-lock.json's)."""
    if all((NODE_MODULES / package / file).is_file() for package, file, _ in VENDOR):
        return
    npm = shutil.which("npm")
    if not npm:
        raise BuildError(
            "web/node_modules is missing and npm is not installed: install Node.js "
            "20+ with npm, then run `npm ci` in web/"
        )
    print("== npm ci (web/node_modules from package-lock.json) ==", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)


def run_name_of(model: Path, run: str | None) -> str:
    """The run whose record describes ``model``: ``run``, else models/default.json's run for a
    ``default.keras``, else the model file's stem (models/<run>.keras)."""
    if run:
        return run
    if model.name == "default.keras":
        choice = model.with_name("default.json")
        if not choice.is_file():
            raise BuildError(f"{choice} is missing: it names the run of {model} (or pass --run)")
        return json.loads(choice.read_text(encoding="utf-8"))["run_name"]
    return model.stem


def model_info(record_file: Path, onnx: Path, difference: str, model: Path) -> dict:
    """What the page states about the model, from its run record."""
    if not record_file.is_file():
        raise BuildError(
            f"no run record {record_file}: pass --run NAME for a model whose record "
            f"is results/NAME.json"
        )
    record = json.loads(record_file.read_text(encoding="utf-8"))
    config = record.get("config") or {}
    rows = record.get("train_rows")
    epochs = record.get("epochs_run") or config.get("epochs")
    trained_on = (
        f"the {rows:,} faces of FER2013's Training split" if rows else "FER2013's Training split"
    )
    details = [
        f"{epochs} epochs" if epochs else None,
        f"augmentation {config['augment']}" if config.get("augment") else None,
        f"profile {record['profile']}" if record.get("profile") else None,
    ]
    details = [d for d in details if d]
    if details:
        trained_on += f" ({', '.join(details)})"
    return {
        "run_name": record["run_name"],
        "architecture": record.get("model", "?"),
        "kind": record.get("kind"),
        "trained_on": trained_on,
        "command": record.get("command"),
        "metrics": {split: record["metrics"][split] for split in ("PublicTest", "PrivateTest")},
        "parameters": record.get("parameters"),
        "emotions": EMOTIONS,
        "input": "grey faces float32 (N, 48, 48, 1) in 0-255",
        "source_model": {
            "file": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else model.name,
            "sha256": sha256(model),
        },
        "onnx": {
            "file": onnx.name,
            "bytes": onnx.stat().st_size,
            "sha256": sha256(onnx),
            "max_difference": difference,
        },
        "built": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def export_onnx(model: Path, out: Path) -> str:
    """``python -m fer_utils export`` to ``out``; returns its check line (difference from Keras)."""
    print(f"== exporting {model} to ONNX (python -m fer_utils export) ==", flush=True)
    command = [
        sys.executable,
        "-m",
        "fer_utils",
        "export",
        "--format",
        "onnx",
        "--model",
        str(model),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"the export failed:\n{done.stderr[-3000:]}{done.stdout[-2000:]}")
    found = re.search(
        r"largest \|difference\| from Keras on (\d+) PrivateTest faces: (\S+)", done.stdout
    )
    if not found:
        raise BuildError(f"the export printed no check line:\n{done.stdout[-2000:]}")
    print(found.group(0), flush=True)
    return f"{found.group(2)} on {found.group(1)} PrivateTest faces"


def cascade_file() -> Path:
    """The Haar cascade `predict` loads: the one inside this Python's OpenCV."""
    import cv2

    path = Path(cv2.data.haarcascades) / CASCADE
    if not path.is_file():
        raise BuildError(f"{path} not found: reinstall opencv-python-headless")
    return path


def build(model: Path, out: Path, run: str | None = None) -> Path:
    """Assemble ``out`` (replaced as a whole) and return it."""
    model = model.resolve()
    if not model.is_file():
        raise BuildError(f"no model {model}")
    record_file = ROOT / "results" / f"{run_name_of(model, run)}.json"
    ensure_node_modules()
    out = out.resolve()
    if out in (WEB, ROOT) or WEB.is_relative_to(out):
        raise BuildError(f"--out {out} would replace the sources: choose a new folder")
    staging = Path(
        tempfile.mkdtemp(prefix=".dist-", dir=out.parent if out.parent.is_dir() else None)
    )
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a published folder is world-readable
        for page in sorted(SRC.iterdir()):
            shutil.copy2(page, staging / page.name)
        (staging / "vendor").mkdir()
        for package, file, name in VENDOR:
            shutil.copy2(NODE_MODULES / package / file, staging / "vendor" / name)
        shutil.copy2(cascade_file(), staging / CASCADE)
        onnx = staging / "model.onnx"
        difference = export_onnx(model, onnx)
        info = model_info(record_file, onnx, difference, model)
        packages = {
            p: json.loads((NODE_MODULES / p / "package.json").read_text("utf-8"))
            for p in sorted({p for p, _, _ in VENDOR})
        }
        info["runtimes"] = {p: meta["version"] for p, meta in packages.items()}
        notice = [
            f"{p} {meta['version']} ({meta.get('license', '?')} licence), from npm"
            for p, meta in packages.items()
        ]
        (staging / "vendor" / "NOTICE.txt").write_text("\n".join(notice) + "\n", "utf-8")
        (staging / "model-info.json").write_text(json.dumps(info, indent=1) + "\n", "utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(
        f"built {out} ({total / 1e6:.1f} MB, of which model.onnx "
        f"{(out / 'model.onnx').stat().st_size / 1e6:.1f} MB)"
    )
    return out


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the types browsers insist on for modules and WebAssembly."""

    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".json": "application/json",
        ".xml": "application/xml",
    }

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith(("4", "5")):  # quiet: failed requests only
            super().log_request(code, size)


def serve(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    if not (folder / "index.html").is_file():
        raise BuildError(f"{folder} holds no built page: run python web/build.py first")
    handler = functools.partial(Handler, directory=str(folder))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        print(f"serving {folder} on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=str(ROOT / "models" / "default.keras"),
        help="the .keras model (default: models/default.keras)",
    )
    parser.add_argument(
        "--run",
        help="its run (results/RUN.json; default: from default.json, else the model's file name)",
    )
    parser.add_argument("--out", default=str(WEB / "dist"), help="default: web/dist")
    parser.add_argument("--serve", action="store_true", help="serve --out after building")
    parser.add_argument("--serve-only", action="store_true", help="serve --out, do not build")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        if not args.serve_only:
            build(Path(args.model), Path(args.out), args.run)
        if args.serve or args.serve_only:
            serve(Path(args.out).resolve(), args.host, args.port)
    except (BuildError, subprocess.CalledProcessError) as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
