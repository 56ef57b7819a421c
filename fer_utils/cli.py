"""The command line: ``python -m fer_utils <command> --help`` (also installed as ``fer``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from fer_utils.config import project_root
from fer_utils.data import DataError, load_fer2013


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


def cmd_results_table(args: argparse.Namespace) -> None:
    from fer_utils.results import update_readme

    readme = Path(args.readme)
    print(f"{readme}: {'updated' if update_readme(readme) else 'already up to date'}")


def cmd_train(args: argparse.Namespace) -> None:
    from fer_utils.config import get_profile
    from fer_utils.experiment import profile_data, run_experiment
    from fer_utils.training import TrainConfig, command_line, set_threads

    set_threads(args.threads)
    profile = get_profile(args.profile)
    config = TrainConfig(
        model=args.model,
        model_kwargs=json.loads(args.model_kwargs),
        epochs=args.epochs or profile.epochs,
        batch_size=args.batch_size or profile.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        schedule=args.schedule,
        loss=args.loss,
        class_weighting=args.class_weights,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        soft_targets="ferplus" if args.ferplus_soft else "none",
        clean=args.clean,
        patience=args.patience,
        policy=args.policy,
        jit_compile=args.jit,
        time_budget_minutes=args.time_budget,
        seed=args.seed,
    )
    dataset = profile_data(_load(args), args.profile, args.seed)
    run_name = args.run_name or f"{args.model}-{args.profile}-s{args.seed}"
    done = run_experiment(
        config, run_name, dataset, args.profile, command_line(), tta=not args.no_tta
    )
    for path in done.records.values():
        metrics = json.loads(path.read_text())["metrics"]["PrivateTest"]
        print(
            f"{path.name}: PrivateTest accuracy {metrics['accuracy']:.4f}, "
            f"balanced {metrics['balanced_accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
        )
    print(f"model: {done.model_path}")


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
    p.add_argument("--model", required=True, help="baseline, five_layer, vgg, resnet_lite")
    p.add_argument("--model-kwargs", default="{}", help="JSON, e.g. '{\"width\": 0.5}'")
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
    p.add_argument("--augment", default="basic", choices=["none", "basic", "erasing", "mixup"])
    p.add_argument("--ferplus-soft", action="store_true", help="train on FER+ vote distributions")
    p.add_argument("--clean", action="store_true", help="train on cleaned Training data")
    p.add_argument("--patience", type=int, default=10, help="early stopping on PublicTest")
    p.add_argument("--policy", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--jit", action="store_true", help="XLA-compile the training step")
    p.add_argument("--time-budget", type=float, help="stop after this many minutes")
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tta", action="store_true", help="skip the test-time-augmented evaluation")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("results-table", help="regenerate the README results table from results/")
    p.add_argument("--readme", default=str(project_root() / "README.md"))
    p.set_defaults(func=cmd_results_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a data problem prints its message (no traceback) and returns 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
