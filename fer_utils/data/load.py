"""``load_fer2013``: every edition of FER2013 to one :class:`Dataset`, with a parsed cache."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from isal import igzip  # ISA-L gzip: about 3× faster than the standard library's on this file

from fer_utils.config import EMOTIONS, IMAGE_SIZE, SPLITS, cache_dir
from fer_utils.data.csv_format import parse_fer_csv
from fer_utils.data.dataset import DataError, Dataset
from fer_utils.data.ferplus import read_ferplus
from fer_utils.data.image_folder import IMAGE_SUFFIXES, read_image_folder, regular_member
from fer_utils.data.locate import find_data, find_ferplus
from fer_utils.files import read_cache, write_cache

log = logging.getLogger(__name__)
CACHE_VERSION = 1
_ARRAYS = ("images", "labels", "splits", "source_index")


def _is_csv_source(path: Path) -> bool:
    """True for a CSV edition (plain, .gz, tarball, or a zip holding a CSV)."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".tar.gz", ".tgz", ".tar")):
        return True
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.lower().endswith(".csv") for n in archive.namelist())
    return False


def _csv_bytes(path: Path, raw: bytes) -> bytes:
    """The CSV text of a plain, gzipped, tarred or zipped challenge file."""
    name = path.name.lower()
    if name.endswith((".gz", ".tgz")) and not raw.startswith(b"\x1f\x8b"):
        raise DataError(
            f"{path}: not a gzip file, though its name ends in .gz (it starts {raw[:12]!r}); "
            "rename it for what it is, or download it again (python -m fer_utils download)."
        )
    try:
        if name.endswith(".gz") and not name.endswith(".tar.gz"):
            return igzip.decompress(raw)
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                named = [m for m in tar.getmembers() if m.name.endswith("fer2013.csv")]
                members = [m for m in named if m.isfile()]  # not a link, folder or pipe
                if not members:
                    found = f" ({named[0].name} is not a regular file)" if named else ""
                    raise DataError(
                        f"{path}: the archive holds no regular fer2013.csv file{found}; "
                        "download it again (python -m fer_utils download) or pass the CSV "
                        "itself (--data path/to/fer2013.csv)."
                    )
                return tar.extractfile(members[0]).read()  # type: ignore[union-attr]
        if name.endswith(".zip"):
            # deadskull7/fer2013 zips fer2013.csv; the challenge's zip holds icml_face_data.csv
            # (emotion, Usage, pixels) and fer2013.tar.gz.
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                names = [i.filename for i in archive.infolist() if regular_member(i)]
                for wanted in ("fer2013.csv", "icml_face_data.csv", "fer2013.tar.gz"):
                    found = [n for n in names if n.lower().endswith(wanted)]
                    if found:
                        return _csv_bytes(Path(found[0]), archive.read(found[0]))
                raise DataError(
                    f"{path}: the zip holds no regular fer2013.csv file ({len(names)} files); "
                    "download it again (python -m fer_utils download)."
                )
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: the archive is damaged ({error}); download it again "
            "(python -m fer_utils download)."
        ) from error
    return raw


