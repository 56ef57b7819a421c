"""The command line: ``python -m fer_utils <command> --help`` (also installed as ``fer``)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fer_utils.config import PROFILES, get_profile, project_root
from fer_utils.data import DataError, find_data, load_fer2013
from fer_utils.errors import FerError, UsageError, report, require_choice
from fer_utils.inference import ModelError
from fer_utils.inference.faces import DETECTORS
from fer_utils.inference.predict import TTA_CHOICES
from fer_utils.settings import PretrainConfig, TrainConfig, add_config_arguments, config_from_args
from fer_utils.tta import TTA_SETS

RESUMABLE = {  # commands whose interrupted runs resume, and how
    "train": "run the same command again to resume",
    "pretrain": "run the same command again to resume",
    "predict": "--out keeps the rows of every finished input: add --resume to continue",
}
"""What the interrupted command says about resuming (predict only when it writes --out)."""
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM)
SAMPLE_CSV = project_root() / "data" / "sample" / "fer2013_sample.csv.gz"


Arguments = Callable[[argparse.ArgumentParser], None]
COMMANDS: dict[str, tuple[str, Arguments, Callable[[argparse.Namespace], None]]] = {}
"""Each command's help, the function that adds its arguments, and its handler, in the order
``--help`` lists them (:func:`command` fills it; :func:`build_parser` reads it)."""


def command(name: str, help: str, arguments: Arguments = lambda parser: None) -> Callable:
    """Register the decorated handler as the command ``name``, with its ``arguments``."""

    def register(handler: Callable[[argparse.Namespace], int | None]) -> Callable:
        COMMANDS[name] = (help, arguments, handler)
        return handler

    return register


def has_data() -> bool:
    """Whether FER2013 is found the usual way ($FER2013_PATH, then data/)."""
    try:
        find_data()
    except DataError:
        return False
    return True


def non_negative_float(text: str) -> float:
    """An argparse type: a number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # (NaN too)
        raise argparse.ArgumentTypeError(f"a number of at least 0 is needed, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1 is needed, not {text!r}")
    return int(text)


def above_one(text: str) -> float:
    """An argparse type: a number > 1 (a ratio between sizes)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 1:
        raise argparse.ArgumentTypeError(f"a number above 1 is needed, not {text!r}")
    return value


def _add_run_args(parser: argparse.ArgumentParser, default_name: str) -> None:
    """What a training command takes beside its config: profile, run name, threads, and the
    config file and overrides (``--config``, ``--set``)."""
    parser.add_argument(
        "--profile",
        default="quick",
        choices=list(PROFILES),
        help="data and budgets (config.PROFILES)",
    )
    parser.add_argument("--run-name", help=f"default: {default_name}")
    parser.add_argument(
        "--threads", type=positive_int, help="intra-op threads (default: all cores)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings from a JSON file: a config object (e.g. recipes/*.json) or a results "
        "record (its config); options given on the command line win",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="one setting, e.g. plateau_factor=0.75 (repeatable)",
    )


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="FER2013 file or folder (default: $FER2013_PATH, then data/)"
    )
    parser.add_argument("--ferplus", help="fer2013new.csv (default: beside the data, or data/)")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="exclude malformed rows / unreadable images (they are counted) instead of stopping",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the parsed-data cache ($FER_CACHE): parse the data afresh",
    )


def _load(args: argparse.Namespace):
    return load_fer2013(
        args.data,
        ferplus=args.ferplus or True,
        errors="skip" if args.skip_bad_rows else "raise",
        cache=not args.no_cache,
    )


def _profile_data(args: argparse.Namespace, seed: int):
    """The data ``--profile`` trains on; says so when that is the quick profile's subset."""
    from fer_utils.experiment import profile_data

    dataset = profile_data(_load(args), args.profile, seed)
    if get_profile(args.profile).smoke:
        logging.warning(
            "profile quick: a stratified subset of %d faces, for smoke runs; "
            "--profile cpu trains on all the data",
            len(dataset),
        )
    return dataset


