"""Data-quality findings on FER2013, and cleaning of the training data as an explicit option.

Findings: blank (near-uniform) images, exact duplicates, near duplicates (perceptual hash),
duplicate groups whose labels disagree, groups that span Training and a test split (leakage),
and rows FER+ judged not to be a face. The official PublicTest / PrivateTest stay untouched
unless a cleaned-test evaluation is asked for explicitly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fer_utils.config import SPLITS, cache_dir
from fer_utils.data import Dataset
from fer_utils.files import read_cache, write_cache
from fer_utils.progress import progress_bar

BLANK_STD = 3.0
"""An image whose pixel standard deviation is below this many grey levels is 'blank'."""

NEAR_DISTANCE = 6
"""Two images are near duplicates when their 64-bit pHashes differ in at most this many bits.

On FER2013, pairs up to 6 bits apart are the same photograph re-encoded, re-cropped or re-lit
(from 8 bits on, different photos of look-alike faces start to appear); the examples
in notebook 01 show what it catches."""

MIN_CORRELATION = 0.9
"""A hash match counts only if the two faces, shrunk to 16×16, also correlate at least this
much: hashes alone chain look-alike strangers into large groups."""

FINDINGS = (
    "blank",
    "exact_duplicate",
    "near_duplicate",
    "conflicting_labels",
    "leakage",
    "not_face_ferplus",
)


def perceptual_hashes(images: np.ndarray, progress: bool = True) -> np.ndarray:
    """64-bit DCT perceptual hash (imagehash.phash) of every image, as uint64 (N,).

    Hashes are cached by the images' content (``FER_CACHE``), so a second call on the same
    data is instant; a damaged cache file is recomputed and a cache that cannot be written is
    skipped, each with a warning."""
    key = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()[:24]
    cached = cache_dir() / f"phash-{key}.npy"

    def read(path: Path) -> np.ndarray:
        with open(path, "rb") as file:
            if file.read(6) != np.lib.format.MAGIC_PREFIX:
                raise ValueError("not an .npy file")
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.ndarray) or stored.dtype != np.uint64:
            raise ValueError("not an array of 64-bit hashes")
        if stored.shape != (len(images),):
            raise ValueError(f"{stored.shape} hashes for {len(images)} images")
        return stored

    stored = read_cache(cached, read, redo="recomputing the hashes")
    if stored is not None:
        return stored
    hashes = np.fromiter(
        (
            int(str(imagehash.phash(Image.fromarray(face))), 16)
            for face in progress_bar(
                images, progress, desc="perceptual hashes", leave=False, mininterval=2
            )
        ),
        dtype=np.uint64,
        count=len(images),
    )
    write_cache(cached, lambda temporary: np.save(temporary, hashes), skip="")
    return hashes


def near_pairs(hashes: np.ndarray, max_distance: int, block: int = 512) -> np.ndarray:
    """All index pairs (i < j) whose hashes differ in at most ``max_distance`` bits, (M, 3)
    rows of (i, j, distance). Brute force in blocks: N²/2 XOR-popcounts, a few seconds for
    FER2013's 36k images (a BK-tree in Python would be slower)."""
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        distance = np.bitwise_count(rows[:, None] ^ hashes[None, start:])
        i, j = np.nonzero(distance <= max_distance)
        keep = j > i  # j counts from start, i from start: strictly above the diagonal
        found.append(np.stack([i[keep] + start, j[keep] + start, distance[i[keep], j[keep]]], 1))
    return np.concatenate(found) if found else np.zeros((0, 3), np.int64)


def thumbnail_correlation(images: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair's 16×16 area-averaged thumbnails (tolerates shifts of
    a pixel or two and re-encoding, not a different photograph)."""
    if not len(pairs):
        return np.zeros(0)
    idx, inverse = np.unique(pairs[:, :2], return_inverse=True)
    small = np.stack([cv2.resize(images[i], (16, 16), interpolation=cv2.INTER_AREA) for i in idx])
    small = small.reshape(len(idx), -1).astype(np.float64)
    small -= small.mean(axis=1, keepdims=True)
    small /= np.linalg.norm(small, axis=1, keepdims=True) + 1e-12
    a, b = inverse.reshape(-1, 2).T
    return np.einsum("ij,ij->i", small[a], small[b])


def _groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of the pair graph: a group id per row, -1 for rows in no pair."""
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    return np.where(sizes[component] > 1, component, -1)


