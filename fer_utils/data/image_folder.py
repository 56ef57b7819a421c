"""Reader for the Kaggle image-folder edition (``msambare/fer2013``), as a folder or its zip.

Layout: ``train/<emotion>/Training_<id>.jpg`` and
``test/<emotion>/{PublicTest,PrivateTest}_<id>.jpg``.
The split comes from the file-name prefix where there is one, else from the top folder
(``train`` → Training, ``test`` → PrivateTest; such files are counted in the report).
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from fer_utils.config import EMOTIONS, IMAGE_SIZE, SPLITS
from fer_utils.data.dataset import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_(\d+)", re.IGNORECASE)
_FOLDER_SPLIT = {"train": "Training", "test": "PrivateTest"}


@dataclass(frozen=True)
class ImageFolderRows:
    """Decoded faces of an image-folder edition, with counts of what was excluded or changed."""

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    source_index: np.ndarray
    report: dict[str, int]


def regular_member(info: zipfile.ZipInfo) -> bool:
    """True for a zip member that is a file: not a folder, nor a (Unix) symbolic link."""
    mode = info.external_attr >> 16
    return not info.is_dir() and not (mode and stat.S_ISLNK(mode))


def _entries(source: Path) -> Iterator[tuple[PurePosixPath, Callable[[], bytes] | None]]:
    """(relative path, reader) of every image name below a folder or inside a zip; the reader
    is None for an entry that is not a regular file (a broken link, a pipe, a zip symlink).
    Folders named like images are left out."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir():
                regular = path.is_file()  # follows links; False for broken ones and pipes
                yield (
                    PurePosixPath(path.relative_to(source).as_posix()),
                    path.read_bytes if regular else None,
                )
        return
    with zipfile.ZipFile(source) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            path = PurePosixPath(info.filename)
            if not info.is_dir() and path.suffix.lower() in IMAGE_SUFFIXES:
                regular = regular_member(info)
                yield path, (lambda info=info: archive.read(info)) if regular else None


def _label_and_split(path: PurePosixPath, where: str) -> tuple[int, str | None]:
    """Emotion from the parent folder's name; split from the top folder (None if unknown)."""
    emotion = path.parent.name.lower()
    if emotion not in EMOTIONS:
        raise DataError(
            f"{where}: folder {path.parent.name!r} is not an emotion; the image-folder edition "
            f"has train/<emotion>/ and test/<emotion>/ with emotions {', '.join(EMOTIONS)}."
        )
    top = next((p.lower() for p in path.parts[:-2] if p.lower() in _FOLDER_SPLIT), None)
    return EMOTIONS.index(emotion), _FOLDER_SPLIT.get(top) if top else None


def read_image_folder(source: Path, errors: str = "raise") -> ImageFolderRows:
    """Decode every face below ``source`` (a folder or a .zip) to grey 48×48 uint8.

    Colour images are converted to grey and other sizes resized (area interpolation); both
    are counted in ``report``. An unreadable file raises a :class:`DataError` naming it, or
    with ``errors="skip"`` is excluded and counted.
    """
    images, labels, splits, ids = [], [], [], []
    report: Counter[str] = Counter()
    for number, (path, read) in enumerate(_entries(source)):
        if read is None:
            report["ignored: not a regular file (broken link, pipe, device, link in a zip)"] += 1
            continue
        where = f"{source}:{path}" if source.is_file() else str(source / path)
        label, folder_split = _label_and_split(path, where)
        match = _PREFIX.match(path.stem)
        split = next(s for s in SPLITS if s.lower() == match[1].lower()) if match else None
        if split is None:
            if folder_split is None:
                raise DataError(
                    f"{where}: cannot tell the split: the name has no Training_/PublicTest_/"
                    "PrivateTest_ prefix and it is not below a train/ or test/ folder."
                )
            split = folder_split
            report[f"split taken from folder ({folder_split})"] += 1
        face = cv2.imdecode(np.frombuffer(read(), np.uint8), cv2.IMREAD_UNCHANGED)
        if face is None:
            if errors == "skip":
                report["excluded: unreadable image file"] += 1
                continue
            raise DataError(
                f"{where}: cannot decode this image file (truncated or not an image). "
                "Re-download the dataset, delete the file, or load with errors='skip' "
                "(--skip-bad-rows) to exclude unreadable files; they are counted."
            )
        if face.ndim == 3:
            code = cv2.COLOR_BGRA2GRAY if face.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            face = cv2.cvtColor(face, code)
            report["converted to grey"] += 1
        if face.dtype == np.uint16:
            face = (face // 257).astype(np.uint8)
            report["converted from 16 to 8 bits"] += 1
        if face.shape != (IMAGE_SIZE, IMAGE_SIZE):
            face = cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
            report["resized to 48×48"] += 1
        images.append(face)
        labels.append(label)
        splits.append(split)
        ids.append(int(match[2]) if match else number)
    if not images:
        raise DataError(
            f"{source}: no face images found (expected train/<emotion>/*.jpg and/or "
            "test/<emotion>/*.jpg, as in the Kaggle dataset msambare/fer2013)."
        )
    order = np.lexsort((np.array(ids), np.array([SPLITS.index(s) for s in splits])))
    return ImageFolderRows(
        images=np.stack(images)[order],
        labels=np.array(labels, dtype=np.int64)[order],
        splits=np.array(splits)[order],
        source_index=np.array(ids, dtype=np.int64)[order],
        report=dict(report),
    )