def _download_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        default="csv",
        choices=["csv", "challenge", "images"],
        help="csv: deadskull7/fer2013 (default); challenge: the competition files; "
        "images: msambare/fer2013 image folders",
    )
    p.add_argument("--dest", help="folder to download into (default: data/)")
    p.add_argument("--no-ferplus", dest="ferplus", action="store_false", help="skip FER+")
    p.add_argument("--force", action="store_true", help="download again even if present")


@command("download", "download FER2013 (Kaggle API) and FER+ into data/", _download_args)
def cmd_download(args: argparse.Namespace) -> None:
    from fer_utils.data.download import download_fer2013, download_ferplus

    dest = Path(args.dest) if args.dest else None
    if dest and dest.exists() and not dest.is_dir():
        raise UsageError(f"--dest {dest} is a file: give a folder to download into")
    print(f"FER2013: {download_fer2013(dest, args.source, args.force)}")
    if args.ferplus:
        print(f"FER+:    {download_ferplus(dest, args.force)}")


@command("info", "load the data and print split and class counts", _add_data_args)
def cmd_info(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    dataset = _load(args)
    seconds = time.perf_counter() - start
    print(f"source  {dataset.source}\nsha256  {dataset.sha256}")
    print(f"rows    {len(dataset)}, loaded in {seconds:.2f} s")
    print(f"FER+    {'attached' if dataset.ferplus is not None else 'not found'}\n")
    print(dataset.counts().to_string())
    for reason, count in dataset.report.items():
        print(f"note: {reason}: {count}")


@command("clean", "report blanks, duplicates, leakage, FER+ non-faces", _add_data_args)
def cmd_clean(args: argparse.Namespace) -> None:
    from fer_utils.cleaning import clean, find_issues

    dataset = _load(args)
    report = find_issues(dataset)
    print("Findings (images flagged, per split):")
    print(report.summary(dataset).to_string())
    _, removed = clean(dataset, report)
    print("\nCleaning the Training split removes:")
    print(removed.to_string())


def _sample_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument(
        "--out",
        default=str(project_root() / "data" / "sample"),
        help="folder to write into (default: data/sample/, the committed sample, replaced)",
    )
    p.add_argument("--train-per-class", type=positive_int, default=24, help="Training faces")
    p.add_argument(
        "--eval-per-class", type=positive_int, default=8, help="PublicTest and PrivateTest faces"
    )
    p.add_argument("--seed", type=int, default=0)


@command("sample", "write a small stratified sample in the original formats", _sample_args)
def cmd_sample(args: argparse.Namespace) -> None:
    from fer_utils.data.sample import write_sample

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file: give a folder for the sample")
    paths = write_sample(
        _load(args), Path(args.out), args.train_per_class, args.eval_per_class, args.seed
    )
    for path in filter(None, paths):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def _train_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    _add_run_args(p, "<model>-<profile>-s<seed>")
    add_config_arguments(p, TrainConfig)
    p.add_argument(
        "--ferplus-soft",
        dest="soft_targets",
        action="store_const",
        const="ferplus",
        help="train on FER+ vote distributions (= --soft-targets ferplus)",
    )
    p.add_argument(
        "--tta",
        choices=list(TTA_SETS),
        help="test-time augmentation of the -tta record (default: the profile's; quick flip, "
        "cpu and full shifts; affine: 90 views)",
    )
    p.add_argument("--no-tta", action="store_true", help="skip the test-time-augmented evaluation")


@command("train", "train a registered model; writes models/ and results/", _train_args)
def cmd_train(args: argparse.Namespace) -> None:
    from fer_utils.devices import set_threads
    from fer_utils.experiment import check_outputs, run_experiment
    from fer_utils.models import check_init, check_model
    from fer_utils.runs import command_line

    set_threads(args.threads)  # before check_init's model starts TensorFlow's thread pools
    profile = get_profile(args.profile)
    config = config_from_args(
        TrainConfig, args, {"epochs": profile.epochs, "batch_size": profile.batch_size}
    )
    check_model(config.model, config.model_kwargs)
    if args.no_tta and args.tta:
        raise UsageError("--no-tta and --tta: give one of them")
    if args.focal_gamma is not None and config.loss != "focal":
        raise UsageError("--focal-gamma shapes the focal loss: add --loss focal, or leave it out")
    if config.init:
        check_init(config.init, config.model, config.correction, **config.model_kwargs)
    run_name = args.run_name or f"{config.model}-{args.profile}-s{config.seed}"
    check_outputs(run_name)  # before the data is loaded, not after hours of training
    dataset = _profile_data(args, config.seed)
    tta = None if args.no_tta else args.tta or profile.tta
    done = run_experiment(config, run_name, dataset, args.profile, command_line(), tta=tta)
    for run in done.records.values():
        _print_record(run)
    print(f"model: {done.model_path}")


def _print_record(run) -> None:
    public, private = run.metrics["PublicTest"], run.metrics["PrivateTest"]
    print(
        f"{run.run_name}: PublicTest accuracy {public['accuracy']:.4f}; PrivateTest accuracy "
        f"{private['accuracy']:.4f}, balanced {private['balanced_accuracy']:.4f}, "
        f"macro-F1 {private['macro_f1']:.4f}"
    )


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="runs with models/<RUN>.keras")
    p.add_argument(
        "--tta",
        default="affine",
        choices=list(TTA_SETS),
        help="writes results/<RUN>-tta-<set>.json (shifts: <RUN>-tta.json)",
    )
    p.add_argument("--threads", type=positive_int, help="intra-op threads (default: all cores)")
    _add_data_args(p)


