"""The in-memory dataset: aligned arrays of faces, labels, splits and where each row came from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from fer_utils.config import EMOTIONS, IMAGE_SIZE, SPLITS
from fer_utils.errors import FerError


class DataError(FerError):
    """Bad or missing input data. The message says what is wrong, where, and how to fix it."""


@dataclass(frozen=True)
class FerPlus:
    """FER+ annotations aligned row by row with a FER2013 :class:`Dataset`.

    ``votes`` holds the 10 annotator votes per row in FER+'s column order
    (:data:`FERPLUS_COLUMNS`); ``not_face`` marks the rows FER+ dropped (empty ``Image name``).
    """

    votes: np.ndarray
    not_face: np.ndarray

    def soft_labels(self) -> np.ndarray:
        """Vote distribution over the 7 FER2013 classes, float32 (N, 7), rows summing to 1.

        Votes for contempt, unknown and not-a-face are left out; a row with no vote for any of
        the 7 classes gets all zeros (check ``soft_labels().sum(1) > 0`` before using it)."""
        seven = self.votes[:, FERPLUS_TO_FER2013].astype(np.float32)
        total = seven.sum(axis=1, keepdims=True)
        return np.divide(seven, total, out=np.zeros_like(seven), where=total > 0)

    def majority(self) -> np.ndarray:
        """FER+ majority label in FER2013 numbering (int64, N), or -1 where there is none.

        -1 means: a tie for the most votes, the most votes went to contempt / unknown /
        not-a-face (no FER2013 class), or FER+ dropped the image."""
        top = self.votes.max(axis=1, keepdims=True)
        unique_top = (self.votes == top).sum(axis=1) == 1
        winner = self.votes.argmax(axis=1)
        to_fer = np.full(len(FERPLUS_COLUMNS), -1)
        to_fer[FERPLUS_TO_FER2013] = np.arange(len(EMOTIONS))
        label = to_fer[winner]
        label[~unique_top | self.not_face] = -1
        return label

    def take(self, index: np.ndarray) -> FerPlus:
        """The rows at ``index`` (integer positions or a boolean mask)."""
        return FerPlus(self.votes[index], self.not_face[index])


FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger",
    "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
"""Vote columns of ``fer2013new.csv``, in file order."""

FERPLUS_TO_FER2013 = np.array(
    [FERPLUS_COLUMNS.index(name) for name in
     ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")]
)  # fmt: skip
"""For each FER2013 class (0 angry … 6 neutral), its FER+ vote column."""


@dataclass(frozen=True)
class Dataset:
    """FER2013 faces with aligned per-row arrays.

    Attributes:
        images: uint8 (N, 48, 48) grey faces.
        labels: int64 (N,), 0 angry … 6 neutral (see :data:`fer_utils.config.EMOTIONS`).
        splits: str (N,), one of ``Training`` / ``PublicTest`` / ``PrivateTest``.
        source_index: int64 (N,), the row in the source CSV (0 = first data row) or, for the
            image-folder edition, the numeric id in the file name.
        source: the file or folder the rows were read from.
        sha256: content hash of the source (recorded with every result).
        report: counts of anything the loader excluded or changed (empty when nothing was).
        ferplus: FER+ votes for the same rows, when loaded alongside.
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    source_index: np.ndarray
    source: str
    sha256: str
    report: dict[str, int] = field(default_factory=dict)
    ferplus: FerPlus | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Dataset:
        """A new dataset with the rows at ``index`` (integer positions or a boolean mask)."""
        ferplus = self.ferplus.take(index) if self.ferplus is not None else None
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            splits=self.splits[index],
            source_index=self.source_index[index],
            ferplus=ferplus,
        )

    def split(self, name: str) -> Dataset:
        """The rows of one split; a :class:`DataError` if the source holds none."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; FER2013's splits are {', '.join(SPLITS)}")
        mask = self.splits == name
        if not mask.any():
            present = ", ".join(s for s in SPLITS if (self.splits == s).any()) or "nothing"
            raise DataError(
                f"{self.source} has no {name} rows (it holds {present}). Use the full "
                "fer2013.csv, or the image-folder edition with both train/ and test/ folders."
            )
        return self.take(mask)

    def counts(self) -> pd.DataFrame:
        """Rows per split (index) and class (columns), with totals."""
        table = pd.crosstab(
            pd.Categorical(self.splits, categories=SPLITS),
            pd.Categorical(np.asarray(EMOTIONS)[self.labels], categories=EMOTIONS),
            dropna=False,
        )
        table.index.name, table.columns.name = "split", "emotion"
        table["total"] = table.sum(axis=1)
        return table

    def stratified_subset(
        self, per_class: dict[str, int | None] | int | None, seed: int = 0
    ) -> Dataset:
        """At most ``per_class`` random rows of every class in every split, in source order.

        ``per_class`` is one cap for all splits or a ``{split: cap}`` mapping; ``None`` keeps
        everything."""
        caps = per_class if isinstance(per_class, dict) else dict.fromkeys(SPLITS, per_class)
        rng = np.random.default_rng(seed)
        keep: list[np.ndarray] = []
        for split in SPLITS:
            for label in range(len(EMOTIONS)):
                rows = np.flatnonzero((self.splits == split) & (self.labels == label))
                cap = caps.get(split)
                if cap is not None and len(rows) > cap:
                    rows = rng.choice(rows, size=cap, replace=False)
                keep.append(rows)
        return self.take(np.sort(np.concatenate(keep)))

    def label_fraction(self, fraction: float, split: str = "Training", seed: int = 0) -> Dataset:
        """Keep a stratified ``fraction`` (0 < f ≤ 1) of ``split``'s rows (at least one per
        class present) and every row of the other splits: the few-labels setting. A fraction
        of 1 returns the dataset itself."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], not {fraction}")
        if fraction == 1:
            return self
        rng = np.random.default_rng(seed)
        keep = [np.flatnonzero(self.splits != split)]
        for label in range(len(EMOTIONS)):
            rows = np.flatnonzero((self.splits == split) & (self.labels == label))
            size = min(len(rows), max(1, round(fraction * len(rows))))
            keep.append(rng.choice(rows, size=size, replace=False) if len(rows) else rows)
        return self.take(np.sort(np.concatenate(keep)))


def as_batch(faces: np.ndarray, dtype: type | None = np.float32) -> np.ndarray:
    """Faces (N, 48, 48) or (N, 48, 48, 1) as the models' batch (N, 48, 48, 1), in ``dtype``
    (float32, the models' input; None keeps the faces' own, e.g. uint8 in memory)."""
    return np.asarray(faces, dtype).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)
