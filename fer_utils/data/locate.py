"""Finding the data the way a user's setup has it: argument, environment variable, ``data/``."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from fer_utils.config import project_root
from fer_utils.data.dataset import DataError

DATA_ENV = "FER2013_PATH"
FERPLUS_ENV = "FERPLUS_PATH"

# Names a download leaves, best first: the challenge CSV (plain, gzipped, the challenge's
# tarball, or zipped as the deadskull7/fer2013 dataset comes), then the image-folder edition.
CANDIDATE_NAMES = (
    "fer2013.csv",
    "fer2013.csv.gz",
    "fer2013/fer2013.csv",
    "fer2013.tar.gz",
    "fer2013.zip",
    "fer2013-challenge.zip",
    "msambare-fer2013",
    "msambare-fer2013.zip",
    "archive.zip",
)

NOT_FOUND_HELP = (
    "FER2013 was not found: pass --data PATH, set FER2013_PATH=PATH, or put fer2013.csv "
    "(.gz, .tar.gz, .zip, or the image-folder edition) in the project's data/ folder; "
    "`python -m fer_utils download` fetches it with your Kaggle account (data/README.md)"
)


def _image_folder_like(path: Path) -> bool:
    """A folder holding train/ or test/, or a zip with image files in it."""
    if path.is_dir():
        return any((path / sub).is_dir() for sub in ("train", "test"))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.lower().endswith((".jpg", ".png")) for n in archive.namelist())
    return False


def _resolve(path: Path) -> Path | None:
    """The data file inside ``path`` (itself when it is one), or None."""
    if path.is_file() or _image_folder_like(path):
        return path
    if path.is_dir():
        for name in CANDIDATE_NAMES:
            if (path / name).exists():
                return _resolve(path / name)
    return None


def find_data(path: str | os.PathLike | None = None) -> Path:
    """Where FER2013 is: ``path`` if given, else ``$FER2013_PATH``, else ``<root>/data/``.

    Raises:
        DataError: nothing usable there; the message lists the ways to provide the data.
    """
    for given, origin in ((path, "the path given"), (os.environ.get(DATA_ENV), DATA_ENV)):
        if given:
            found = _resolve(Path(given).expanduser())
            if found is None:
                raise DataError(
                    f"{origin} ({given}) has no FER2013 data: it does not exist or holds none of "
                    f"{', '.join(CANDIDATE_NAMES)}; point --data or FER2013_PATH at the file or "
                    "the folder holding it, or fetch it with `python -m fer_utils download`"
                )
            return found
    found = _resolve(project_root() / "data")
    if found is None:
        raise DataError(NOT_FOUND_HELP)
    return found


def find_ferplus(path: str | os.PathLike | None = None, near: Path | None = None) -> Path | None:
    """``fer2013new.csv``: ``path``, ``$FERPLUS_PATH``, beside ``near``, or in ``data/``.

    Returns None when it is nowhere (FER+ is optional); a given path that does not exist is
    an error."""
    for given, origin in (
        (path, "the FER+ path given"),
        (os.environ.get(FERPLUS_ENV), FERPLUS_ENV),
    ):
        if given:
            if not Path(given).is_file():
                raise DataError(
                    f"{origin} ({given}) is not a file. FER+ labels are fer2013new.csv from "
                    "github.com/microsoft/FERPlus (python -m fer_utils download fetches it)."
                )
            return Path(given)
    folders = [near.parent if near.is_file() else near] if near is not None else []
    for folder in [*folders, project_root() / "data"]:
        if (folder / "fer2013new.csv").is_file():
            return folder / "fer2013new.csv"
    return None
