"""The data layer on real data (split sizes, class counts, every edition) and on bad input."""

from __future__ import annotations

import gzip
import io
import logging
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fer_utils.config import EMOTIONS, SPLITS
from fer_utils.data import DataError, find_data, load_fer2013
from fer_utils.data.csv_format import parse_fer_csv
from fer_utils.data.download import download_fer2013

from conftest import REAL_COUNTS, ROOT, SAMPLE_CSV, face_text, write_csv


def counts_by_split(dataset) -> dict[str, list[int]]:
    table = dataset.counts()
    return {split: table.loc[split, list(EMOTIONS)].tolist() for split in SPLITS}


# --- the real data --------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_csv_has_published_split_sizes_and_class_counts(real_csv: Path) -> None:
    dataset = load_fer2013(real_csv)
    assert counts_by_split(dataset) == REAL_COUNTS
    assert dataset.images.shape == (35887, 48, 48) and dataset.images.dtype == np.uint8
    assert np.array_equal(dataset.source_index, np.arange(35887))
    assert dataset.report == {}


@pytest.mark.real_data
def test_real_csv_pixels_match_a_plain_pandas_parse(real_csv: Path) -> None:
    dataset = load_fer2013(real_csv)
    for skip in (0, 35000):  # the first rows and the last ones
        rows = pd.read_csv(real_csv, skiprows=range(1, skip + 1), nrows=300)
        expected = np.stack([np.array(p.split(), dtype=np.uint8) for p in rows.pixels])
        assert np.array_equal(dataset.images[skip : skip + 300].reshape(300, -1), expected)
        assert np.array_equal(dataset.labels[skip : skip + 300], rows.emotion.to_numpy())
        assert np.array_equal(dataset.splits[skip : skip + 300], rows.Usage.to_numpy(dtype=str))


