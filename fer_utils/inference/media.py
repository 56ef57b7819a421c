"""Reading what users point the predictor at: image files, folders, videos and webcams, in
any common bit depth and channel layout, each problem reported per file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_utils.errors import FerError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class MediaError(FerError):
    """A file that cannot be read as an image or video (the message says why)."""


@dataclass(frozen=True)
class Source:
    """One thing to predict on: ``kind`` is image, video or webcam; ``problem`` is set when it
    cannot be used (missing, unsupported), so it is reported instead of stopping the batch."""

    name: str
    kind: str
    problem: str | None = None


def expand_sources(inputs: list[str]) -> list[Source]:
    """Files as given, folders expanded recursively (images and videos, sorted), an integer
    that is not a file as a webcam index."""
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                sources.append(Source(item, "folder", "folder holds no images or videos"))
            sources.extend(_file_source(p) for p in found)
        elif path.is_file():
            sources.append(_file_source(path))
        elif item.isdigit():
            sources.append(Source(item, "webcam"))
        else:
            sources.append(Source(item, "missing", "no such file or folder"))
    return sources


def _file_source(path: Path) -> Source:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Source(str(path), "image")
    if suffix in VIDEO_SUFFIXES:
        return Source(str(path), "video")
    known = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
    return Source(
        str(path), "unsupported", f"unsupported file type {suffix!r} (supported: {known})"
    )


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) as BGR uint8."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257).round().astype(np.uint8)
    elif image.dtype.kind == "f":
        top = 1.0 if image.max(initial=0) <= 1.0 else 255.0
        image = (np.clip(image / top, 0, 1) * 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MediaError(f"pixel type {image.dtype} is not supported (8-bit, 16-bit or float)")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[..., 0]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` as BGR uint8, or raise :class:`MediaError` saying why it cannot be."""
    try:  # (cv2.imread cannot tell "corrupt" from "missing" or "not allowed")
        data = np.fromfile(path, np.uint8)
    except OSError as error:
        raise MediaError(f"cannot read the file: {error.strerror or error}") from error
    if data.size == 0:
        raise MediaError("the file is empty")
    try:
        # Any depth and colour (16-bit and grey stay as they are) but not IMREAD_UNCHANGED,
        # which would ignore the EXIF orientation that phones write instead of turning pixels.
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as error:  # e.g. more pixels than OpenCV's safety limit
        raise MediaError(f"OpenCV cannot decode it: {error.err}") from error
    if image is None:
        raise MediaError("corrupt or not an image (OpenCV cannot decode it)")
    return to_bgr8(image)


def frames(source: Source, every: int = 1, max_frames: int | None = None) -> Iterator[tuple]:
    """``(frame_index, BGR image)`` of an image (one frame), a video or a webcam, keeping every
    ``every``-th frame, at most ``max_frames`` of them."""
    if source.kind == "image":
        yield 0, read_image(source.name)
        return
    capture = cv2.VideoCapture(int(source.name) if source.kind == "webcam" else source.name)
    if not capture.isOpened():
        what = "webcam" if source.kind == "webcam" else "video"
        raise MediaError(f"cannot open this {what} (missing codec, corrupt file or no device)")
    try:
        index = kept = 0
        while max_frames is None or kept < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                kept += 1
                yield index, to_bgr8(frame)
            index += 1
        if index == 0:
            raise MediaError("no frame could be decoded")
    finally:
        capture.release()


def _container_says(source: Source, prop: int) -> float:
    """A property of a video file's container (0 where it does not say, or not a video)."""
    if source.kind != "video":
        return 0.0
    capture = cv2.VideoCapture(source.name)
    value = capture.get(prop)
    capture.release()
    return value


def frame_count(source: Source, every: int = 1) -> int | None:
    """How many frames :func:`frames` will yield, where the container says (for progress)."""
    if source.kind == "image":
        return 1
    total = int(_container_says(source, cv2.CAP_PROP_FRAME_COUNT))
    return -(-total // every) if total > 0 else None


def frame_rate(source: Source, every: int = 1, unknown: float = 25.0) -> float:
    """Frames per second of what :func:`frames` yields: the video's rate over ``every``, else
    ``unknown`` (webcams and containers that do not say)."""
    fps = _container_says(source, cv2.CAP_PROP_FPS)
    return (fps if fps > 0 else unknown) / every
