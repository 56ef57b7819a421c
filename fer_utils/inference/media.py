"""Reading what users point the predictor at: image files, folders, videos and webcams, in
any common bit depth and channel layout, each problem reported per file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fer_utils.errors import FerError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MAX_PIXELS = 100_000_000  # larger images are refused from their header, before decoding
_PIL_LIMIT = threading.Lock()  # guards the moment PIL's own size limit is lifted


class MediaError(FerError):
    """A file that cannot be read as an image or video (the message says why)."""


@dataclass(frozen=True)
class Source:
    """One thing to predict on: ``kind`` is image, video or webcam; ``problem`` is set when it
    cannot be used (missing, unsupported), so it is reported instead of stopping the batch.
    ``kind`` skipped is a file in a folder that is not an image or video (its row says so)."""

    name: str
    kind: str
    problem: str | None = None


def expand_sources(inputs: list[str]) -> list[Source]:
    """Files as given, folders expanded recursively (sorted; a file that is not an image or
    video is ``skipped``, hidden files are left out), an integer that is not a file as a
    webcam index. A path that cannot even be looked at becomes a source with its problem."""
    sources: list[Source] = []
    for item in inputs:
        try:
            sources.extend(_expand(item))
        except (OSError, ValueError) as error:  # no permission to look; a NUL in the name
            reason = getattr(error, "strerror", None) or error
            sources.append(Source(item, "unreadable", f"cannot read it: {reason}"))
    return sources


def _expand(item: str) -> list[Source]:
    path = Path(item)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if _is_media(p) or _is_plain_file(p))
        sources = [_file_source(p) if _is_media(p) else _skipped(p) for p in found]
        if all(source.kind == "skipped" for source in sources):
            return [Source(item, "folder", "folder holds no images or videos"), *sources]
        return sources
    if path.is_file():
        return [_file_source(path)]
    if item.isdigit():
        return [Source(item, "webcam")]
    return [Source(item, "missing", "no such file or folder")]


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def _is_plain_file(path: Path) -> bool:
    return not path.name.startswith(".") and path.is_file()


def _supported() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))


def _skipped(path: Path) -> Source:
    what = f"file type {path.suffix.lower()!r}" if path.suffix else "a file without a suffix"
    return Source(
        str(path), "skipped", f"not an image or video: {what} (supported: {_supported()})"
    )


def _file_source(path: Path) -> Source:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Source(str(path), "image")
    if suffix in VIDEO_SUFFIXES:
        return Source(str(path), "video")
    return Source(
        str(path), "unsupported", f"unsupported file type {suffix!r} (supported: {_supported()})"
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


def header_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image file's header alone (PIL reads no pixels here), or
    None where PIL does not know the format or cannot parse the header (OpenCV decides)."""
    with _PIL_LIMIT:
        # PIL refuses images above ~179 megapixels before telling their size: lift its limit
        # for this look at the header; :data:`MAX_PIXELS` is the limit that applies.
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as image:
                return image.size
        except Exception:  # not a format PIL knows, or a damaged header
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def check_pixels(path: str | Path, limit: int = MAX_PIXELS) -> None:
    """Raise :class:`MediaError` if the image's header says it has more than ``limit`` pixels:
    decoding it would take gigabytes (a 1 MB PNG can hold 30000×30000 pixels)."""
    size = header_size(path)
    if size and size[0] * size[1] > limit:
        width, height = size
        raise MediaError(
            f"image is {width}×{height} = {width * height / 1e6:.0f} megapixels, above the limit"
            f" of {limit / 1e6:.0f} megapixels; resize it first"
        )


def read_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` as BGR uint8, or raise :class:`MediaError` saying why it cannot be
    (also for more than :data:`MAX_PIXELS` pixels, checked before decoding)."""
    try:  # (cv2.imread cannot tell "corrupt" from "missing" or "not allowed")
        data = np.fromfile(path, np.uint8)
    except OSError as error:
        raise MediaError(f"cannot read the file: {error.strerror or error}") from error
    if data.size == 0:
        raise MediaError("the file is empty")
    check_pixels(path)
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