@pytest.mark.real_data
def test_cached_load_equals_fresh_parse(real_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FER_CACHE", str(tmp_path))
    fresh = load_fer2013(real_csv, ferplus=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    cached = load_fer2013(real_csv, ferplus=False)
    for name in ("images", "labels", "splits", "source_index"):
        assert np.array_equal(getattr(fresh, name), getattr(cached, name))
    assert fresh.sha256 == cached.sha256


@pytest.mark.real_data
def test_ferplus_is_attached_and_consistent(real_csv: Path) -> None:
    dataset = load_fer2013(real_csv)
    plus = dataset.ferplus
    assert plus is not None and plus.votes.shape == (35887, 10)
    assert 0 < plus.not_face.sum() < 500
    majority = plus.majority()
    assert set(np.unique(majority)) <= set(range(-1, 7))
    assert (majority[plus.not_face] == -1).all()
    soft = plus.soft_labels()
    voted = soft.sum(axis=1) > 0
    assert np.allclose(soft[voted].sum(axis=1), 1)
    # FER+ agrees with the original label on most faces, far above chance (1/7).
    has_majority = majority >= 0
    assert (majority[has_majority] == dataset.labels[has_majority]).mean() > 0.5


@pytest.mark.real_data
def test_image_folder_test_zip_has_the_test_split_counts(real_images_zip: Path) -> None:
    dataset = load_fer2013(real_images_zip)
    counts = counts_by_split(dataset)
    assert counts["PublicTest"] == REAL_COUNTS["PublicTest"]
    assert counts["PrivateTest"] == REAL_COUNTS["PrivateTest"]
    assert dataset.ferplus is None  # ids in file names are not CSV rows
    with pytest.raises(DataError, match="no Training rows"):
        dataset.split("Training")


# --- every edition gives the same arrays ----------------------------------------------------


def test_sample_loads_with_its_ferplus_rows() -> None:
    dataset = load_fer2013(SAMPLE_CSV)
    assert len(dataset) == 280 and set(dataset.splits) == set(SPLITS)
    assert dataset.ferplus is not None and len(dataset.ferplus.votes) == 280


def test_gz_tar_and_zip_editions_equal_the_plain_csv(tmp_path: Path) -> None:
    text = gzip.decompress(SAMPLE_CSV.read_bytes())
    plain = tmp_path / "fer2013.csv"
    plain.write_bytes(text)
    with tarfile.open(tmp_path / "fer2013.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("fer2013/fer2013.csv")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    with zipfile.ZipFile(tmp_path / "fer2013.zip", "w") as archive:
        archive.writestr("fer2013.csv", text)
    reference = load_fer2013(plain, ferplus=False)
    for name in ("fer2013.tar.gz", "fer2013.zip"):
        other = load_fer2013(tmp_path / name, ferplus=False)
        assert np.array_equal(other.images, reference.images)
        assert np.array_equal(other.labels, reference.labels)
    gz = load_fer2013(SAMPLE_CSV, ferplus=False)
    assert np.array_equal(gz.images, reference.images)


def test_column_order_crlf_and_quotes_do_not_matter(tmp_path: Path, good_rows) -> None:
    reference = load_fer2013(write_csv(tmp_path / "a.csv", good_rows), ferplus=False)
    reordered = [(e, u, f'"{p}"') for e, p, u in good_rows]
    path = write_csv(tmp_path / "b.csv", reordered, header="emotion, Usage, pixels")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    other = load_fer2013(path, ferplus=False)
    assert np.array_equal(other.images, reference.images)
    assert np.array_equal(other.labels, reference.labels)
    assert np.array_equal(other.splits, reference.splits)


def test_image_folder_as_folder_and_zip(tmp_path: Path) -> None:
    sample = load_fer2013(SAMPLE_CSV, ferplus=False)
    folder = tmp_path / "fer"
    archive = zipfile.ZipFile(tmp_path / "fer.zip", "w")
    for k in range(len(sample)):
        top = "train" if sample.splits[k] == "Training" else "test"
        name = f"{top}/{EMOTIONS[sample.labels[k]]}/{sample.splits[k]}_{k}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        _, png = cv2.imencode(".png", sample.images[k])
        (folder / name).write_bytes(png.tobytes())
        archive.writestr(name, png.tobytes())
    archive.close()
    for source in (folder, tmp_path / "fer.zip"):
        dataset = load_fer2013(source)
        assert counts_by_split(dataset) == counts_by_split(sample)
        order = np.argsort(dataset.source_index)  # ids are the sample's row numbers
        assert np.array_equal(dataset.images[order], sample.images)


def test_image_folder_converts_colour_16_bit_and_size_and_counts_it(tmp_path: Path) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    faces = {
        "colour": cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR),
        "deep": grey.astype(np.uint16) * 257,
        "large": cv2.resize(grey, (96, 96), interpolation=cv2.INTER_NEAREST),
    }
    for k, face in enumerate(faces.values()):
        path = tmp_path / "test" / "happy" / f"PrivateTest_{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), face)
    dataset = load_fer2013(tmp_path)
    assert dataset.images.shape == (3, 48, 48)
    assert dataset.report == {
        "converted to grey": 1, "converted from 16 to 8 bits": 1, "resized to 48×48": 1,
    }  # fmt: skip
    assert np.abs(dataset.images.astype(int) - grey).max() <= 1


# --- finding the data -----------------------------------------------------------------------


def test_find_data_precedence(tmp_path: Path, monkeypatch, good_rows) -> None:
    project = tmp_path / "project"
    for sub in ("fer_utils", "notebooks", "data"):
        (project / sub).mkdir(parents=True)
    in_data = write_csv(project / "data" / "fer2013.csv", good_rows)
    in_env = write_csv(tmp_path / "env.csv", good_rows)
    given = write_csv(tmp_path / "given.csv", good_rows)
    monkeypatch.chdir(project / "notebooks")
    monkeypatch.delenv("FER2013_PATH", raising=False)
    assert find_data() == in_data
    monkeypatch.setenv("FER2013_PATH", str(in_env))
    assert find_data() == in_env
    assert find_data(given) == given


def test_missing_data_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FER2013_PATH", raising=False)
    with pytest.raises(DataError, match="FER2013_PATH") as error:
        load_fer2013(tmp_path / "nope.csv")
    assert "python -m fer_utils download" in str(error.value)
    monkeypatch.chdir(tmp_path)  # no project here, and the repo's data/ holds no dataset
    with pytest.raises(DataError, match="was not found"):
        find_data()


# --- bad input: one clear error naming the row, or counted exclusion ------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: (r[0], r[1].rsplit(" ", 4)[0], r[2]), "wrong pixel count"),
        (lambda r: (r[0], r[1].replace(" ", " 12.5 ", 1).rsplit(" ", 1)[0], r[2]), "non-integer"),
        (
            lambda r: (r[0], r[1].replace(" ", " abc ", 1).rsplit(" ", 1)[0], r[2]),
            "letters outside",
        ),
        (lambda r: ("9", r[1], r[2]), "label outside 0–6"),
        (lambda r: (r[0], r[1].replace("1", "1000", 1), r[2]), "above 255"),
        (lambda r: (r[0], r[1], "Validation"), "Usage not one of"),
        (lambda r: (r[0] + ",1", r[1], r[2]), "wrong number of fields"),
    ],
)
def test_bad_row_is_named_or_skipped_and_counted(
    tmp_path: Path, good_rows, change, message
) -> None:
    rows = list(good_rows)
    rows[3] = change(rows[3])
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=message) as error:
        load_fer2013(path, ferplus=False)
    assert "line 5" in str(error.value) and "bad.csv" in str(error.value)  # header is line 1
    skipped = load_fer2013(path, ferplus=False, errors="skip")
    assert len(skipped) == 6 and sum(skipped.report.values()) >= 1
    assert all(k.startswith("excluded: ") for k in skipped.report)
    assert 3 not in skipped.source_index
    clean = load_fer2013(write_csv(tmp_path / "good.csv", good_rows), ferplus=False)
    assert np.array_equal(skipped.images, np.delete(clean.images, 3, axis=0))


