"""The prediction pipeline: sources → frames → faces → crops → probabilities → one row per face.

A file that cannot be used, or a frame without a face, becomes a row with its status instead
of stopping the batch; the caller decides how to write the rows (:func:`write_rows`)."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
from tqdm.auto import tqdm

from fer_utils.config import EMOTIONS
from fer_utils.inference.classifier import Classifier
from fer_utils.inference.faces import HAAR_STEP, Face, crop_faces, make_detector
from fer_utils.inference.media import (
    MediaError,
    Source,
    expand_sources,
    frame_count,
    frame_rate,
    frames,
)

log = logging.getLogger(__name__)
COLUMNS = [
    "source", "frame", "face", "status", "x", "y", "w", "h", "detector_score", "label",
    "confidence", *(f"p_{e}" for e in EMOTIONS), "message",
]  # fmt: skip


def _status_row(source: Source, status: str, frame: int = 0, message: str = "") -> dict:
    return {"source": source.name, "frame": frame, "face": None, "status": status,
            "message": message}  # fmt: skip


def _face_rows(source: Source, frame: int, faces: list[Face], probs: np.ndarray) -> list[dict]:
    rows = []
    for i, (face, p) in enumerate(zip(faces, probs, strict=True)):
        rows.append({
            "source": source.name, "frame": frame, "face": i, "status": "ok",
            "x": face.x, "y": face.y, "w": face.w, "h": face.h,
            "detector_score": round(face.score, 4), "label": EMOTIONS[int(p.argmax())],
            "confidence": round(float(p.max()), 4),
            **{f"p_{e}": round(float(v), 5) for e, v in zip(EMOTIONS, p, strict=True)},
            "message": "",
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


class _Annotator:
    """Writes annotated copies: ``<stem>.annotated.jpg`` for images, ``.mp4`` for videos (at
    the rate of the frames kept); ``<stem>-2.annotated…`` when an earlier source of the same
    batch had that name (``a/img.jpg`` and ``b/img.jpg``), recorded in ``taken``."""

    def __init__(self, folder: Path, source: Source, every: int, taken: set[Path]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = "webcam" + source.name if source.kind == "webcam" else Path(source.name).stem
        self.is_image = source.kind == "image"
        suffix = f"annotated.{'jpg' if self.is_image else 'mp4'}"
        self.path = folder / f"{stem}.{suffix}"
        for k in itertools.count(2):
            if self.path not in taken:
                break
            self.path = folder / f"{stem}-{k}.{suffix}"
        taken.add(self.path)
        self.fps, self.video = frame_rate(source, every), None

    def add(self, image: np.ndarray) -> None:
        if self.is_image:
            cv2.imwrite(str(self.path), image)
            return
        if self.video is None:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            size = (image.shape[1], image.shape[0])
            self.video = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
        self.video.write(image)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def _predict_source(source: Source, classifier: Classifier, detect, margin: float, every: int,
                    max_frames: int | None, annotate: Path | None,
                    taken: set[Path]) -> Iterator[dict]:  # fmt: skip
    annotator = _Annotator(annotate, source, every, taken) if annotate else None
    progress = tqdm(
        total=frame_count(source, every), unit="frame", desc=Path(source.name).name,
        disable=source.kind == "image", leave=False,
    )  # fmt: skip
    try:
        for index, image in frames(source, every, max_frames):
            faces = sorted(detect(image), key=lambda f: (f.x, f.y))  # left to right
            probs = classifier(crop_faces(image, faces, margin)) if faces else np.zeros((0, 7))
            if annotator:
                annotator.add(draw(image, faces, probs))
            progress.update()
            if not faces:
                yield _status_row(source, "no_face", index, "no face found")
            yield from _face_rows(source, index, faces, probs)
    finally:
        progress.close()
        if annotator:
            annotator.close()


def predict_sources(
    inputs: list[str],
    classifier: Classifier,
    detector: str = "haar",
    margin: float = 0.15,
    min_face: int = 30,
    step: float = HAAR_STEP,
    every: int = 1,
    max_frames: int | None = None,
    annotate: str | Path | None = None,
    progress: bool = True,
) -> Iterator[dict]:
    """Rows (see :data:`COLUMNS`) for every face in ``inputs``: image files, folders (recursive),
    videos (every ``every``-th frame) and webcam indices. Status ``ok`` per face, ``no_face`` for
    a frame without one, ``error`` (with the reason) for a file that cannot be read."""
    detect = make_detector(detector, min_face, step)
    margin = 0.0 if detector == "none" else margin  # the image is the crop: take it as it is
    sources = expand_sources(inputs)
    annotate = Path(annotate) if annotate else None
    taken: set[Path] = set()  # annotated files written so far
    for source in tqdm(sources, unit="file", disable=not progress or len(sources) < 2):
        if source.problem:
            log.warning("%s: %s", source.name, source.problem)
            yield _status_row(source, "error", message=source.problem)
            continue
        try:
            yield from _predict_source(
                source, classifier, detect, margin, every, max_frames, annotate, taken
            )
        except MediaError as error:
            log.warning("%s: %s", source.name, error)
            yield _status_row(source, "error", message=str(error))


def write_rows(rows: Iterable[dict], out: TextIO = sys.stdout, fmt: str = "csv") -> dict:
    """Write ``rows`` as ``csv`` or ``jsonl`` (streamed, one line per row) or ``json`` (one
    array); returns how many rows had each status."""
    counts: dict[str, int] = {}
    collected = []
    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if writer:
            writer.writerow(row)
        elif fmt == "jsonl":
            out.write(json.dumps(row) + "\n")
        else:
            collected.append(row)
        out.flush()
    if fmt == "json":
        json.dump(collected, out, indent=1)
        out.write("\n")
    return counts
