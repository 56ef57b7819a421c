"""Descriptive statistics of a FER2013 dataset: intensity, contrast, mean faces, label agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fer_utils.config import EMOTIONS, SPLITS
from fer_utils.data import DataError, Dataset


def intensity_stats(dataset: Dataset) -> pd.DataFrame:
    """Per-image brightness (mean grey level), contrast (standard deviation) and dynamic range
    (99th minus 1st percentile), one row per image with its emotion and split."""
    flat = dataset.images.reshape(len(dataset), -1).astype(np.float64)
    low, high = np.percentile(flat, [1, 99], axis=1)
    return pd.DataFrame(
        {
            "emotion": pd.Categorical(np.asarray(EMOTIONS)[dataset.labels], categories=EMOTIONS),
            "split": pd.Categorical(dataset.splits, categories=SPLITS),
            "brightness": flat.mean(axis=1),
            "contrast": flat.std(axis=1),
            "dynamic_range": high - low,
        }
    )


def intensity_summary(dataset: Dataset) -> pd.DataFrame:
    """Mean and standard deviation of :func:`intensity_stats` per emotion."""
    stats = intensity_stats(dataset).drop(columns="split")
    return stats.groupby("emotion", observed=False).agg(["mean", "std"]).round(1)


def mean_faces(dataset: Dataset) -> np.ndarray:
    """The average face of every emotion, float32 (7, 48, 48); NaN for an absent class."""
    faces = np.full((len(EMOTIONS), *dataset.images.shape[1:]), np.nan, dtype=np.float32)
    for label in range(len(EMOTIONS)):
        members = dataset.images[dataset.labels == label]
        if len(members):
            faces[label] = members.mean(axis=0, dtype=np.float64)
    return faces


def ferplus_agreement(dataset: Dataset) -> pd.DataFrame:
    """Confusion counts of FER2013 labels (rows) against the FER+ majority label (columns).

    The extra column ``no majority`` counts faces whose FER+ votes name no single FER2013
    class (a tie, contempt, unknown) and ``not a face`` the rows FER+ dropped."""
    if dataset.ferplus is None:
        raise DataError(
            "this dataset has no FER+ votes: put fer2013new.csv beside the FER2013 CSV or "
            "set FERPLUS_PATH, then load again."
        )
    majority = dataset.ferplus.majority()
    columns = np.asarray([*EMOTIONS, "no majority", "not a face"], dtype=object)
    column = np.where(majority >= 0, majority, len(EMOTIONS))
    column[dataset.ferplus.not_face] = len(EMOTIONS) + 1
    table = pd.crosstab(
        pd.Categorical(np.asarray(EMOTIONS)[dataset.labels], categories=EMOTIONS),
        pd.Categorical(columns[column], categories=columns),
        dropna=False,
    )
    table.index.name, table.columns.name = "FER2013", "FER+ majority"
    return table


def agreement_rate(table: pd.DataFrame) -> float:
    """Share of faces whose FER+ majority equals the FER2013 label, among faces that have a
    FER+ majority (a table from :func:`ferplus_agreement`)."""
    classes = table[list(EMOTIONS)]
    return float(np.trace(classes.to_numpy()) / max(1, classes.to_numpy().sum()))