def test_wrong_columns(tmp_path: Path, good_rows) -> None:
    path = write_csv(tmp_path / "x.csv", good_rows, header="label,pixels,Usage")
    with pytest.raises(DataError, match="emotion, pixels, Usage"):
        load_fer2013(path, ferplus=False)


def test_a_csv_without_its_header_row_says_so_in_one_short_line(tmp_path: Path, good_rows):
    headless = tmp_path / "x.csv"
    headless.write_text("\n".join(",".join(row) for row in good_rows) + "\n")
    with pytest.raises(DataError, match="no header row: its first line is a face") as error:
        load_fer2013(headless, ferplus=False)
    assert len(str(error.value)) < 300  # not the face's 2,304 numbers


def test_a_gz_name_on_a_file_that_is_not_gzip_says_so(tmp_path: Path, good_rows) -> None:
    fake = tmp_path / "fer2013.csv.gz"
    fake.write_bytes(write_csv(tmp_path / "plain.csv", good_rows).read_bytes())
    with pytest.raises(DataError, match=r"not a gzip file, though its name ends in \.gz"):
        load_fer2013(fake, ferplus=False, cache=False)  # (a cached parse of its bytes would do)


def test_header_only_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        load_fer2013(write_csv(tmp_path / "h.csv", []), ferplus=False)
    only_test = write_csv(tmp_path / "t.csv", [("3", face_text(1), "PrivateTest")])
    dataset = load_fer2013(only_test, ferplus=False)
    with pytest.raises(DataError, match="no Training rows"):
        dataset.split("Training")


def test_unreadable_image_file_is_named_or_skipped(tmp_path: Path) -> None:
    good = tmp_path / "test" / "sad" / "PublicTest_1.png"
    good.parent.mkdir(parents=True)
    cv2.imwrite(str(good), np.zeros((48, 48), np.uint8) + 80)
    (good.parent / "PublicTest_2.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"PublicTest_2\.jpg.*cannot decode"):
        load_fer2013(tmp_path)
    skipped = load_fer2013(tmp_path, errors="skip")
    assert len(skipped) == 1 and skipped.report == {"excluded: unreadable image file": 1}


def test_parser_rejects_a_bad_errors_mode() -> None:
    with pytest.raises(ValueError, match="errors"):
        parse_fer_csv(b"emotion,pixels,Usage\n", "x", errors="ignore")


# --- download ---------------------------------------------------------------------------------


def test_download_without_credentials_explains_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "fer_utils", "download", "--dest", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "kaggle.json" in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_download_keeps_a_file_already_in_place(tmp_path: Path) -> None:
    (tmp_path / "fer2013.zip").write_bytes(b"already here")
    assert download_fer2013(tmp_path) == tmp_path / "fer2013.zip"
    assert (tmp_path / "fer2013.zip").read_bytes() == b"already here"


def test_cli_info_prints_counts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fer_utils", "info", "--data", str(SAMPLE_CSV)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rows    280" in done.stdout
    assert done.stdout.split("Training")[1].split()[:8] == ["24"] * 7 + ["168"]


def test_label_fraction_is_stratified_and_keeps_the_test_splits() -> None:
    dataset = load_fer2013(SAMPLE_CSV)
    part = dataset.label_fraction(0.25, seed=1)
    full, kept = dataset.counts(), part.counts()
    expected = (full.loc["Training"].drop("total") * 0.25).round().clip(lower=1)
    assert (kept.loc["Training"].drop("total") == expected).all()
    assert kept.loc[["PublicTest", "PrivateTest"]].equals(full.loc[["PublicTest", "PrivateTest"]])
    assert not np.array_equal(part.source_index, dataset.label_fraction(0.25, seed=2).source_index)
    with pytest.raises(ValueError, match="fraction"):
        dataset.label_fraction(0)


# --- the parse cache: damaged, unwritable, shared ---------------------------------------------


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("fer2013-*.npz"))


