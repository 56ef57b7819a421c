"""Reading FER+ (``fer2013new.csv``, Microsoft's relabelling of FER2013 by 10 annotators)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data.dataset import FERPLUS_COLUMNS, DataError, FerPlus


def read_ferplus(
    path: Path, n_source_rows: int, source_index: np.ndarray, splits: np.ndarray
) -> FerPlus:
    """Read ``fer2013new.csv`` (one row per FER2013 CSV row, same order) for the given rows.

    Args:
        path: the FER+ file.
        n_source_rows: how many data rows the FER2013 CSV has; FER+ must have as many.
        source_index: the CSV rows wanted (a dataset's ``source_index``).
        splits: their FER2013 ``Usage``, which FER+ must repeat (else it belongs to another
            file and is rejected).
    """
    try:
        table = pd.read_csv(path, dtype={"Image name": "string"})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read FER+ labels ({error}).") from error
    missing = [c for c in ("Usage", "Image name", *FERPLUS_COLUMNS) if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: not a FER+ file, columns {missing} are missing. Expected fer2013new.csv "
            "from github.com/microsoft/FERPlus."
        )
    votes = table[list(FERPLUS_COLUMNS)]
    if votes.isna().any().any() or (votes < 0).any().any():
        row = int(votes.isna().any(axis=1).to_numpy().argmax())
        raise DataError(f"{path}: missing or negative vote counts (first at data row {row}).")
    if len(table) != n_source_rows:
        raise DataError(
            f"{path}: {len(table)} rows, but the FER2013 file has {n_source_rows}; FER+ is "
            "aligned row by row with the FER2013 CSV it was made from (the full fer2013.csv)."
        )
    table = table.iloc[source_index]
    mismatch = table["Usage"].to_numpy(dtype=str) != splits
    if mismatch.any():
        raise DataError(
            f"{path}: Usage differs from the FER2013 file in {int(mismatch.sum())} rows "
            f"(first at data row {int(source_index[mismatch.argmax()])}); it belongs to "
            "another file."
        )
    name = table["Image name"].fillna("").str.strip()
    return FerPlus(
        votes=votes.to_numpy(np.int64)[source_index], not_face=(name == "").to_numpy(bool)
    )