@dataclass(frozen=True)
class CleaningReport:
    """Per-row findings (boolean arrays aligned with the dataset) and the groups behind them.

    ``exact_group`` / ``near_group`` give a group id per row (-1: not duplicated); near groups
    include exact ones. ``pairs`` lists the confirmed near-duplicate pairs (i, j, Hamming
    distance)."""

    blank: np.ndarray
    exact_group: np.ndarray
    near_group: np.ndarray
    conflicting_labels: np.ndarray
    leakage: np.ndarray
    not_face_ferplus: np.ndarray
    pairs: np.ndarray

    @property
    def exact_duplicate(self) -> np.ndarray:
        return self.exact_group >= 0

    @property
    def near_duplicate(self) -> np.ndarray:
        return self.near_group >= 0

    def flags(self) -> pd.DataFrame:
        """One boolean column per finding, one row per image."""
        return pd.DataFrame({name: getattr(self, name) for name in FINDINGS})

    def summary(self, dataset: Dataset) -> pd.DataFrame:
        """Images flagged per finding (rows) and split (columns), with totals."""
        flags = self.flags()
        table = pd.DataFrame(
            {split: flags[dataset.splits == split].sum() for split in SPLITS}
        ).astype(int)
        table["total"] = table.sum(axis=1)
        table.index.name = "finding"
        return table


def find_issues(
    dataset: Dataset,
    blank_std: float = BLANK_STD,
    max_distance: int = NEAR_DISTANCE,
    min_correlation: float = MIN_CORRELATION,
    progress: bool = True,
) -> CleaningReport:
    """Run every check on ``dataset`` (all splits together, so leakage is visible)."""
    n = len(dataset)
    flat = dataset.images.reshape(n, int(np.prod(dataset.images.shape[1:])))  # also for n = 0
    blank = flat.std(axis=1) < blank_std

    rows = np.ascontiguousarray(flat).view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, exact_id, exact_count = np.unique(rows, return_inverse=True, return_counts=True)
    # Blank images are all alike: they are reported as blank, not as each other's copies.
    exact_group = np.where((exact_count[exact_id] > 1) & ~blank, exact_id, -1)

    pairs = near_pairs(perceptual_hashes(dataset.images, progress), max_distance)
    exact_pairs = _pairs_within(exact_group)
    pairs = pairs[~(blank[pairs[:, 0]] | blank[pairs[:, 1]])]
    pairs = pairs[thumbnail_correlation(dataset.images, pairs) >= min_correlation]
    all_pairs = np.concatenate([pairs[:, :2], exact_pairs]).astype(np.int64)
    near_group = _groups(n, all_pairs)

    conflicting_ids, leaking_ids = _conflicts_and_leaks(near_group, dataset)

    not_face = dataset.ferplus.not_face.copy() if dataset.ferplus is not None else np.zeros(n, bool)
    return CleaningReport(
        blank=blank,
        exact_group=exact_group,
        near_group=near_group,
        conflicting_labels=np.isin(near_group, conflicting_ids) & (near_group >= 0),
        leakage=np.isin(near_group, leaking_ids) & (near_group >= 0),
        not_face_ferplus=not_face,
        pairs=pairs,
    )


