"""Writing a small stratified sample of FER2013 (and its FER+ rows) in the original formats."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.config import SPLITS
from fer_utils.data.dataset import FERPLUS_COLUMNS, Dataset
from fer_utils.files import atomic_path

log = logging.getLogger(__name__)


def write_sample(
    dataset: Dataset, out: Path, train_per_class: int, eval_per_class: int, seed: int = 0
) -> tuple[Path, Path | None]:
    """Write ``fer2013_sample.csv.gz`` (``emotion,pixels,Usage``) and, when the dataset has
    FER+ votes, the matching rows as ``fer2013new.csv`` into ``out``; returns both paths."""
    caps = {split: train_per_class if split == "Training" else eval_per_class for split in SPLITS}
    sample = dataset.stratified_subset(caps, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    pixels = [" ".join(map(str, face.ravel().tolist())) for face in sample.images]
    table = pd.DataFrame({"emotion": sample.labels, "pixels": pixels, "Usage": sample.splits})
    csv_path, ferplus_path = out / "fer2013_sample.csv.gz", out / "fer2013new.csv"
    with atomic_path(csv_path) as temp, gzip.open(temp, "wt", compresslevel=9, newline="") as f:
        table.to_csv(f, index=False, lineterminator="\n")
    if sample.ferplus is None:
        if ferplus_path.exists():  # an earlier sample's votes: they would not match these rows
            ferplus_path.unlink()
            log.warning("removed %s: it held the votes of an earlier sample", ferplus_path)
        return csv_path, None
    votes = pd.DataFrame(sample.ferplus.votes, columns=list(FERPLUS_COLUMNS))
    names = np.where(sample.ferplus.not_face, "", [f"fer{i:07d}.png" for i in sample.source_index])
    ferplus = pd.concat(
        [pd.DataFrame({"Usage": sample.splits, "Image name": names}), votes], axis=1
    )
    with atomic_path(ferplus_path) as temp:
        ferplus.to_csv(temp, index=False, lineterminator="\n")
    return csv_path, ferplus_path
