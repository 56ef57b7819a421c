"""The command line: ``python -m fer_utils <command> --help`` (also installed as ``fer``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from fer_utils.config import AUGMENTATIONS, project_root
from fer_utils.data import DataError, find_data, load_fer2013
from fer_utils.errors import FerError
from fer_utils.inference import ModelError
from fer_utils.inference.faces import DETECTORS
from fer_utils.preprocessing import CORRECTIONS
from fer_utils.tta import TTA_SETS

SAMPLE_CSV = project_root() / "data" / "sample" / "fer2013_sample.csv.gz"


def has_data() -> bool:
    """Whether FER2013 is found the usual way ($FER2013_PATH, then data/)."""
    try:
        find_data()
    except DataError:
        return False
    return True


def json_object(text: str) -> dict:
    """An argparse type: a JSON object such as ``{"width": 0.5}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"a JSON object is needed, e.g. '{{\"width\": 0.5}}', not {text!r}"
        )
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


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="FER2013 file or folder (default: $FER2013_PATH, then data/)"
    )
    parser.add_argument("--ferplus", help="fer2013new.csv (default: beside the data, or data/)")
    parser.add_argument(
        "--skip-bad-rows", action="store_true",
        help="exclude malformed rows / unreadable images (they are counted) instead of stopping",
    )  # fmt: skip


def _load(args: argparse.Namespace):
    return load_fer2013(
        args.data, ferplus=args.ferplus or True, errors="skip" if args.skip_bad_rows else "raise"
    )


def _profile_data(args: argparse.Namespace):
    """The data ``--profile`` trains on; says so when that is the quick profile's subset."""
    from fer_utils.experiment import profile_data

    dataset = profile_data(_load(args), args.profile, args.seed)
    if args.profile == "quick":
        logging.warning(
            "profile quick: a stratified subset of %d faces, for smoke runs; "
            "--profile cpu trains on all the data",
            len(dataset),
        )
    return dataset


def cmd_download(args: argparse.Namespace) -> None:
    from fer_utils.data.download import download_fer2013, download_ferplus

    dest = Path(args.dest) if args.dest else None
    print(f"FER2013: {download_fer2013(dest, args.source, args.force)}")
    if args.ferplus:
        print(f"FER+:    {download_ferplus(dest, args.force)}")


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


def cmd_clean(args: argparse.Namespace) -> None:
    from fer_utils.cleaning import clean, find_issues

    dataset = _load(args)
    report = find_issues(dataset)
    print("Findings (images flagged, per split):")
    print(report.summary(dataset).to_string())
    _, removed = clean(dataset, report)
    print("\nCleaning the Training split removes:")
    print(removed.to_string())


def cmd_sample(args: argparse.Namespace) -> None:
    from fer_utils.data.sample import write_sample

    paths = write_sample(
        _load(args), Path(args.out), args.train_per_class, args.eval_per_class, args.seed
    )
    for path in filter(None, paths):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def cmd_set_default(args: argparse.Namespace) -> None:
    from fer_utils.inference import set_default_model

    best = set_default_model(args.runs)
    print(f"models/default.keras is now {best}, the best on PublicTest (models/default.json)")


def cmd_results_table(args: argparse.Namespace) -> None:
    from fer_utils.results import update_readme

    readme = Path(args.readme)
    print(f"{readme}: {'updated' if update_readme(readme) else 'already up to date'}")


def cmd_train(args: argparse.Namespace) -> None:
    from fer_utils.config import get_profile
    from fer_utils.experiment import run_experiment
    from fer_utils.models import check_model
    from fer_utils.training import TrainConfig, command_line, set_threads

    check_model(args.model, args.model_kwargs)
    set_threads(args.threads)
    profile = get_profile(args.profile)
    config = TrainConfig(
        model=args.model,
        model_kwargs=args.model_kwargs,
        epochs=args.epochs or profile.epochs,
        batch_size=args.batch_size or profile.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        schedule=args.schedule,
        loss=args.loss,
        class_weighting=args.class_weights,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        correction=args.correction,
        init=args.init,
        label_fraction=args.label_fraction,
        soft_targets="teacher" if args.teacher else "ferplus" if args.ferplus_soft else "none",
        teacher=args.teacher,
        clean=args.clean,
        patience=args.patience,
        policy=args.policy,
        jit_compile=args.jit,
        time_budget_minutes=args.time_budget,
        precise_bn=args.precise_bn,
        seed=args.seed,
    )
    dataset = _profile_data(args)
    run_name = args.run_name or f"{args.model}-{args.profile}-s{args.seed}"
    tta = None if args.no_tta else args.tta
    done = run_experiment(config, run_name, dataset, args.profile, command_line(), tta=tta)
    for path in done.records.values():
        _print_record(path)
    print(f"model: {done.model_path}")


