"""A saved emotion model (Keras ``.keras``, ONNX or TFLite) behind one call: faces in,
probabilities out."""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_utils.config import EMOTIONS, IMAGE_SIZE, models_dir, project_root
from fer_utils.data import as_batch
from fer_utils.errors import ModelError
from fer_utils.files import atomic_path, atomic_write_text, file_sha256
from fer_utils.runs import DEFAULT_MODEL, default_choice, read_run, trained_run

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """``$FER_MODEL`` if set, else ``models/default.keras`` (in ``$FER_MODELS`` if set)."""
    return Path(os.environ.get("FER_MODEL") or models_dir() / DEFAULT_MODEL)


def set_default_model(runs: list[str], max_megabytes: float = 10.0) -> str:
    """Make the run with the best PublicTest accuracy among ``runs`` and the current default
    the default model: copy its ``models/<run>.keras`` to ``models/default.keras`` and record
    the choice and every candidate's PublicTest accuracy in ``models/default.json``.
    PrivateTest is never read. The current default always competes (without its own model
    file if need be) and, if it stays, keeps its file and its calibration record. Left out,
    with a warning: a model over ``max_megabytes`` (the default is committed); one trained on
    other data than the current default (their PublicTest accuracies do not compare: to start
    over on other data, delete ``models/default.json``); one whose PublicTest recall of some
    emotion is below the current default's beyond noise
    (:func:`~fer_utils.evaluation.recall_gains`: users of one emotion must not lose).
    Both folders are the configured ones (``FER_RESULTS``, ``FER_MODELS``)."""
    previous = default_choice()
    current = previous.get("run_name")
    current_data = _data_of(current)
    if current_data and not (models_dir() / DEFAULT_MODEL).is_file():
        log.warning("%s is missing: the current default %s cannot compete", DEFAULT_MODEL, current)
        current_data = None
    # the current default first: on a tie it stays (with its calibration)
    names = list(dict.fromkeys([*([current] if current_data else []), *runs]))
    public, files = {}, {}
    for name in names:
        run, model = trained_run(name)
        if model.stat().st_size > max_megabytes * 2**20:
            log.warning(
                "%s is over %g MB (the default is committed): left out", model, max_megabytes
            )
            continue
        if current_data and run.data_sha256 != current_data:
            log.warning(
                "%s was trained on other data (sha256 %.12s…) than the current default %s "
                "(%.12s…): left out; to start over on other data, delete %s",
                name, run.data_sha256, current, current_data, models_dir() / "default.json",
            )  # fmt: skip
            continue
        worse = _recall_losses(name, current) if current not in (None, name) else []
        if worse:
            log.warning(
                "%s recognises %s less often than the current default %s beyond noise "
                "(PublicTest recall, 95 %% paired bootstrap): left out",
                name, ", ".join(worse), current,
            )  # fmt: skip
            continue
        public[name], files[name] = run.metrics["PublicTest"]["accuracy"], model
    if not public:
        raise ModelError(f"none of {', '.join(runs)} can be the default (see the warnings above)")
    best = max(public, key=public.get)
    if best == current:  # the file stays, and so does its calibration
        _record_choice(previous | {"candidates": previous.get("candidates", {}) | public})
        return best
    with atomic_path(models_dir() / DEFAULT_MODEL) as temp:
        shutil.copyfile(files[best], temp)
    _record_choice({"run_name": best, "chosen_by": "PublicTest accuracy", "candidates": public})
    return best


def _data_of(run_name: str | None) -> str | None:
    """The data sha256 of ``run_name``'s record; None without a name or a record."""
    try:
        return read_run(run_name).data_sha256 if run_name else None
    except FileNotFoundError:
        return None


def _recall_losses(candidate: str, current: str) -> list[str]:
    """The emotions whose PublicTest recall ``candidate`` has below ``current``'s beyond noise
    (none if either run's PublicTest predictions are not there, or are of other faces)."""
    from fer_utils.evaluation import recall_gains  # here: loading a model needs no scikit-learn
    from fer_utils.runs import read_predictions

    try:
        (labels, new), (others, old) = (
            read_predictions(r)["PublicTest"] for r in (candidate, current)
        )
    except KeyError:
        return []
    if not np.array_equal(labels, others):
        return []
    gains = recall_gains(labels, new.argmax(1), old.argmax(1))
    return list(gains.index[gains.worse])