@command(
    "evaluate",
    "evaluate finished runs' models again with a test-time augmentation set",
    _evaluate_args,
)
def cmd_evaluate(args: argparse.Namespace) -> None:
    from fer_utils.devices import set_threads
    from fer_utils.experiment import evaluate_saved
    from fer_utils.runs import command_line, trained_run

    for run in args.runs:  # every name checked before the data is loaded
        trained_run(run)
    set_threads(args.threads)
    dataset = _load(args)
    for run in args.runs:
        _print_record(evaluate_saved(run, dataset, args.tta, command_line()))


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    _add_run_args(p, "simclr-<model>-<profile>")
    add_config_arguments(p, PretrainConfig)


@command("pretrain", "SimCLR pretraining on the Training faces, no labels", _pretrain_args)
def cmd_pretrain(args: argparse.Namespace) -> None:
    from fer_utils.devices import set_threads
    from fer_utils.experiment import check_outputs, run_pretraining
    from fer_utils.models import check_model
    from fer_utils.runs import command_line

    budget = get_profile(args.profile).simclr
    config = config_from_args(
        PretrainConfig, args, {"epochs": budget.epochs, "batch_size": budget.batch_size}
    )
    check_model(config.model, config.model_kwargs)
    run_name = args.run_name or f"simclr-{config.model}-{args.profile}"
    check_outputs(run_name)
    set_threads(args.threads)
    dataset = _profile_data(args, config.seed)
    path = run_pretraining(config, run_name, dataset, args.profile, command_line())
    print(f"pretrained model: {path} (use it with train --init {path})")


def _ensemble_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names with results/predictions")
    p.add_argument(
        "--method",
        default="greedy",
        help="a fitting method of fer_utils.ensemble.METHODS (greedy, …), or cv: whichever "
        "of them cross-validates best within PublicTest",
    )
    p.add_argument("--name", default="ensemble", help="run name of the ensemble's results")
    p.add_argument("--teacher-out", help="also write its Training probabilities (for --teacher)")
    _add_data_args(p)


