"""Cleaning finds what was planted in real faces, and cleans Training only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_utils import cleaning
from fer_utils.cli import main
from fer_utils.config import SPLITS
from fer_utils.data import Dataset, load_fer2013

from conftest import SAMPLE_CSV, face_text, write_csv


@pytest.fixture(scope="module")
def planted() -> tuple[Dataset, dict[str, int]]:
    """The bundled sample (real faces) plus four planted rows:

    * ``leak``: an exact copy of a Training face, in PrivateTest, same label;
    * ``conflict``: a near copy (brighter, re-encoded as JPEG) of another Training face, in
      Training, with a different label;
    * ``blank``: a uniform grey image in Training."""
    sample = load_fer2013(SAMPLE_CSV, ferplus=False)
    train = np.flatnonzero(sample.splits == "Training")
    a, b = train[0], train[5]
    brighter = np.clip(sample.images[b].astype(int) + 10, 0, 255).astype(np.uint8)
    near = cv2.imdecode(cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], 0)
    extra_images = np.stack([sample.images[a], near, np.full((48, 48), 128, np.uint8)])
    extra_labels = np.array([sample.labels[a], (sample.labels[b] + 1) % 7, 3])
    n = len(sample)
    dataset = dataclasses.replace(
        sample,
        images=np.concatenate([sample.images, extra_images]),
        labels=np.concatenate([sample.labels, extra_labels]),
        splits=np.concatenate([sample.splits, ["PrivateTest", "Training", "Training"]]),
        source_index=np.arange(n + 3),
    )
    return dataset, {
        "original": a,
        "leak": n,
        "near_original": b,
        "conflict": n + 1,
        "blank": n + 2,
    }


def test_findings_are_exactly_the_planted_rows(planted) -> None:
    dataset, rows = planted
    n = rows["leak"]
    before = cleaning.find_issues(dataset.take(slice(0, n)), progress=False).flags()
    after = cleaning.find_issues(dataset, progress=False).flags()

    def new_rows(finding: str) -> list[int]:
        flagged = set(np.flatnonzero(after[finding]))
        return sorted(flagged - set(np.flatnonzero(before[finding])))

    assert new_rows("blank") == [rows["blank"]]
    assert new_rows("exact_duplicate") == sorted([rows["original"], rows["leak"]])
    assert new_rows("leakage") == sorted([rows["original"], rows["leak"]])
    assert new_rows("conflicting_labels") == sorted([rows["near_original"], rows["conflict"]])
    assert new_rows("near_duplicate") == sorted(
        [rows["original"], rows["near_original"], rows["leak"], rows["conflict"]]
    )


def test_clean_removes_from_training_only(planted) -> None:
    dataset, rows = planted
    n = rows["leak"]
    _, removed_before = cleaning.clean(dataset.take(slice(0, n)))
    cleaned, removed = cleaning.clean(dataset)
    kept = set(cleaned.source_index.tolist())
    assert rows["leak"] in kept  # the test copy stays: test splits are never cleaned
    for name in ("original", "near_original", "conflict", "blank"):
        assert rows[name] not in kept
    assert removed["total"] - removed_before["total"] == 4
    for split in ("PublicTest", "PrivateTest"):
        assert (cleaned.splits == split).sum() == (dataset.splits == split).sum()


def test_look_alike_hashes_without_pixel_agreement_are_not_duplicates(planted) -> None:
    dataset, _ = planted
    report = cleaning.find_issues(dataset, max_distance=64, min_correlation=1.01, progress=False)
    assert not report.near_duplicate[~report.exact_duplicate].any()


def test_near_pairs_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 50, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 50).astype(np.uint64)
    hashes = np.concatenate([base, base ^ flips])  # each base hash has a 1-bit neighbour
    pairs = cleaning.near_pairs(hashes, max_distance=1, block=7)
    expected = {
        (i, j)
        for i in range(100)
        for j in range(i + 1, 100)
        if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 1
    }
    assert {(i, j) for i, j, _ in pairs.tolist()} == expected
    assert len(expected) >= 50


@pytest.fixture
def distinct_csv(tmp_path: Path) -> Path:
    """40 random faces, all distinct, in every split: no duplicate groups at all."""
    rows = [(str(k % 7), face_text(1000 + k), SPLITS[k % 3]) for k in range(40)]
    return write_csv(tmp_path / "distinct.csv", rows)


@pytest.mark.parametrize(
    "rows",
    [slice(None), slice(0, 3), slice(0, 1), slice(0, 0)],
    ids=["40-rows", "one-per-split", "training-only", "empty"],
)
def test_data_without_duplicates_cleans_to_itself(distinct_csv: Path, rows: slice) -> None:
    dataset = load_fer2013(distinct_csv, ferplus=False).take(rows)
    report = cleaning.find_issues(dataset, progress=False)
    assert not report.flags().to_numpy().any()  # no duplicates, conflicts, leakage or blanks
    summary = report.summary(dataset)
    assert list(summary.columns) == [*SPLITS, "total"] and (summary.to_numpy() == 0).all()
    cleaned, removed = cleaning.clean(dataset, report)
    assert len(cleaned) == len(dataset) and removed["total"] == 0
    assert removed["conflicting_labels"] == removed["leakage"] == 0


def test_clean_command_on_data_without_duplicates(distinct_csv: Path, capsys) -> None:
    assert main(["clean", "--data", str(distinct_csv)]) == 0
    out = capsys.readouterr().out
    assert "Findings" in out and "leakage" in out and "removes" in out
