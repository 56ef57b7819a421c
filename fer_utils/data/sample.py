"""Writing a small stratified sample of FER2013 (and its FER+ rows) in the original formats."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.config import SPLITS
from fer_utils.data.dataset import FERPLUS_COLUMNS, Dataset


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
    csv_path = out / "fer2013_sample.csv.gz"
    with gzip.open(csv_path, "wt", compresslevel=9, newline="") as handle:
        table.to_csv(handle, index=False, lineterminator="\n")
    if sample.ferplus is None:
        return csv_path, None
    votes = pd.DataFrame(sample.ferplus.votes, columns=list(FERPLUS_COLUMNS))
    names = np.where(sample.ferplus.not_face, "", [f"fer{i:07d}.png" for i in sample.source_index])
    ferplus = pd.concat(
        [pd.DataFrame({"Usage": sample.splits, "Image name": names}), votes], axis=1
    )
    ferplus_path = out / "fer2013new.csv"
    ferplus.to_csv(ferplus_path, index=False, lineterminator="\n")
    return csv_path, ferplus_path
