"""Writing files so that a kill, a full disk or a second process never leaves a torn one: the
content goes to a uniquely named temporary file beside the target, which is then renamed over
it (``os.replace`` is atomic on POSIX and Windows). Readers see the old file or the new one,
never half of either. Also: the writable-folder check, and cache files that can never block
the work they only speed up (:func:`read_cache`, :func:`write_cache`)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar
from zipfile import BadZipFile

from fer_utils.errors import UsageError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _umask() -> int:
    """The process's umask (reading it means setting it: set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any library); renamed over ``path`` when
    the block ends without an error, removed otherwise. The temporary name keeps ``path``'s
    suffixes, for writers that choose the format by them (``.keras``, ``.npz``, ``.h5``)."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix="".join(target.suffixes) or ".tmp"
    )
    os.close(handle)
    temp = Path(temporary)
    # mkstemp makes the file owner-only; give it the target's mode, or what open() would
    os.chmod(temp, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask())
    try:
        yield temp
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` whose content replaces ``path`` only once the block has finished
    (flushed and fsynced); a failed or killed block leaves ``path`` as it was."""
    with atomic_path(path) as temp, open(temp, mode, **kwargs) as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as file:
        file.write(text)


def writable_folder(path: str | os.PathLike, what: str, variable: str | None = None) -> Path:
    """``path`` created if needed and checked writable (by writing and removing a probe file),
    or a :class:`UsageError` that names it and, with ``variable``, the environment variable
    that moves it. For checks before hours of work, not after."""
    folder = Path(path)
    hint = f" (or point {variable} elsewhere)" if variable else ""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(f"{what} folder {folder} is not writable ({reason}): fix its "
                         f"permissions or free space{hint}") from None  # fmt: skip
    return folder


CACHE_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, BadZipFile, zlib.error)
"""What reading a truncated, corrupt or foreign cache file raises (a bad CRC is a BadZipFile)."""


def read_cache(
    target: Path, read: Callable[[Path], T], redo: str = "re-parsing the source"
) -> T | None:
    """``read(target)``, or None when there is no cache file. A file that cannot be read, or
    whose content ``read`` rejects (by raising a ValueError), gives one warning that says
    ``redo`` and None: the caller recomputes the content and rewrites the file."""
    try:
        if not target.is_file():
            return None
        return read(target)
    except CACHE_READ_ERRORS as error:
        log.warning("cache file %s is unreadable or damaged (%s); %s and rewriting it",
                    target, str(error) or type(error).__name__, redo)  # fmt: skip
        return None


def write_cache(
    target: Path, write: Callable[[Path], object], skip: str = ", or pass --no-cache (cache=False)"
) -> bool:
    """Create ``target``'s folder and write the file through ``write(temporary path)``,
    renamed over ``target`` only once complete (see :func:`fer_utils.files.atomic_path`), so
    concurrent writers and readers never see half a file. A folder that cannot be created or
    written (read-only, no permission, full) gives one warning and False, never an error;
    ``skip`` ends its advice with the way to do without the cache."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as temporary:
            write(temporary)
    except OSError as error:
        log.warning("cache file %s not written (%s); going on without the cache. Point "
                    "FER_CACHE at a writable folder with free space%s",
                    target, error.strerror or error, skip)  # fmt: skip
        return False
    return True


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(2**20):
            digest.update(block)
    return digest.hexdigest()