def _print_record(path: Path) -> None:
    metrics = json.loads(path.read_text())["metrics"]
    public, private = metrics["PublicTest"], metrics["PrivateTest"]
    print(
        f"{path.name}: PublicTest accuracy {public['accuracy']:.4f}; PrivateTest accuracy "
        f"{private['accuracy']:.4f}, balanced {private['balanced_accuracy']:.4f}, "
        f"macro-F1 {private['macro_f1']:.4f}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from fer_utils.experiment import evaluate_saved
    from fer_utils.training import command_line, set_threads

    set_threads(args.threads)
    dataset = _load(args)
    for run in args.runs:
        _print_record(evaluate_saved(run, dataset, args.tta, command_line()))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from fer_utils.experiment import run_pretraining
    from fer_utils.models import check_model
    from fer_utils.selfsupervised import PretrainConfig
    from fer_utils.training import command_line, set_threads

    check_model(args.model, args.model_kwargs)
    set_threads(args.threads)
    config = PretrainConfig(
        model=args.model,
        model_kwargs=args.model_kwargs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        temperature=args.temperature,
        time_budget_minutes=args.time_budget,
        seed=args.seed,
    )
    dataset = _profile_data(args)
    run_name = args.run_name or f"simclr-{args.model}-{args.profile}"
    path = run_pretraining(config, run_name, dataset, args.profile, command_line())
    print(f"pretrained model: {path} (use it with train --init {path})")


def cmd_predict(args: argparse.Namespace) -> None:
    from fer_utils.inference import load_classifier, predict_sources
    from fer_utils.inference.predict import write_rows

    classifier = load_classifier(args.model)
    rows = predict_sources(
        args.paths, classifier, args.detector, args.margin, args.min_face, args.step, args.every,
        args.max_frames, args.annotate,
    )  # fmt: skip
    if args.out:
        with open(args.out, "w", newline="") as out:
            counts = write_rows(rows, out, args.format)
    else:
        counts = write_rows(rows, sys.stdout, args.format)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"{classifier.path.name}: {summary or 'nothing to predict'}", file=sys.stderr)


def cmd_ensemble(args: argparse.Namespace) -> None:
    from fer_utils import ensemble as ens
    from fer_utils.training import command_line

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
    for split, values in record["metrics"].items():
        print(f"  {split:<11} accuracy {values['accuracy']:.4f}  balanced "
              f"{values['balanced_accuracy']:.4f}  macro-F1 {values['macro_f1']:.4f}")  # fmt: skip
    if args.teacher_out:
        train = _load(args).split("Training")
        path = ens.write_teacher(chosen, models, train, Path(args.teacher_out))
        print(f"teacher targets for {len(train)} Training faces: {path}")


def _test_faces(data: str | None) -> np.ndarray:
    """PrivateTest faces of ``data`` (or of the found data; else of the bundled sample)."""
    if data is None and not has_data():
        print("no FER2013 data found: checking on the bundled sample", file=sys.stderr)
        data = str(SAMPLE_CSV)
    return load_fer2013(data).split("PrivateTest").images