def _assert_same_rows(one, other) -> None:
    for name in ("images", "labels", "splits", "source_index"):
        assert np.array_equal(getattr(one, name), getattr(other, name)), name


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad crc", "wrong shapes"])
def test_a_damaged_cache_file_is_reparsed_and_rewritten(
    tmp_path: Path, monkeypatch, caplog, good_rows, damage: str
) -> None:
    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    source = write_csv(tmp_path / "fer2013.csv", good_rows)
    fresh = load_fer2013(source, ferplus=False)
    [cached] = _cache_files(tmp_path / "cache")
    good = cached.read_bytes()
    if damage == "truncated":
        cached.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        cached.write_bytes(bytes(range(256)) * 8)
    elif damage == "bad crc":  # one flipped pixel byte in the middle of the images
        middle = len(good) // 2
        cached.write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :])
    else:  # a readable archive whose arrays do not belong together
        with np.load(cached) as stored:
            arrays = dict(stored)
        arrays["labels"] = arrays["labels"][:-1]
        np.savez(cached, **arrays)
    with caplog.at_level(logging.WARNING):
        again = load_fer2013(source, ferplus=False)
    _assert_same_rows(again, fresh)
    warnings = [r.getMessage() for r in caplog.records if str(cached) in r.getMessage()]
    assert len(warnings) == 1 and "re-parsing" in warnings[0], warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the rewritten file is whole and used again
        _assert_same_rows(load_fer2013(source, ferplus=False), fresh)
    assert not caplog.records and _cache_files(tmp_path / "cache") == [cached]


def _unwritable_folder(tmp_path: Path, kind: str) -> Path:
    """A cache folder no one can write: read-only, or (for root, whom permissions do not
    stop) a path below a regular file."""
    if kind == "read-only":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        if not os.access(folder, os.W_OK):
            return folder
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "cache"


@pytest.mark.parametrize("kind", ["read-only", "below a file"])
def test_an_unwritable_cache_folder_does_not_stop_loading(
    tmp_path: Path, monkeypatch, caplog, good_rows, kind: str
) -> None:
    from fer_utils.cleaning import perceptual_hashes

    cache = _unwritable_folder(tmp_path, kind)
    monkeypatch.setenv("FER_CACHE", str(cache))
    source = write_csv(tmp_path / "fer2013.csv", good_rows)
    try:
        with caplog.at_level(logging.WARNING):
            dataset = load_fer2013(source, ferplus=False)
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and str(cache) in warnings[0], warnings
        assert "FER_CACHE" in warnings[0] and "--no-cache" in warnings[0]
        _assert_same_rows(dataset, load_fer2013(source, ferplus=False, cache=False))
        caplog.clear()
        with caplog.at_level(logging.WARNING):  # the hashes' cache is just as optional
            hashes = perceptual_hashes(dataset.images, progress=False)
        assert hashes.shape == (len(dataset),) and len(caplog.records) == 1
        assert not cache.exists() or not any(cache.iterdir())
    finally:
        if cache.name == "read-only":
            cache.chmod(0o700)


