"""The prediction pipeline: sources → frames → faces → crops → probabilities → one row per face.

Whatever happens to one input (unreadable, not an image, no face, any exception while working
on it) becomes a row with its status instead of stopping the batch; the caller decides how to
write the rows (:func:`write_rows`, :func:`output_lock`)."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
from tqdm import tqdm

from fer_utils.config import EMOTIONS
from fer_utils.data import as_batch
from fer_utils.errors import FerError, UsageError, require_choice
from fer_utils.files import writable_folder
from fer_utils.inference.classifier import Classifier
from fer_utils.inference.faces import HAAR_STEP, Face, crop_faces, make_detector
from fer_utils.inference.media import (
    Source,
    expand_sources,
    frame_count,
    frame_rate,
    frames,
)
from fer_utils.tta import PREDICT_DEFAULTS, TTA_SETS, tta_views

try:
    import fcntl
except ImportError:  # Windows: --out is written atomically but not locked
    fcntl = None

log = logging.getLogger(__name__)
STATUSES = ("ok", "no_face", "error", "skipped")  # every row has one of these
ANNOTATE_FAILED = "annotated copy not written"  # in the message of the rows it concerns
NOT_ANNOTATED = "not_annotated"  # write_rows' count of sources whose annotated copy failed
# New columns go at the end: readers of files written by older versions index them.
COLUMNS = [
    "source", "frame", "face", "status", "x", "y", "w", "h", "detector_score", "label",
    "confidence", *(f"p_{e}" for e in EMOTIONS), "message", "tta",
]  # fmt: skip
TTA_CHOICES = ("none", *TTA_SETS)  # predict's --tta: no augmentation, or a set of tta.py


def one_line(error: BaseException) -> str:
    """What went wrong with one input, in one line (no traceback)."""
    if isinstance(error, FerError):
        text = str(error)
    elif isinstance(error, MemoryError):
        text = "not enough memory to process it"
    elif isinstance(error, cv2.error):
        text = f"OpenCV failed in {error.func or 'a function'}: {error.err or error}"
    else:
        text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split()) or type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _status_row(source: Source, status: str, frame: int = 0, message: str = "") -> dict:
    return {"source": source.name, "frame": frame, "face": None, "status": status,
            "message": message}  # fmt: skip


def classify(classifier: Classifier, crops: np.ndarray, tta: str = "none") -> np.ndarray:
    """Probabilities (N, 7) of face crops (N, 48, 48): with a TTA set (:data:`TTA_CHOICES`),
    the mean over its views (:func:`fer_utils.tta.tta_views`), all classified in one batch."""
    faces = as_batch(crops)
    if tta == "none" or len(faces) == 0:
        return classifier(faces)
    views = np.concatenate(list(tta_views(faces, TTA_SETS[tta])))
    return classifier(views).reshape(-1, len(faces), len(EMOTIONS)).mean(axis=0)


def select_faces(faces: list[Face], min_score: float | None = None,
                 largest: bool = False) -> list[Face]:  # fmt: skip
    """``faces`` left to right (then top to bottom), without those whose detector score is
    below ``min_score``; with ``largest``, only the one with the largest box (the leftmost of
    equals)."""
    kept = sorted((f for f in faces if min_score is None or f.score >= min_score),
                  key=lambda f: (f.x, f.y))  # fmt: skip
    if largest and kept:
        return [max(kept, key=lambda f: f.w * f.h)]
    return kept


def _face_rows(source: Source, frame: int, faces: list[Face], probs: np.ndarray,
               tta: str) -> list[dict]:  # fmt: skip
    rows = []
    for i, (face, p) in enumerate(zip(faces, probs, strict=True)):
        rows.append({
            "source": source.name, "frame": frame, "face": i, "status": "ok",
            "x": face.x, "y": face.y, "w": face.w, "h": face.h,
            "detector_score": round(face.score, 4), "label": EMOTIONS[int(p.argmax())],
            "confidence": round(float(p.max()), 4),
            **{f"p_{e}": round(float(v), 5) for e, v in zip(EMOTIONS, p, strict=True)},
            "message": "", "tta": tta,
        })  # fmt: skip
    return rows


def draw(image: np.ndarray, faces: list[Face], probs: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with each face's box, label and confidence drawn on it."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face, p in zip(faces, probs, strict=True):
        cv2.rectangle(out, (face.x, face.y), (face.x + face.w, face.y + face.h), (0, 220, 0),
                      thickness)  # fmt: skip
        text = f"{EMOTIONS[int(p.argmax())]} {p.max():.0%}"
        scale = max(0.4, face.w / 160)
        cv2.putText(out, text, (face.x, max(12, face.y - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 220, 0), thickness, cv2.LINE_AA)  # fmt: skip
    return out


def annotated_path(folder: Path, source: Source, taken: set[Path]) -> Path:
    """Where ``source``'s annotated copy goes: ``<stem>.annotated.jpg`` (``.mp4`` for videos
    and webcams), ``<stem>-2.annotated…`` and on when an earlier source of the batch took that
    name; the name is added to ``taken``."""
    stem = "webcam" + source.name if source.kind == "webcam" else Path(source.name).stem
    suffix = f"annotated.{'jpg' if source.kind == 'image' else 'mp4'}"
    path = folder / f"{stem}.{suffix}"
    for k in itertools.count(2):
        if path not in taken:
            break
        path = folder / f"{stem}-{k}.{suffix}"
    taken.add(path)
    return path


class _Annotator:
    """Writes annotated copies: ``<stem>.annotated.jpg`` for images, ``.mp4`` for videos (at
    the rate of the frames kept); ``<stem>-2.annotated…`` when an earlier source of the same
    batch had that name (``a/img.jpg`` and ``b/img.jpg``), recorded in ``taken``. A copy that
    cannot be written is reported (warning, and the message of the frame's rows), not raised."""

    def __init__(self, folder: Path, source: Source, every: int, taken: set[Path]) -> None:
        self.source, self.problem = source.name, None
        self.is_image = source.kind == "image"
        self.path = annotated_path(folder, source, taken)
        self.fps, self.video = frame_rate(source, every), None

    def add(self, image: np.ndarray) -> str | None:
        """Write ``image`` (the next frame); the first time that fails, the message saying so
        (a video whose writer failed is not tried again), else None."""
        if self.problem:
            return None
        try:
            reason = self._write(image)
        except Exception as error:  # e.g. cv2.error for an image too large for JPEG
            reason = one_line(error)
        if reason:
            self.problem = f"{ANNOTATE_FAILED}: {self.path} ({reason})"
            log.warning("%s: %s", self.source, self.problem)
        return self.problem

    def _write(self, image: np.ndarray) -> str | None:
        """None once written, else why it was not."""
        if self.is_image or self.video is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_image:
            if cv2.imwrite(str(self.path), image):
                return None
            return "OpenCV could not write it: folder not writable, disk full or image too large"
        if self.video is None:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            size = (image.shape[1], image.shape[0])
            self.video = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
            if not self.video.isOpened():
                return "OpenCV could not open a video writer (no mp4v encoder, or not writable)"
        self.video.write(image)
        return None

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def _predict_source(
    source: Source, classifier: Classifier, detect, margin: float | None, every: int,
    max_frames: int | None, annotate: Path | None, taken: set[Path], tta: str,
    min_score: float | None, largest: bool,
) -> Iterator[dict]:  # fmt: skip
    annotator = _Annotator(annotate, source, every, taken) if annotate else None
    progress = tqdm(
        total=frame_count(source, every), unit="frame", desc=Path(source.name).name,
        disable=source.kind == "image", leave=False,
    )  # fmt: skip
    seen = faceless = 0
    try:
        for index, image in frames(source, every, max_frames):
            found = detect(image)
            faces = select_faces(found, min_score, largest)
            probs = classify(classifier, crop_faces(image, faces, margin), tta)
            problem = annotator.add(draw(image, faces, probs)) if annotator else None
            progress.update()
            seen += 1
            if faces:
                rows = _face_rows(source, index, faces, probs, tta)
            else:
                faceless += 1
                below = f" ({len(found)} scored below {min_score:g})" if found else ""
                rows = [_status_row(source, "no_face", index, "no face found" + below)]
            if problem:
                for row in rows:
                    row["message"] = "; ".join(filter(None, (row["message"], problem)))
            yield from rows
    finally:
        progress.close()
        if annotator:
            annotator.close()
    if faceless:
        frames_note = "" if source.kind == "image" else f" in {faceless} of {seen} frames"
        log.warning("%s: no face found%s", source.name, frames_note)


def predict_sources(
    inputs: list[str],
    classifier: Classifier,
    detector: str = "haar",
    margin: float | None = None,
    min_face: int = 30,
    step: float = HAAR_STEP,
    every: int = 1,
    max_frames: int | None = None,
    annotate: str | Path | None = None,
    progress: bool = True,
    tta: str | None = None,
    min_score: float | None = None,
    largest: bool = False,
    done: frozenset[str] = frozenset(),
    finished: Callable[[str], None] | None = None,
) -> Iterator[dict]:
    """Rows (see :data:`COLUMNS`) for every face in ``inputs``: image files, folders (recursive),
    videos (every ``every``-th frame) and webcam indices. Status ``ok`` per face, ``no_face`` for
    a frame without one, ``error`` (with the reason, also logged) for an input that cannot be
    used or on which anything failed, ``skipped`` for a file in a folder that is not an image or
    video. Every input gets at least one row; only KeyboardInterrupt and the like stop it.
    ``tta``: a name in :data:`TTA_CHOICES` for every source, None for
    :data:`~fer_utils.tta.PREDICT_DEFAULTS`;
    ``min_score`` and ``largest``: which faces of a frame are kept (:func:`select_faces`);
    ``margin``: None crops by the detector's geometry measured on FER2013
    (:data:`~fer_utils.inference.faces.CROP_GEOMETRY`), a number by the box's square widened by
    that fraction on each side; ``done``: sources (as rows name them) that an earlier run
    finished, passed over (``predict --resume``; webcams are live, never passed over);
    ``finished``: called with a source's name once all its rows are out, and a webcam's after
    each row (what an interrupted ``--out`` can keep)."""
    if tta is not None:
        require_choice("tta", tta, TTA_CHOICES)
    detect = make_detector(detector, min_face, step)
    margin = 0.0 if detector == "none" else margin  # the image is the crop: take it as it is
    annotate = Path(annotate) if annotate else None
    taken: set[Path] = set()  # annotated file names given out so far
    sources = []
    for source in expand_sources(inputs):
        if source.kind == "webcam" or source.name not in done:
            sources.append(source)
        elif annotate and source.kind in ("image", "video"):  # its copy keeps its name
            annotated_path(annotate, source, taken)
    for source in tqdm(sources, unit="file", disable=not progress or len(sources) < 2):
        if source.kind == "skipped":
            log.info("%s: skipped, %s", source.name, source.problem)
            yield _status_row(source, "skipped", message=source.problem or "")
        elif source.problem:
            log.warning("%s: %s", source.name, source.problem)
            yield _status_row(source, "error", message=source.problem)
        else:
            try:
                for row in _predict_source(
                    source, classifier, detect, margin, every, max_frames, annotate, taken,
                    tta or PREDICT_DEFAULTS[source.kind], min_score, largest,
                ):  # fmt: skip
                    yield row
                    if finished and source.kind == "webcam":  # a live stream never ends:
                        finished(source.name)  # each of its rows is kept as it comes
            except Exception as error:  # whatever it is, it is this input's row: the batch goes on
                message = one_line(error)
                log.warning("%s: %s", source.name, message)
                if not isinstance(error, FerError):
                    log.debug("%s: the traceback", source.name, exc_info=True)
                yield _status_row(source, "error", message=message)
        if finished:
            finished(source.name)


@contextlib.contextmanager
def output_lock(path: str | Path, what: str = "--out") -> Iterator[Path]:
    """Check that ``path`` can be written (its folder exists and is writable) and hold an
    exclusive lock on ``<path>.lock`` beside it while the block runs: a second writer of the
    same file fails at once with a :class:`UsageError` instead of replacing the first one's
    rows. The lock file stays (removing it would let two writers lock two different files)."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise UsageError(f"{what} {target} is a folder: give a file name, e.g. "
                         f"{target / 'faces.csv'}")  # fmt: skip
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"the folder of {what} {target} {state}: create the folder or choose "
                         f"another {what}")  # fmt: skip
    writable_folder(folder, what)
    lock = target.with_name(target.name + ".lock")
    try:
        handle = open(lock, "a")  # noqa: SIM115 (closed by the with block below)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(f"cannot create {lock} ({reason}): choose another {what}") from None
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another predict is writing {target}; wait for it or choose "
                                 f"another {what}") from None  # fmt: skip
        yield target


def read_rows(path: str | Path, fmt: str = "csv") -> list[dict]:
    """The rows an earlier predict wrote to ``path`` as ``fmt`` (:class:`RowWriter`), for
    ``--resume``; none if there is no such file; a :class:`UsageError` if it is not such rows
    (other columns, not a list of rows, unreadable)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as file:
            if fmt == "csv":
                reader = csv.DictReader(file)
                rows = list(reader)
                if reader.fieldnames != COLUMNS:
                    raise ValueError(f"its columns are {reader.fieldnames}")
            elif fmt == "jsonl":
                rows = [json.loads(line) for line in file if line.strip()]
            else:
                rows = json.load(file)
        if not isinstance(rows, list) or not all(
            isinstance(row, dict) and {"source", "status"} <= row.keys() for row in rows
        ):
            raise ValueError("not a list of rows with a source and a status")
    except (OSError, ValueError, TypeError, csv.Error) as error:  # (bad text and JSON too)
        raise UsageError(
            f"--resume: {path} does not hold predict's {fmt} rows ({one_line(error)}): give the "
            "--format it was written with, or leave --resume out to replace it"
        ) from None
    return rows


class RowWriter:
    """Rows streamed to ``out`` as ``csv``, ``jsonl`` (one line per row) or ``json`` (one array,
    written row by row), with the count of each status and, under :data:`NOT_ANNOTATED` (when
    any), of sources whose annotated copies could not be written. On a file, ``checkpoint``
    notes where it stands and ``rewind`` cuts it back there: an interrupted batch ends its
    file at the last input that finished."""

    def __init__(self, out: TextIO, fmt: str = "csv") -> None:
        self.out, self.fmt, self.rows = out, fmt, 0
        self.counts: dict[str, int] = {}
        self.not_annotated: set[str] = set()
        self.csv = csv.DictWriter(out, COLUMNS, extrasaction="ignore") if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()
        elif fmt == "json":
            out.write("[")
        self.mark: tuple | None = None
        self.checkpoint()

    def write(self, row: dict) -> None:
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        if ANNOTATE_FAILED in (row.get("message") or ""):
            self.not_annotated.add(row["source"])
        if self.csv:
            self.csv.writerow(row)
        elif self.fmt == "jsonl":
            self.out.write(json.dumps(row) + "\n")
        else:
            self.out.write(("," if self.rows else "") + "\n " + json.dumps(row))
        self.rows += 1
        self.out.flush()

    def checkpoint(self) -> None:
        """Note where the file stands (nothing on a stream that cannot seek)."""
        if self.out.seekable():
            self.out.flush()
            state = (dict(self.counts), set(self.not_annotated))
            self.mark = (self.out.tell(), self.rows, state)

    def rewind(self) -> None:
        """Cut the file back to the last :meth:`checkpoint`."""
        offset, self.rows, (counts, not_annotated) = self.mark
        self.counts, self.not_annotated = dict(counts), set(not_annotated)
        self.out.seek(offset)
        self.out.truncate()

    def close(self) -> dict:
        """End the file (a JSON array's bracket); the counts."""
        if self.fmt == "json":
            self.out.write("\n]\n" if self.rows else "]\n")
        self.out.flush()
        counts = dict(self.counts)
        if self.not_annotated:
            counts[NOT_ANNOTATED] = len(self.not_annotated)
        return counts


def write_rows(rows: Iterable[dict], out: TextIO = sys.stdout, fmt: str = "csv") -> dict:
    """Write ``rows`` with a :class:`RowWriter`; the counts of their statuses."""
    writer = RowWriter(out, fmt)
    for row in rows:
        writer.write(row)
    return writer.close()