def _folder_hash(folder: Path) -> str:
    """SHA-256 over the relative names and bytes of every image below ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():  # as read_image_folder
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _read_cached(path: Path) -> tuple[dict[str, np.ndarray], int, dict[str, int]]:
    """(arrays, number of source rows, report) of a cache file, or a ValueError when they are
    not those of a dataset (another array's length, shape or type)."""
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":
            raise ValueError("not an .npz archive")
    with np.load(path, allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in _ARRAYS}
        n_source_rows = int(stored["n_source_rows"])
        keys, values = stored["report_keys"], stored["report_values"]
    images, labels, splits = arrays["images"], arrays["labels"], arrays["splits"]
    face = (IMAGE_SIZE, IMAGE_SIZE)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != face:
        raise ValueError(f"images are {images.dtype} {images.shape}, not uint8 (N, 48, 48)")
    for name in _ARRAYS[1:]:
        if arrays[name].shape != (len(images),):
            raise ValueError(f"{name} has shape {arrays[name].shape}, not ({len(images)},)")
    if labels.dtype.kind not in "iu" or arrays["source_index"].dtype.kind not in "iu":
        raise ValueError("labels or source_index are not integers")
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(EMOTIONS):
        raise ValueError("labels outside 0..6")
    if splits.dtype.kind != "U" or not set(np.unique(splits).tolist()) <= set(SPLITS):
        raise ValueError("splits that are not FER2013 Usage values")
    if keys.ndim != 1 or keys.shape != values.shape:
        raise ValueError("report keys and counts of different lengths")
    return arrays, n_source_rows, dict(zip(keys.tolist(), values.tolist(), strict=True))


def load_fer2013(
    path: str | os.PathLike | None = None,
    *,
    ferplus: str | os.PathLike | bool = True,
    errors: str = "raise",
    cache: bool = True,
) -> Dataset:
    """Load FER2013 from any edition a user has.

    Args:
        path: a file or folder (see :func:`fer_utils.data.locate.find_data`); None searches
            ``$FER2013_PATH`` then ``data/``.
        ferplus: attach FER+ votes. True looks for ``fer2013new.csv`` (``$FERPLUS_PATH``,
            beside the data, ``data/``) and goes without when there is none; a path requires
            that file; False skips it. Only CSV editions are row-aligned with FER+.
        errors: ``"raise"`` (default) stops at the first bad row or file with a message that
            names it; ``"skip"`` excludes bad rows and counts them in ``Dataset.report``.
        cache: reuse / write a parsed ``.npz`` keyed by the source's SHA-256 (``FER_CACHE``).
            A damaged cache file is re-parsed and rewritten, and a cache folder that cannot be
            written is skipped, each with a warning: the cache never stops a load.

    Returns:
        The :class:`Dataset`, rows in source order.
    """
    source = find_data(path)
    if not os.access(source, os.R_OK):
        raise DataError(f"{source}: not readable (check its permissions).")
    is_csv = _is_csv_source(source)
    raw = source.read_bytes() if source.is_file() else None
    sha = hashlib.sha256(raw).hexdigest() if raw is not None else _folder_hash(source)
    cached = cache_dir() / f"fer2013-{sha[:24]}-{errors}-v{CACHE_VERSION}.npz"

    stored = read_cache(cached, _read_cached) if cache else None
    if stored is not None:
        arrays, n_source_rows, report = stored
        log.info("loaded %s from cache %s", source, cached)
    elif is_csv:
        parsed = parse_fer_csv(_csv_bytes(source, raw), str(source), errors)  # type: ignore[arg-type]
        arrays = {k: getattr(parsed, k) for k in _ARRAYS}
        n_source_rows = parsed.n_rows
        report = {f"excluded: {reason}": n for reason, n in parsed.excluded.items()}
    else:
        rows = read_image_folder(source, errors)
        arrays = {k: getattr(rows, k) for k in _ARRAYS}
        n_source_rows = len(rows.labels)
        report = rows.report
    if cache and stored is None:
        write_cache(cached, lambda temporary: np.savez(
            temporary, **arrays, n_source_rows=n_source_rows,
            report_keys=np.array(list(report), dtype=str),
            report_values=np.array(list(report.values()), dtype=np.int64),
        ))  # fmt: skip

    for reason, count in report.items():
        log.warning("%s: %s: %d", source.name, reason, count)
    dataset = Dataset(**arrays, source=str(source), sha256=sha, report=report)
    if ferplus is False:
        return dataset
    ferplus_path = find_ferplus(None if ferplus is True else ferplus, near=source)
    if ferplus_path is None:
        return dataset
    if not is_csv:
        if ferplus is True:
            return dataset
        raise DataError(
            f"FER+ ({ferplus_path}) is aligned with the rows of fer2013.csv, not with the "
            f"image-folder edition ({source}); load the CSV to use FER+ labels."
        )
    try:
        votes = read_ferplus(ferplus_path, n_source_rows, dataset.source_index, dataset.splits)
    except DataError as error:
        if ferplus is not True:
            raise
        log.warning("not using the FER+ file found: %s", error)
        return dataset
    return Dataset(**arrays, source=str(source), sha256=sha, report=report, ferplus=votes)