def _conflicts_and_leaks(group: np.ndarray, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the groups whose labels disagree, and of those with a Training and a test member.

    Boolean and integer columns only, no per-group Python callbacks: those fail on an empty
    groupby of pandas' string dtype (data without duplicates)."""
    member = group >= 0
    training = np.asarray(dataset.splits)[member] == "Training"
    by_group = pd.DataFrame(
        {"label": dataset.labels[member], "train": training, "test": ~training},
        index=pd.Index(group[member], name="group"),
    ).groupby(level="group")
    n_labels = by_group["label"].nunique()
    spans = by_group[["train", "test"]].any()
    conflicting = n_labels.index[n_labels.to_numpy() > 1].to_numpy(np.int64)
    leaking = spans.index[(spans["train"] & spans["test"]).to_numpy()].to_numpy(np.int64)
    return conflicting, leaking


def _pairs_within(group: np.ndarray) -> np.ndarray:
    """Pairs (first member, other member) linking every grouped row to its group's first row."""
    members = np.flatnonzero(group >= 0)
    if not len(members):
        return np.zeros((0, 2), np.int64)
    first = pd.Series(members).groupby(group[members]).transform("min").to_numpy()
    keep = first != members
    return np.stack([first[keep], members[keep]], axis=1)


def removal_mask(
    dataset: Dataset, report: CleaningReport, splits: tuple[str, ...] = ("Training",)
) -> pd.DataFrame:
    """Which rows of ``splits`` cleaning removes, and why (one boolean column per reason).

    Rules: blank images and FER+ non-faces go; every copy in a group with conflicting labels
    goes; a Training copy of a test image goes (leakage); of the remaining duplicates in a
    split, the first copy stays and the rest go."""
    in_scope = np.isin(dataset.splits, splits)
    first_copy = np.zeros(len(dataset), bool)
    keyed = pd.DataFrame({"g": report.near_group, "s": dataset.splits})
    first_copy[keyed[keyed.g >= 0].groupby(["g", "s"]).head(1).index.to_numpy()] = True
    reasons = pd.DataFrame(
        {
            "blank": report.blank,
            "not_face_ferplus": report.not_face_ferplus,
            "conflicting_labels": report.conflicting_labels,
            "leakage": report.leakage & (dataset.splits == "Training"),
            "duplicate_copy": report.near_duplicate & ~first_copy,
        }
    )
    return reasons & in_scope[:, None]


def clean(
    dataset: Dataset,
    report: CleaningReport | None = None,
    splits: tuple[str, ...] = ("Training",),
) -> tuple[Dataset, pd.Series]:
    """``dataset`` without the rows :func:`removal_mask` flags in ``splits``.

    Returns the cleaned dataset and the number of rows removed per reason (a row with several
    reasons counts under each; ``total`` counts rows)."""
    report = report or find_issues(dataset)
    reasons = removal_mask(dataset, report, splits)
    drop = reasons.any(axis=1).to_numpy()
    counts = reasons.sum().astype(int)
    counts["total"] = int(drop.sum())
    return dataset.take(~drop), counts


def examples(
    dataset: Dataset, report: CleaningReport, per_finding: int = 3, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """Example rows for each finding: single rows for ``blank`` and ``not_face_ferplus``, two
    members of one group for the duplicate findings (labels disagree for
    ``conflicting_labels``; a Training and a test copy for ``leakage``)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for name in ("blank", "not_face_ferplus"):
        rows = np.flatnonzero(getattr(report, name))
        out[name] = [np.array([i]) for i in rng.permutation(rows)[:per_finding]]
    exact, near = report.exact_group, report.near_group
    near_only = np.setdiff1d(
        report.near_group[report.near_group >= 0], report.near_group[exact >= 0]
    )
    choices = {
        "exact_duplicate": (exact, np.unique(exact[exact >= 0]), None),
        "near_duplicate": (near, near_only, None),
        "conflicting_labels": (near, np.unique(near[report.conflicting_labels]), "label"),
        "leakage": (near, np.unique(near[report.leakage]), "split"),
    }
    for name, (group, ids, differ) in choices.items():
        out[name] = []
        for gid in rng.permutation(ids)[:per_finding]:
            members = np.flatnonzero(group == gid)
            first = members[0]
            if differ == "label":
                members = members[dataset.labels[members] != dataset.labels[first]]
            elif differ == "split":
                first = members[dataset.splits[members] == "Training"][0]
                members = members[dataset.splits[members] != "Training"]
            else:
                members = members[members != first]
            out[name].append(np.array([first, members[0]]))
    return out