@command("ensemble", "soft-voting ensemble of trained runs, chosen on PublicTest", _ensemble_args)
def cmd_ensemble(args: argparse.Namespace) -> None:
    from fer_utils import ensemble as ens
    from fer_utils.runs import command_line

    require_choice("--method", args.method, (*ens.METHODS, "cv"))
    validation = ens.load_split(args.runs, ens.SELECTION_SPLIT)
    candidates = tuple(ens.METHODS) if args.method == "cv" else (args.method,)
    chosen, scores = ens.cross_validated(validation, candidates)
    print(
        "5-fold cross-validated accuracy within PublicTest:",
        {k: round(v, 4) for k, v in scores.items()},
    )
    models = ens.load_member_models(chosen.names) if args.teacher_out else {}  # fail early
    record = ens.record_ensemble(
        chosen, args.name, validation, command_line(), max(scores.values())
    )
    print(f"{args.name}: members {chosen.describe()}")
    for split, values in record.metrics.items():
        print(
            f"  {split:<11} accuracy {values['accuracy']:.4f}  balanced "
            f"{values['balanced_accuracy']:.4f}  macro-F1 {values['macro_f1']:.4f}"
        )
    if args.teacher_out:
        train = _load(args).split("Training")
        path = ens.write_teacher(chosen, models, train, Path(args.teacher_out))
        print(f"teacher targets for {len(train)} Training faces: {path}")


def _views_per_set() -> str:
    """``shifts: 10 views, …``: how many views each TTA set classifies per face."""
    return ", ".join(f"{name}: {len(tta)} views" for name, tta in TTA_SETS.items())


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image, folder (recursive), video, or webcam index (0, 1, ...)",
    )
    p.add_argument(
        "--model",
        help="a .keras / .onnx / .tflite model (default: models/default.keras); an .onnx "
        "model (python -m fer_utils export) starts fastest: TensorFlow is not imported",
    )
    p.add_argument(
        "--detector",
        default="haar",
        choices=DETECTORS,
        help="haar: fast; mtcnn: finds more faces; none: the inputs are face crops",
    )
    p.add_argument(
        "--margin", type=non_negative_float, default=None,
        help="crop the box's square widened by this fraction on each side (default: the "
        "detector's crop geometry measured on FER2013, faces.CROP_GEOMETRY)",
    )  # fmt: skip
    p.add_argument(
        "--min-face", type=positive_int, default=30, help="smallest face to detect, pixels"
    )
    p.add_argument(
        "--step",
        type=above_one,
        default=1.2,
        help="haar: ratio between face sizes searched (1.3: faster, may miss some faces)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        metavar="SCORE",
        help="leave out faces whose detector score (the detector_score column) is below SCORE",
    )
    p.add_argument(
        "--largest",
        action="store_true",
        help="keep only the largest face of each image or frame",
    )
    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        help="test-time augmentation: the probabilities are averaged over these views of each "
        f"face crop ({_views_per_set()}; fer_utils/tta.py). Default: "
        "shifts on images, none on videos and webcams (every view adds to the time per frame); "
        "what each set scores with the default model is in the README, its cost per face in "
        "benchmarks/bench_inference.py",
    )
    p.add_argument("--every", type=positive_int, default=1, help="videos: use every N-th frame")
    p.add_argument(
        "--max-frames", type=positive_int, help="videos and webcams: stop after N frames"
    )
    p.add_argument("--format", default="csv", choices=["csv", "json", "jsonl"])
    p.add_argument(
        "--out",
        help="write the rows to this file, atomically, once all are done (interrupted, it keeps "
        "the rows of every finished input); one predict at a time per file (it holds "
        "OUT.lock) (default: standard output, as they come)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --out and predict only the inputs they do not name",
    )
    p.add_argument("--annotate", metavar="FOLDER", help="write annotated images / videos here")


