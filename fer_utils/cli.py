"""The command line: ``python -m fer_utils <command> --help`` (also installed as ``fer``)."""

from __future__ import annotations

import argparse
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
