"""Export a saved Keras model for deployment: ONNX (onnxruntime) and, where this TensorFlow
supports it, TFLite / LiteRT; and check that the export computes what the Keras model does.

An ensemble record (``results/<name>.json``, kind ``ensemble``) becomes one self-contained
Keras model too (:func:`export_ensemble`): raw faces in, every member's model inside (members
evaluated with test-time augmentation average their views inside the graph), pooled as the
record pools them (its layers are in :mod:`fer_utils.layers`).
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path

import keras
import numpy as np

from fer_utils.calibration import uncalibrated
from fer_utils.config import IMAGE_SIZE, models_dir
from fer_utils.ensemble import SELECTION_SPLIT, STALE, load_member_models
from fer_utils.errors import UsageError
from fer_utils.inference.classifier import Classifier, ModelError, load_classifier
from fer_utils.layers import POOLS, TAPS, EnsemblePool, FaceView
from fer_utils.runs import Run, read_predictions, read_run, trainer_record
from fer_utils.tta import TTA, TTA_SETS, tta_views

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}


def format_of(out: str | Path | None) -> str:
    """The export format an ``--out`` name asks for by its suffix (:data:`FORMATS`); onnx by
    default."""
    by_suffix = {suffix: fmt for fmt, suffix in FORMATS.items()}
    return by_suffix.get(Path(out).suffix.lower(), "onnx") if out else "onnx"


def export_model(model_path: str | Path, out: str | Path | None = None, fmt: str = "onnx") -> Path:
    """Write ``model_path`` (a ``.keras`` file) as ``fmt`` via Keras' own ``model.export``
    (tf2onnx for ONNX); ``out`` defaults to the same name with the format's suffix."""
    from fer_utils.models import IlluminationCorrection, flat_layers

    model_path = Path(model_path)
    out = Path(out) if out else model_path.with_suffix(FORMATS[fmt])
    if out.is_dir() or out.suffix.lower() != FORMATS[fmt]:  # before the conversion, not after
        raise UsageError(f"--out {out}: a {fmt} model is a file whose name ends in {FORMATS[fmt]}")
    model = keras.saving.load_model(model_path, safe_mode=True)
    inner = flat_layers(model)
    mixed = sorted({la.dtype_policy.name for la in inner} - {"float32"})
    if model.dtype_policy.name != "float32" or mixed:  # export needs float32 weights, compute
        policy = mixed[0] if mixed else model.dtype_policy.name
        raise ModelError(f"{model_path}: export needs a float32 model, not {policy}")
    corrections = [la.name for la in inner if isinstance(la, IlluminationCorrection)]
    if corrections:
        raise ModelError(
            f"{model_path}: {corrections[0]} runs the illumination correction's OpenCV / "
            f"scikit-image code inside the model (tf.numpy_function), which {fmt} cannot "
            f"express; use the .keras file"
        )
    model(np.zeros((1, *model.input_shape[1:]), np.float32))  # export needs a called model
    try:
        model.export(str(out), format=fmt, verbose=False)
    except ImportError as error:
        raise ModelError(f"exporting to {fmt} needs an extra package: {error}") from error
    return out


def max_difference(a: Classifier, b: Classifier | str | Path, faces: np.ndarray) -> float:
    """Largest absolute difference between two models' probabilities on ``faces``."""
    b = b if isinstance(b, Classifier) else load_classifier(b)
    return float(np.abs(a(faces) - b(faces)).max())


