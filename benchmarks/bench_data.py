"""Time FER2013 loading: the first parse (no cache) and a cached load, each in a fresh process.

    python benchmarks/bench_data.py [--data PATH] [--repeat 3]

Prints the median of ``--repeat`` runs of each, against the targets (first parse ≤ 5 s,
cached load < 1 s), and the naive pandas read-and-split for comparison (``--naive``)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from fer_utils.errors import run_script

TIMED = """
import time, sys
start = time.perf_counter()
from fer_utils.data import load_fer2013
imported = time.perf_counter()
dataset = load_fer2013(sys.argv[1] if len(sys.argv) > 1 else None, ferplus=False)
print(time.perf_counter() - imported, len(dataset))
"""

NAIVE = """
import time, sys
import numpy as np, pandas as pd
from fer_utils.data import find_data
start = time.perf_counter()
table = pd.read_csv(find_data(sys.argv[1] if len(sys.argv) > 1 else None))
images = np.stack([np.array(p.split(), dtype=np.uint8) for p in table.pixels])
print(time.perf_counter() - start, len(images))
"""


def run(code: str, data: str | None, cache: str) -> tuple[float, int]:
    """Seconds and rows reported by ``code`` in a fresh interpreter."""
    env = {**os.environ, "FER_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", code, *([data] if data else [])],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FER2013 file (default: $FER2013_PATH, then data/)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive", action="store_true", help="also time pandas + str.split")
    args = parser.parse_args()

    first, cached = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            seconds, rows = run(TIMED, args.data, cache)
            first.append(seconds)
            cached.append(run(TIMED, args.data, cache)[0])
    print(f"rows: {rows}   cores: {os.cpu_count()}   runs: {args.repeat} (median shown)")
    print(f"first parse (no cache): {statistics.median(first):6.2f} s   target <= 5 s")
    print(f"cached load:            {statistics.median(cached):6.2f} s   target < 1 s")
    if args.naive:
        with tempfile.TemporaryDirectory() as cache:
            naive = run(NAIVE, args.data, cache)[0]
        print(f"pandas read + split:    {naive:6.2f} s   (for comparison)")


if __name__ == "__main__":
    run_script(main)