@command("predict", "emotions of the faces in images, folders, videos, webcams", _predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    """Predict on ``args.paths``; ``--out`` and ``--annotate`` are checked before any work, and
    ``--out`` is written atomically while holding ``<out>.lock`` (one writer at a time). Ctrl-C
    leaves ``--out`` with the rows of every finished input, which ``--resume`` keeps. Exit
    status 1 when any input could not be used (its row says why)."""
    import contextlib

    from fer_utils.files import writable_folder
    from fer_utils.inference import load_classifier, predict_sources
    from fer_utils.inference.predict import NOT_ANNOTATED, STATUSES, output_lock, read_rows

    if args.resume and not args.out:
        raise UsageError("--resume continues the rows of --out: give --out FILE too")
    if args.detector == "none" and args.margin is not None:
        raise UsageError("--margin widens a detected box; --detector none takes each image as "
                         "the face: leave one of them out")  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.out:
            stack.enter_context(output_lock(args.out))
        if args.annotate:
            if Path(args.annotate).is_file():
                raise UsageError(f"--annotate {args.annotate} is a file: give a folder")
            writable_folder(args.annotate, "--annotate")
        # --resume keeps the rows of the inputs that were used; one that failed is tried again
        kept = read_rows(args.out, args.format) if args.resume else []
        earlier = [row for row in kept if row["status"] != "error"]
        finished = _Finished()
        classifier = load_classifier(args.model)
        rows = predict_sources(
            args.paths,
            classifier,
            args.detector,
            args.margin,
            args.min_face,
            args.step,
            args.every,
            args.max_frames,
            args.annotate,
            tta=args.tta,
            min_score=args.min_score,
            largest=args.largest,
            done=frozenset(row["source"] for row in earlier),
            finished=finished,
        )
        counts = _write_predictions(earlier, rows, finished, args)
    others = sorted(set(counts) - {*STATUSES, NOT_ANNOTATED})
    summary = ", ".join(f"{counts.get(status, 0)} {status}" for status in (*STATUSES, *others))
    if earlier:
        summary += f" ({len(earlier)} rows kept from --out)"
    if args.annotate:
        summary += f"; {counts.get(NOT_ANNOTATED, 0)} annotated copies not written"
    print(f"{classifier.path.name}: {summary}", file=sys.stderr)
    return 1 if counts.get("error") else 0


class _Finished:
    """``predict_sources``' ``finished`` callback while ``--out`` is written: each input that
    finishes checkpoints the file (:meth:`RowWriter.checkpoint`), and is counted."""

    def __init__(self) -> None:
        self.writer, self.count = None, 0

    def __call__(self, source: str) -> None:
        self.count += 1
        if self.writer:
            self.writer.checkpoint()


def _write_predictions(
    earlier: list[dict], rows: Iterable[dict], finished: _Finished, args: argparse.Namespace
) -> dict:
    """``earlier`` (rows kept by --resume) and then ``rows`` to --out (atomically) or to
    standard output; the counts of their statuses. When Ctrl-C stops it, --out ends at the
    last input that finished (the one in progress is left for --resume) and the interruption
    goes on; if none finished in this run, --out is left as it was."""
    from fer_utils.files import atomic_path
    from fer_utils.inference.predict import RowWriter, write_rows

    if not args.out:
        return write_rows(rows, sys.stdout, args.format)
    interrupted = False
    try:  # a crash or a full disk leaves the --out file as it was
        with atomic_path(args.out) as temp, open(temp, "w", newline="", encoding="utf-8") as out:
            writer = finished.writer = RowWriter(out, args.format)
            for row in earlier:
                writer.write(row)
            writer.checkpoint()
            try:
                for row in rows:
                    writer.write(row)
            except KeyboardInterrupt:
                if not finished.count:
                    raise  # nothing new to keep: the temporary file goes, --out stays
                writer.rewind()
                interrupted = True
            counts = writer.close()
            os.fsync(out.fileno())
    except OSError as error:
        raise UsageError(
            f"could not write --out {args.out} ({error.strerror or error}); it is left as it "
            "was: free some space or choose another --out"
        ) from None
    if interrupted:
        raise KeyboardInterrupt
    return counts


def _test_faces(data: str | None) -> np.ndarray:
    """PrivateTest faces of ``data`` (or of the found data; else of the bundled sample)."""
    if data is None and not has_data():
        print("no FER2013 data found: checking on the bundled sample", file=sys.stderr)
        data = str(SAMPLE_CSV)
    return load_fer2013(data).split("PrivateTest").images


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a .keras model (default: models/default.keras or $FER_MODEL)")
    p.add_argument(
        "--format",
        choices=["onnx", "litert"],
        help="default: as --out's suffix says (.onnx, .tflite), else onnx; with --ensemble, "
        "none: the ensemble's .keras model only",
    )
    p.add_argument(
        "--ensemble",
        metavar="RECORD",
        help="build the ensemble record results/RECORD.json into one model, models/RECORD.keras "
        "(its members' models are needed), checked against the record's PublicTest "
        "probabilities; with --format also exported",
    )
    p.add_argument("--out", help="default: the model's name with .onnx / .tflite")
    p.add_argument("--data", help="FER2013 for the check (default: $FER2013_PATH, data/, sample)")


def _export_checked(keras_model, out: str | None, fmt: str, data: str | None) -> None:
    """Export ``keras_model`` (a Classifier) as ``fmt`` and check it on PrivateTest faces."""
    from fer_utils.inference.export import export_model, max_difference

    out = export_model(keras_model.path, out, fmt)
    print(f"{fmt}: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    faces = _test_faces(data)
    difference = max_difference(keras_model, out, faces)
    print(f"largest |difference| from Keras on {len(faces)} PrivateTest faces: {difference:.2e}")
    if difference > 1e-4:
        raise ModelError(f"{out} differs from the Keras model by {difference:.2e} (> 1e-4)")


def _export_ensemble(args: argparse.Namespace) -> None:
    """``export --ensemble RECORD``: build, report size, check against the record, export."""
    from fer_utils.ensemble import STALE
    from fer_utils.inference import load_classifier
    from fer_utils.inference.export import check_ensemble, export_ensemble, record_faces

    path = export_ensemble(args.ensemble, None if args.format else args.out)
    print(f"{args.ensemble}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    model = load_classifier(path)
    faces = None
    if args.data or has_data():
        faces = record_faces(args.ensemble, load_fer2013(args.data))
    if faces is None:
        print(
            f"not checked against results/predictions/{args.ensemble}.npz: no FER2013 data "
            "with its PublicTest faces (--data, $FER2013_PATH, data/)",
            file=sys.stderr,
        )
    else:
        difference, speed = check_ensemble(model, args.ensemble, faces)
        print(
            f"{len(faces)} PublicTest faces at {speed:.0f} faces/s; largest |difference| from "
            f"the record's probabilities: {difference:.2e} (tolerance {STALE:g})"
        )
    if args.format:
        _export_checked(model, args.out, args.format, args.data)


@command(
    "export", "export a .keras model or an ensemble to ONNX or TFLite and check it", _export_args
)
def cmd_export(args: argparse.Namespace) -> None:
    from fer_utils.inference import load_classifier  # (its loader registers fer_utils.layers)
    from fer_utils.inference.export import format_of

    if args.ensemble:
        if args.model:
            raise UsageError("--model and --ensemble: give one of them")
        _export_ensemble(args)
        return
    fmt = args.format or format_of(args.out)
    _export_checked(load_classifier(args.model), args.out, fmt, args.data)


def _calibrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a .keras model (default: models/default.keras or $FER_MODEL)")
    p.add_argument(
        "--out",
        help="the calibrated model (default: <model>-calibrated.keras beside it; the model's "
        "own path replaces it)",
    )
    _add_data_args(p)


@command(
    "calibrate",
    "temperature-scale a model's confidence, fitted on PublicTest; ECE before and after",
    _calibrate_args,
)
def cmd_calibrate(args: argparse.Namespace) -> None:
    from fer_utils.calibration import calibrate_and_record, calibration_name, default_out
    from fer_utils.config import models_dir
    from fer_utils.files import writable_folder
    from fer_utils.inference import load_classifier
    from fer_utils.runs import DEFAULT_MODEL, command_line

    model = load_classifier(args.model)  # a clear error for a missing or foreign file
    if model.kind != "keras":
        raise UsageError(f"{model.path}: calibrate takes a .keras model, not .{model.kind}")
    out = Path(args.out) if args.out else default_out(model.path)
    if out.suffix != ".keras" or out.is_dir():
        raise UsageError(f"--out {out}: the calibrated model is a .keras file; name one")
    writable_folder(out.parent, "--out")
    data = _load(args)
    _check_trained_on(calibration_name(model.path), data)
    record, path, figure = calibrate_and_record(model.path, out, data, command_line())
    print(f"temperature T = {record['temperature']:.4f}, fitted on PublicTest")
    for split, values in record["splits"].items():
        print(
            f"  {split:<11} {values['n']} faces: ECE ({record['bins']} bins) "
            f"{values['ece_before']:.4f} -> {values['ece_after']:.4f}, NLL "
            f"{values['nll_before']:.4f} -> {values['nll_after']:.4f}, labels changed "
            f"{values['argmax_changed']}"
        )
    print(f"calibrated model: {out}\nrecord: {path}\nfigure: {figure}")
    if out.resolve() == (models_dir() / DEFAULT_MODEL).resolve():
        from fer_utils.inference.classifier import record_default_calibration

        record_default_calibration(path)
        print("models/default.json: the default model's new sha256 and its calibration record")


def _check_trained_on(run_name: str, data) -> None:
    """A :class:`DataError` if ``run_name`` is a trained run's record and ``data`` is not
    what it was trained on (a model's own record is the only way to know; none, no check)."""
    from fer_utils.experiment import data_of_run
    from fer_utils.runs import read_run

    try:
        trained = read_run(run_name)
    except FileNotFoundError:
        return
    if trained.kind == "trained":
        data_of_run(trained, data)


def _set_default_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="trained runs with models/<RUN>.keras")


@command("set-default", "make the best of RUN... (on PublicTest) the default", _set_default_args)
def cmd_set_default(args: argparse.Namespace) -> None:
    from fer_utils.inference import set_default_model

    best = set_default_model(args.runs)
    print(f"models/default.keras is now {best}, the best on PublicTest (models/default.json)")


def _results_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readme", default=str(project_root() / "README.md"))


@command("results-table", "regenerate the README results table from results/", _results_table_args)
def cmd_results_table(args: argparse.Namespace) -> None:
    from fer_utils.tables import update_readme

    readme = Path(args.readme)
    print(f"{readme}: {'updated' if update_readme(readme) else 'already up to date'}")


@command("colab-badges", "write the Open-in-Colab badges and setup cells for the repository")
def cmd_colab_badges(args: argparse.Namespace) -> None:
    from fer_utils.colab import repository_url, write_colab_cells

    changed = write_colab_cells()
    print(f"badges point at {repository_url()}; changed: {len(changed)} file(s)")
    for path in changed:
        print(f"  {path}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command (:data:`COMMANDS`)."""
    parser = argparse.ArgumentParser(prog="python -m fer_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help, arguments, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help)
        arguments(p)
        p.set_defaults(func=handler)
    return parser


def predict_main(argv: list[str] | None = None) -> int:
    """The ``fer-predict`` console script: ``fer-predict PATH...`` = ``fer predict PATH...``."""
    return main(["predict", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    """Run one command. A data, model or media problem prints its message (no traceback) and
    returns 2; a full or unwritable disk, or Ctrl-C, prints one line that says what survives
    (1, 130). Training and pretraining resume when the same command is run again."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    again = RESUMABLE.get(args.command, "") if getattr(args, "out", True) else ""
    try:
        status = args.func(args)
    except FerError as error:
        return report(error)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        fix = "free some space or fix the permissions, then " + (again or "try again")
        print(f"error: {error.strerror or error}{where}: {fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted{'; ' + again if again else ''}", file=sys.stderr)
        return 130
    return status or 0