def test_a_damaged_hash_cache_is_recomputed(tmp_path: Path, monkeypatch, caplog) -> None:
    from fer_utils.cleaning import perceptual_hashes

    monkeypatch.setenv("FER_CACHE", str(tmp_path))
    images = np.random.default_rng(3).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    fresh = perceptual_hashes(images, progress=False)
    [cached] = tmp_path.glob("phash-*.npy")
    for damage in (cached.read_bytes()[:100], b"garbage", None):
        if damage is None:
            np.save(cached, fresh[:-1])  # a whole file, for other images
        else:
            cached.write_bytes(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert np.array_equal(perceptual_hashes(images, progress=False), fresh)
        assert len(caplog.records) == 1 and "recomputing" in caplog.records[0].getMessage()
        assert np.array_equal(np.load(cached), fresh)


_LOAD_WHEN_TOLD = """
import sys
from fer_utils.data import load_fer2013
for path in sys.argv[1:]:
    print("ready", flush=True)
    sys.stdin.readline()  # the test tells all eight processes at once
    load_fer2013(path, ferplus=False)
print("done", flush=True)
"""


def test_first_loads_in_eight_processes_at_once_all_succeed(tmp_path: Path) -> None:
    # Fresh files, each loaded by the eight processes at the same moment. A clash is a matter
    # of timing (about one round in eight clashed with a shared temporary name): hence 40.
    sources = []
    for number in range(40):
        rows = [(str(k % 7), face_text(10 * number + k), SPLITS[k % 3]) for k in range(7)]
        sources.append(str(write_csv(tmp_path / f"fer2013-{number}.csv", rows)))
    env = {**os.environ, "FER_CACHE": str(tmp_path / "cache")}
    processes = []
    try:
        for k in range(8):
            with open(tmp_path / f"stderr-{k}", "w") as stderr:
                processes.append(subprocess.Popen(
                    [sys.executable, "-c", _LOAD_WHEN_TOLD, *sources], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT,
                ))  # fmt: skip
        for _ in sources:
            if [p.stdout.readline().strip() for p in processes] != ["ready"] * 8:
                break  # one failed
            for p in processes:
                p.stdin.write("go\n")
                p.stdin.flush()
        for p in processes:  # so that none waits for a word that will not come
            p.stdin.close()
        finished = [p.stdout.read().strip() for p in processes]
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    errors = [(tmp_path / f"stderr-{k}").read_text()[-2000:] for k in range(8)]
    assert codes == [0] * 8 and finished == ["done"] * 8, errors
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == [p.name for p in _cache_files(tmp_path / "cache")] and len(names) == 40
    for source in sources:  # whole cache files, no temporary ones left behind
        assert len(load_fer2013(source, ferplus=False)) == 7


def test_cli_no_cache_writes_no_cache_file(tmp_path: Path) -> None:
    env = {**os.environ, "FER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "fer_utils", "info", "--data", str(SAMPLE_CSV), "--no-cache"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rows    280" in done.stdout
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# --- archive members that are not files ----------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE],
    ids=["symlink", "hardlink", "folder", "fifo"],
)
def test_a_tar_whose_fer2013_csv_is_not_a_file_is_named(tmp_path: Path, kind: bytes) -> None:
    with tarfile.open(tmp_path / "fer2013.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("fer2013/fer2013.csv")
        info.type = kind
        info.linkname = "fer2013/missing.csv" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        tar.addfile(info)
    with pytest.raises(DataError, match=r"no regular fer2013\.csv file"):
        load_fer2013(tmp_path / "fer2013.tar.gz", ferplus=False)


def test_image_folder_ignores_entries_that_are_not_files(tmp_path: Path) -> None:
    good = tmp_path / "test" / "sad" / "PublicTest_1.png"
    good.parent.mkdir(parents=True)
    cv2.imwrite(str(good), np.zeros((48, 48), np.uint8) + 80)
    (good.parent / "PublicTest_2.png").mkdir()  # a folder named like an image
    (good.parent / "PublicTest_3.png").symlink_to(tmp_path / "gone.png")  # a broken link
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as archive:
        archive.write(good, "test/sad/PublicTest_1.png")
        link = zipfile.ZipInfo("test/sad/PublicTest_4.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "PublicTest_1.png")
    for source, ignored in ((tmp_path, 1), (tmp_path / "faces.zip", 1)):
        dataset = load_fer2013(source, ferplus=False)
        assert len(dataset) == 1
        assert dataset.report == {
            "ignored: not a regular file (broken link, pipe, device, link in a zip)": ignored
        }


# --- download credentials ----------------------------------------------------------------------


@pytest.mark.parametrize("content", ["{not json", '{"username": "me"}', "[]"])
def test_download_with_a_malformed_kaggle_json_says_so(tmp_path: Path, content: str) -> None:
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text(content)
    (config / "kaggle.json").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env |= {"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(config)}
    done = subprocess.run(
        [sys.executable, "-m", "fer_utils", "download", "--dest", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "malformed" in done.stderr and str(config / "kaggle.json") in done.stderr
    assert "Settings" in done.stderr and "Traceback" not in done.stderr + done.stdout