def _record_choice(choice: dict) -> None:
    """Write ``models/default.json``: ``choice`` and the sha256 of ``default.keras`` now."""
    choice = {**choice, "sha256": file_sha256(models_dir() / DEFAULT_MODEL)}
    atomic_write_text(models_dir() / "default.json", json.dumps(choice, indent=2) + "\n")


def record_default_calibration(record: Path) -> None:
    """After the default model was calibrated in place: ``models/default.json`` gets its new
    sha256 and the path of the calibration record."""
    choice = default_choice()
    try:
        choice["calibration"] = Path(record).resolve().relative_to(project_root()).as_posix()
    except ValueError:  # a record outside the repository (FER_RESULTS elsewhere)
        choice["calibration"] = str(record)
    _record_choice(choice)


@dataclass
class Classifier:
    """``classifier(faces)``: grey faces (N, 48, 48, 1) float32 in 0–255 → (N, 7) softmax."""

    path: Path
    kind: str  # keras | onnx | tflite
    run: Callable[[np.ndarray], np.ndarray]

    def __call__(self, faces: np.ndarray, batch_size: int = 512) -> np.ndarray:
        faces = as_batch(faces)
        if len(faces) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        parts = [self.run(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)]
        return np.concatenate(parts).astype(np.float32)


def _check_shapes(path: Path, inputs: tuple, outputs: tuple) -> None:
    expected_in = (IMAGE_SIZE, IMAGE_SIZE, 1)
    if tuple(inputs[1:]) != expected_in or outputs[-1] != len(EMOTIONS):
        raise ModelError(
            f"{path}: takes inputs {tuple(inputs)} and gives outputs {tuple(outputs)}; an emotion "
            f"model takes grey faces (N, 48, 48, 1) and gives 7 probabilities. Pass a model "
            f"trained by this project (python -m fer_utils train) or exported from one."
        )


def _load_keras(path: Path) -> Classifier:
    import keras

    import fer_utils.layers  # registers Temperature, FaceView, EnsemblePool for loading
    import fer_utils.models  # noqa: F401  (registers the project's layers for loading)

    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path} is not a Keras model file (a .keras file is a zip archive; this one is "
            f"truncated or something else). Download or export it again."
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for broken archives; report them as one
        raise ModelError(
            f"{path} could not be loaded as a Keras model ({type(error).__name__}: {error}). "
            f"Re-save it with model.save('model.keras') from Keras 3."
        ) from error
    _check_shapes(path, model.input_shape, model.output_shape)
    return Classifier(path, "keras", lambda x: np.asarray(model.predict_on_batch(x)))


def _load_onnx(path: Path) -> Classifier:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Idle worker threads would otherwise spin-wait after each call and take the cores from
    # the face detector between frames (bench_inference.py: frame latency, detect + classify).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's errors are pybind types without a common base
        raise ModelError(
            f"{path} could not be loaded as an ONNX model ({error}). Export it again with "
            f"python -m fer_utils export."
        ) from error
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    _check_shapes(path, tuple(inp.shape), tuple(out.shape))
    return Classifier(path, "onnx", lambda x: session.run([out.name], {inp.name: x})[0])


def _load_tflite(path: Path) -> Classifier:
    import tensorflow as tf

    try:
        interpreter = tf.lite.Interpreter(model_path=str(path))
    except Exception as error:  # the interpreter raises bare ValueError/RuntimeError
        raise ModelError(f"{path} could not be loaded as a TFLite model ({error}).") from error
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    _check_shapes(path, tuple(inp["shape"]), tuple(out["shape"]))

    def run(faces: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(inp["index"], faces.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], faces)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return Classifier(path, "tflite", run)


def load_classifier(path: str | Path | None = None) -> Classifier:
    """Load ``path`` (``.keras``, ``.onnx`` or ``.tflite``; default
    :func:`default_model_path`), checking that it is an emotion model. Keras files load in
    safe mode (no arbitrary code)."""
    given = path
    path = Path(path) if path else default_model_path()
    if not path.is_file():
        named_by = " (named by $FER_MODEL)" if not given and os.environ.get("FER_MODEL") else ""
        what = (
            f"{path}{named_by} is a folder, not a model file"
            if path.is_dir()
            else f"model file not found: {path}{named_by}"
        )
        raise ModelError(
            f"{what}. Use the committed models/default.keras, train one with python -m "
            "fer_utils train, or pass --model FILE."
        )
    loaders = {".keras": _load_keras, ".onnx": _load_onnx, ".tflite": _load_tflite}
    if path.suffix.lower() not in loaders:
        raise ModelError(f"{path}: a model must be a .keras, .onnx or .tflite file")
    return loaders[path.suffix.lower()](path)