def cmd_export(args: argparse.Namespace) -> None:
    from fer_utils.inference import load_classifier
    from fer_utils.inference.export import export_model, max_difference

    keras_model = load_classifier(args.model)
    out = export_model(keras_model.path, args.out, args.format)
    print(f"{args.format}: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    faces = _test_faces(args.data)
    difference = max_difference(keras_model, out, faces)
    print(f"largest |difference| from Keras on {len(faces)} PrivateTest faces: {difference:.2e}")
    if difference > 1e-4:
        raise ModelError(f"{out} differs from the Keras model by {difference:.2e} (> 1e-4)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="download FER2013 (Kaggle API) and FER+ into data/")
    p.add_argument("--source", default="csv", choices=["csv", "challenge", "images"],
                   help="csv: deadskull7/fer2013 (default); challenge: the competition files; "
                   "images: msambare/fer2013 image folders")  # fmt: skip
    p.add_argument("--dest", help="folder to download into (default: data/)")
    p.add_argument("--no-ferplus", dest="ferplus", action="store_false", help="skip FER+")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("info", help="load the data and print split and class counts")
    _add_data_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("clean", help="report blanks, duplicates, leakage, FER+ non-faces")
    _add_data_args(p)
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("sample", help="write a small stratified sample in the original formats")
    _add_data_args(p)
    p.add_argument("--out", default=str(project_root() / "data" / "sample"))
    p.add_argument("--train-per-class", type=int, default=24)
    p.add_argument("--eval-per-class", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("train", help="train a registered model; writes models/ and results/")
    _add_data_args(p)
    p.add_argument(
        "--model", required=True, help="baseline, five_layer, fast_cnn, vgg, resnet_lite, transfer"
    )
    p.add_argument(
        "--model-kwargs", type=json_object, default={}, help="JSON, e.g. '{\"width\": 0.5}'"
    )
    p.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    p.add_argument("--run-name", help="default: <model>-<profile>-s<seed>")
    p.add_argument("--epochs", type=int, help="default: the profile's")
    p.add_argument("--batch-size", type=int, help="default: the profile's")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "plateau"])
    p.add_argument("--loss", default="ce", choices=["ce", "focal"])
    p.add_argument("--class-weights", action="store_true", help="balanced class weights / alpha")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment", default="basic", choices=list(AUGMENTATIONS))
    p.add_argument("--correction", default="none", choices=list(CORRECTIONS),
                   help="illumination correction applied inside the model")  # fmt: skip
    p.add_argument("--init", help="start from this .keras model's weights (e.g. pretrain's)")
    p.add_argument("--label-fraction", type=float, default=1.0,
                   help="train on this stratified fraction of the Training labels")  # fmt: skip
    p.add_argument("--ferplus-soft", action="store_true", help="train on FER+ vote distributions")
    p.add_argument("--teacher", help="distil: .npz of teacher probabilities (fer ensemble)")
    p.add_argument("--clean", action="store_true", help="train on cleaned Training data")
    p.add_argument("--patience", type=int, default=10, help="early stopping on PublicTest")
    p.add_argument("--policy", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--jit", action="store_true", help="XLA-compile the training step")
    p.add_argument("--time-budget", type=float, help="stop after this many minutes")
    p.add_argument(
        "--precise-bn", action="store_true", help="recompute BatchNorm statistics each epoch"
    )
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tta", default="shifts", choices=list(TTA_SETS),
                   help="test-time augmentation of the -tta record (affine: 90 views)")  # fmt: skip
    p.add_argument("--no-tta", action="store_true", help="skip the test-time-augmented evaluation")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="evaluate finished runs' models again with a test-time augmentation set"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="runs with models/<RUN>.keras")
    p.add_argument("--tta", default="affine", choices=list(TTA_SETS),
                   help="writes results/<RUN>-tta-<set>.json (shifts: <RUN>-tta.json)")  # fmt: skip
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    _add_data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pretrain", help="SimCLR pretraining on the Training faces, no labels")
    _add_data_args(p)
    p.add_argument("--model", default="fast_cnn", help="registry architecture to pretrain")
    p.add_argument(
        "--model-kwargs", type=json_object, default={}, help="JSON, e.g. '{\"width\": 16}'"
    )
    p.add_argument("--profile", default="quick", choices=["quick", "cpu", "full"])
    p.add_argument("--run-name", help="default: simclr-<model>-<profile>")
    p.add_argument("--epochs", type=int, default=32,
                   help="cosine schedule length (32: about an hour of two cores)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=256, help="faces per batch (2 views each)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--time-budget", type=float, help="stop after this many minutes")
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "ensemble", help="soft-voting ensemble of trained runs, chosen on PublicTest"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names with results/predictions")
    p.add_argument(
        "--method",
        default="greedy",
        choices=["greedy", "weights", "stacking", "uniform", "cv"],
        help="cv: whichever method cross-validates best within PublicTest",
    )
    p.add_argument("--name", default="ensemble", help="run name of the ensemble's results")
    p.add_argument("--teacher-out", help="also write its Training probabilities (for --teacher)")
    _add_data_args(p)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("predict", help="emotions of the faces in images, folders, videos, webcams")
    _add_predict_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a .keras model to ONNX or TFLite and check it")
    p.add_argument("--model", help="a .keras model (default: models/default.keras or $FER_MODEL)")
    p.add_argument("--format", default="onnx", choices=["onnx", "litert"])
    p.add_argument("--out", help="default: the model's name with .onnx / .tflite")
    p.add_argument("--data", help="FER2013 for the check (default: $FER2013_PATH, data/, sample)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("set-default", help="make the best of RUN... (on PublicTest) the default")
    p.add_argument("runs", nargs="+", metavar="RUN", help="trained runs with models/<RUN>.keras")
    p.set_defaults(func=cmd_set_default)

    p = sub.add_parser("results-table", help="regenerate the README results table from results/")
    p.add_argument("--readme", default=str(project_root() / "README.md"))
    p.set_defaults(func=cmd_results_table)
    return parser


def _add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="image, folder (recursive), video, or webcam index (0, 1, ...)",
    )  # fmt: skip
    p.add_argument(
        "--model", help="a .keras / .onnx / .tflite model (default: models/default.keras)"
    )
    p.add_argument(
        "--detector", default="haar", choices=DETECTORS,
        help="haar: fast; mtcnn: finds more faces; none: the inputs are face crops",
    )  # fmt: skip
    p.add_argument("--margin", type=float, default=0.15, help="crop margin, fraction of the box")
    p.add_argument(
        "--min-face", type=positive_int, default=30, help="smallest face to detect, pixels"
    )
    p.add_argument(
        "--step", type=above_one, default=1.2,
        help="haar: ratio between face sizes searched (1.3: faster, may miss some faces)",
    )  # fmt: skip
    p.add_argument("--every", type=positive_int, default=1, help="videos: use every N-th frame")
    p.add_argument(
        "--max-frames", type=positive_int, help="videos and webcams: stop after N frames"
    )
    p.add_argument("--format", default="csv", choices=["csv", "json", "jsonl"])
    p.add_argument("--out", help="write the rows here (default: standard output)")
    p.add_argument("--annotate", metavar="FOLDER", help="write annotated images / videos here")


def predict_main(argv: list[str] | None = None) -> int:
    """The ``fer-predict`` console script: ``fer-predict PATH...`` = ``fer predict PATH...``."""
    return main(["predict", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    """Run one command; a data, model or media problem prints its message (no traceback) and
    returns 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except FerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
