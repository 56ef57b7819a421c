"""Downloading FER2013 (Kaggle API) and FER+ (GitHub) into ``data/``."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import urllib.request
from pathlib import Path

from fer_utils.config import project_root
from fer_utils.data.dataset import DataError

log = logging.getLogger(__name__)

KAGGLE_SOURCES = {
    # name: (kind, Kaggle reference, the file it leaves in the destination)
    "csv": ("dataset", "deadskull7/fer2013", "fer2013.zip"),
    "challenge": (
        "competition",
        "challenges-in-representation-learning-facial-expression-recognition-challenge",
        "fer2013-challenge.zip",
    ),
    "images": ("dataset", "msambare/fer2013", "msambare-fer2013.zip"),
}
FERPLUS_URL = "https://raw.githubusercontent.com/microsoft/FERPlus/master/fer2013new.csv"

CREDENTIALS_HELP = """\
Kaggle credentials are missing, so FER2013 cannot be downloaded. Either:
  * create an API token at https://www.kaggle.com/settings (Account → API → Create New
    Token) and save the downloaded kaggle.json as ~/.kaggle/kaggle.json (chmod 600), or set
    KAGGLE_USERNAME and KAGGLE_KEY; newer tokens go in KAGGLE_API_TOKEN or
    ~/.kaggle/access_token; or run `kaggle auth login`;
  * or download fer2013.csv yourself and pass --data PATH / set FER2013_PATH."""


def _kaggle_api():  # -> kaggle.api.kaggle_api_extended.KaggleApi (imported lazily)
    """An authenticated Kaggle API client, or a :class:`DataError` that says how to log in.

    The kaggle package prints its own help and calls ``exit(1)`` when it finds no
    credentials; that output is swallowed here and replaced by one clear message."""
    quiet = contextlib.ExitStack()
    quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
    quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with quiet:  # importing kaggle already tries to authenticate, printing as it goes
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as error:
            raise DataError("the kaggle package is missing: pip install kaggle") from error
        api = KaggleApi()
        try:
            api.authenticate()
        except (SystemExit, Exception) as error:
            config = Path(getattr(api, "config", "") or Path.home() / ".kaggle" / "kaggle.json")
            problem = _kaggle_json_problem(config)
            if problem:
                raise DataError(
                    f"Kaggle credentials file {config} is malformed ({problem}), so FER2013 "
                    "cannot be downloaded. Download a new token from kaggle.com → Settings → "
                    f"API → Create New Token and save it as {config} (chmod 600), or delete "
                    "the file and set KAGGLE_USERNAME and KAGGLE_KEY."
                ) from error
            raise DataError(CREDENTIALS_HELP) from error
    return api


def _kaggle_json_problem(path: Path) -> str | None:
    """What is wrong with the kaggle.json at ``path`` (the kaggle package ignores a file it
    cannot use and then reports the credentials as missing), or None if it is absent or
    holds a username and a key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot be read: {getattr(error, 'strerror', None) or error}"
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        return f"not JSON: {error}"
    if not isinstance(content, dict):
        return "not a JSON object"
    missing = [
        k for k in ("username", "key") if not isinstance(content.get(k), str) or not content[k]
    ]
    return f"no {' and no '.join(missing)}" if missing else None


def download_fer2013(dest: Path | None = None, source: str = "csv", force: bool = False) -> Path:
    """Download FER2013 from Kaggle into ``dest`` (default ``data/``); returns the file.

    ``source`` is ``csv`` (the dataset deadskull7/fer2013: the challenge CSV, no rules to
    accept), ``challenge`` (the competition's files: accept its rules on kaggle.com first) or
    ``images`` (msambare/fer2013, the image-folder edition). An existing file is kept."""
    if source not in KAGGLE_SOURCES:
        raise DataError(f"unknown source {source!r}; choose one of {', '.join(KAGGLE_SOURCES)}")
    kind, ref, filename = KAGGLE_SOURCES[source]
    dest = dest or project_root() / "data"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / filename
    if target.exists() and not force:
        log.info("%s is already there; use --force to download again", target)
        return target
    api = _kaggle_api()
    staging = dest / ".download"
    staging.mkdir(exist_ok=True)
    try:
        if kind == "competition":
            api.competition_download_files(ref, path=str(staging), force=True, quiet=False)
        else:
            api.dataset_download_files(ref, path=str(staging), force=True, quiet=False)
    except Exception as error:
        raise DataError(
            f"Kaggle refused or failed the download of {ref} ({error}). For the competition, "
            "accept its rules on kaggle.com first; check your network and token."
        ) from error
    archives = sorted(staging.glob("*.zip"))
    if len(archives) != 1:
        raise DataError(f"expected one zip from Kaggle in {staging}, found {len(archives)}.")
    archives[0].replace(target)
    staging.rmdir()
    return target


def download_ferplus(dest: Path | None = None, force: bool = False) -> Path:
    """Download FER+ votes (``fer2013new.csv``, MIT licence) from Microsoft's repository."""
    dest = dest or project_root() / "data"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "fer2013new.csv"
    if target.exists() and not force:
        log.info("%s is already there; use --force to download again", target)
        return target
    try:
        with urllib.request.urlopen(FERPLUS_URL, timeout=60) as response:
            target.write_bytes(response.read())
    except OSError as error:
        raise DataError(
            f"could not download FER+ from {FERPLUS_URL} ({error}); download it by hand "
            f"into {dest}."
        ) from error
    return target