# --- ensembles as one model ---------------------------------------------------------------
@functools.cache
def view_maps(tta: TTA) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Each view of ``tta`` as the resampling it is: per output pixel, the indices of at most
    :data:`TAPS` input pixels and their weights (:class:`FaceView`'s). Read off
    :func:`fer_utils.tta.tta_views` itself, applied to every one-pixel image (on float faces it
    is linear), so the views are those :func:`fer_utils.evaluation.predict` averages."""
    pixels = IMAGE_SIZE * IMAGE_SIZE
    basis = np.eye(pixels, dtype=np.float32).reshape(pixels, IMAGE_SIZE, IMAGE_SIZE, 1)
    maps = []
    for number, view in enumerate(tta_views(basis, tta)):
        source, target = np.nonzero(view.reshape(pixels, pixels))  # row: the lit input pixel
        weight = view.reshape(pixels, pixels)[source, target]
        order = np.argsort(target, kind="stable")
        source, target, weight = source[order], target[order], weight[order]
        counts = np.bincount(target, minlength=pixels)
        if counts.max() > TAPS:
            raise ModelError(
                f"view {number} of the TTA set {tta} reads {counts.max()} input pixels for one "
                f"output pixel; a model can hold views of at most {TAPS}"
            )
        slot = np.arange(len(target)) - np.repeat(np.cumsum(counts) - counts, counts)
        index, weights = np.zeros((pixels, TAPS), np.int32), np.zeros((pixels, TAPS), np.float32)
        index[target, slot], weights[target, slot] = source, weight
        maps.append((index, weights))
    return tuple(maps)


def _name(text: str) -> str:
    """``text`` as a layer name (letters, digits and underscores)."""
    return re.sub(r"\W", "_", text)


def _ensemble_record(record_name: str) -> Run:
    try:
        record = read_run(record_name)
    except FileNotFoundError:
        raise ModelError(
            f"no results/{record_name}.json: fit the ensemble first (python -m fer_utils "
            f"ensemble RUN... --name {record_name})"
        ) from None
    if record.kind != "ensemble":
        raise ModelError(
            f"{record_name} is a record of kind {record.kind!r}, not an ensemble: export its "
            f"model with --model"
        )
    pool = record.details.get("pool", "linear")  # (records from before log pooling: linear)
    if pool not in POOLS:
        raise ModelError(
            f"{record_name}: its pool {pool!r} has no layer (only {', '.join(POOLS)}): it "
            f"cannot be built into one model"
        )
    return record


def _member_runs(record: Run) -> dict[str, Run]:
    """The record's members' runs, each one a trained model or its TTA evaluation with a
    known set; else a :class:`ModelError` that says which member and why (missing model
    files are :func:`~fer_utils.ensemble.load_member_models`' to name)."""
    runs = {}
    for name in record.details["members"]:
        try:
            runs[name] = read_run(name)
        except FileNotFoundError:
            raise ModelError(
                f"{record.run_name}: its member {name} has no results/{name}.json: retrain it "
                f"or fit the ensemble again (`{record.command}`)"
            ) from None
        run = runs[name]
        if run.kind not in ("trained", "tta"):
            raise ModelError(
                f"{record.run_name}: its member {name} is a record of kind {run.kind!r}; only "
                f"trained models and their TTA evaluations can be built into one model"
            )
        if run.tta and run.tta not in TTA_SETS:
            raise ModelError(
                f"{record.run_name}: its member {name} averages the TTA set {run.tta!r}, which "
                f"this version does not define ({', '.join(TTA_SETS)})"
            )
    return runs


def ensemble_model(record_name: str) -> keras.Model:
    """The ensemble record ``record_name`` as one Keras model (see :func:`export_ensemble`)."""
    record = _ensemble_record(record_name)
    runs = _member_runs(record)
    # by trainer, each loaded once; the record pooled its members' probabilities before any
    # calibration, so a member's model calibrated since (e.g. the default) loses its temperature
    loaded = {t: uncalibrated(m)[0] for t, m in load_member_models(list(runs)).items()}
    faces = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="faces")
    # the same architecture's models share a name: each gets its trainer's, inside the graph
    nets = {t: keras.Model(m.input, m.output, name=_name(t)) for t, m in loaded.items()}
    views: dict[str, list] = {}  # TTA set → its views of the faces, shared by its members
    members = []
    for name, run in runs.items():
        net = nets[run.trainer]
        if not run.tta:
            members.append(net(faces))
            continue
        if run.tta not in views:
            views[run.tta] = []
            for number, (index, weight) in enumerate(view_maps(TTA_SETS[run.tta])):
                layer = FaceView(name=f"{_name(run.tta)}_view{number}")
                views[run.tta].append(layer(faces))
                layer.set_weights([index, weight])
        outputs = [net(view) for view in views[run.tta]]
        average = keras.layers.Average(name=f"{_name(name)}_mean")
        members.append(average(outputs) if len(outputs) > 1 else outputs[0])
    weights = list(record.details["members"].values())
    pool = record.details.get("pool", "linear")
    pooled = EnsemblePool(weights, pool, name="ensemble")(members)
    return keras.Model(faces, pooled, name=_name(record_name))


def export_ensemble(record_name: str, out: str | Path | None = None) -> Path:
    """Build the ensemble record ``results/<record_name>.json`` into one self-contained Keras
    model and save it (default ``models/<record_name>.keras``): raw faces in; every member's
    model inside, members evaluated with a TTA set averaging its views (:class:`FaceView`);
    pooled with the record's weights (:class:`EnsemblePool`). :func:`export_model` exports it.
    Missing member models are one :class:`ModelError` naming them and their commands."""
    from fer_utils.models import save_for_inference

    model = ensemble_model(record_name)
    out = Path(out) if out else models_dir() / f"{record_name}.keras"
    save_for_inference(model, out)
    return out


def record_faces(record_name: str, dataset) -> np.ndarray | None:
    """The faces of ``dataset`` (a full FER2013 :class:`~fer_utils.data.Dataset`) whose
    PublicTest probabilities the record stores: its profile's subset (members' seed), or None
    when their labels are not the record's (other data)."""
    from fer_utils.experiment import profile_data

    record = read_run(record_name)
    first = read_run(next(iter(record.details["members"])))
    seed = int(trainer_record(first).config.get("seed", 0))
    faces = profile_data(dataset, record.profile, seed).split(SELECTION_SPLIT)
    stored = read_predictions(record_name).get(SELECTION_SPLIT)
    return faces.images if stored and np.array_equal(faces.labels, stored[0]) else None


def check_ensemble(model: Classifier, record_name: str, faces: np.ndarray) -> tuple[float, float]:
    """The largest |difference| between ``model``'s probabilities on the record's PublicTest
    ``faces`` (:func:`record_faces`) and the probabilities the record stores, and the faces
    per second it took; a :class:`ModelError` above :data:`fer_utils.ensemble.STALE`."""
    model(faces[:1])  # the first call builds the graph: not part of the speed
    start = time.perf_counter()
    probabilities = model(faces)
    speed = len(faces) / (time.perf_counter() - start)
    stored = read_predictions(record_name)[SELECTION_SPLIT][1]
    difference = float(np.abs(probabilities - stored).max())
    if difference > STALE:
        raise ModelError(
            f"{model.path} differs from the record {record_name}'s PublicTest probabilities by "
            f"{difference:.2e} (> {STALE:g}): a member was retrained after the ensemble was "
            f"fitted; fit it again (`{read_run(record_name).command}`)"
        )
    return difference, speed
