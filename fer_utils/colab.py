"""Running the notebooks on Google Colab: the badges that open them there, and what a notebook
does first when it finds itself on Colab (data, profile). Elsewhere nothing here acts.

Each notebook's setup cell clones the repository and installs it on Colab only (that part
cannot live in this package: the package is not there yet), then calls :func:`prepare`.
Colab's preinstalled TensorFlow and Keras are kept (``pip install --no-deps`` of this package
plus :data:`COLAB_EXTRAS`): installing the pinned TensorFlow over Colab's would replace its
CUDA-matched build, so a Colab run uses Colab's versions, which every run record names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tomllib
from pathlib import Path

from fer_utils.config import project_root
from fer_utils.errors import UsageError

log = logging.getLogger(__name__)

COLAB = "https://colab.research.google.com/github"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
DRIVE_DATA = Path("/content/drive/MyDrive/fer2013")  # where a Drive copy of the data is looked for
COLAB_EXTRAS = "mtcnn lime tf-keras-vis imagehash isal onnxruntime"  # not on Colab
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\((?P<url>[^)]*)\)")


def on_colab() -> bool:
    """Whether this Python runs inside a Colab notebook."""
    return "google.colab" in sys.modules


def repository_url(root: Path | None = None) -> str:
    """The public repository, from ``pyproject.toml``'s ``[project.urls] Repository``."""
    meta = tomllib.loads(((root or project_root()) / "pyproject.toml").read_text())
    return meta["project"]["urls"]["Repository"].removesuffix(".git").rstrip("/")


def badge_url(notebook: str, root: Path | None = None, branch: str = "main") -> str:
    """The Colab address that opens ``notebooks/<notebook>`` of the repository's ``branch``."""
    slug = repository_url(root).removeprefix("https://github.com/")
    return f"{COLAB}/{slug}/blob/{branch}/notebooks/{notebook}"


def badge(notebook: str, root: Path | None = None) -> str:
    """The Markdown "Open in Colab" badge of ``notebooks/<notebook>``."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({badge_url(notebook, root)})"


def badge_targets(markdown: str) -> list[str]:
    """The addresses of the Colab badges in a Markdown text (for checking them)."""
    return [m["url"] for m in BADGE.finditer(markdown)]


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _kaggle_secrets() -> None:
    """Kaggle credentials from Colab's secrets (``KAGGLE_USERNAME``, ``KAGGLE_KEY``) or an
    uploaded ``/content/kaggle.json``, put where the kaggle package looks."""
    from google.colab import userdata  # type: ignore[import-not-found]

    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        # SecretNotFoundError / NotebookAccessError: no such secret, or not granted
        with contextlib.suppress(Exception):
            os.environ.setdefault(name, userdata.get(name))
    uploaded, home = Path("/content/kaggle.json"), Path.home() / ".kaggle" / "kaggle.json"
    if uploaded.is_file() and not home.is_file():
        home.parent.mkdir(exist_ok=True)
        home.write_bytes(uploaded.read_bytes())
        home.chmod(0o600)


def colab_data(data_path: str | None) -> str:
    """The data on Colab: ``data_path`` or ``$FER2013_PATH`` if given, else a copy on Google
    Drive (:data:`DRIVE_DATA`, Drive mounted), else a Kaggle download into ``data/``."""
    from fer_utils.data import DataError, find_data
    from fer_utils.data.download import download_fer2013

    given = data_path or os.environ.get("FER2013_PATH")
    if given:
        return str(find_data(given))
    if DRIVE_DATA.is_dir():
        try:
            return str(find_data(DRIVE_DATA))
        except DataError:
            log.warning("%s holds no FER2013 file: trying Kaggle", DRIVE_DATA)
    try:
        return str(find_data())
    except DataError:
        _kaggle_secrets()
        return str(download_fer2013())


def prepare(profile: str, data_path: str | None) -> tuple[str, str | None]:
    """A notebook's profile and data, adjusted on Colab: the ``full`` profile when a GPU is
    there and the notebook was left at its default ``quick``, and the data found or
    downloaded (:func:`colab_data`). Elsewhere both come back unchanged."""
    if not on_colab():
        return profile, data_path
    import tensorflow as tf

    if tuple(int(n) for n in re.findall(r"\d+", tf.__version__)[:2]) < (2, 21):
        print(f"note: Colab's TensorFlow {tf.__version__} is used (this project pins 2.21)")
    if profile == "quick" and _has_gpu():
        profile = "full"
        print("a GPU is attached: using the full profile (set profile to change it)")
    try:
        data_path = colab_data(data_path)
    except Exception as error:
        raise UsageError(
            f"no FER2013 data on this Colab ({error}). Add KAGGLE_USERNAME and KAGGLE_KEY as "
            f"Colab secrets (key icon, left bar), upload kaggle.json to /content, or mount "
            f"Google Drive with fer2013.csv in {DRIVE_DATA}."
        ) from None
    print(f"data: {data_path}; profile: {profile}")
    return profile, data_path


SETUP_CELL = """\
# Setup: on Colab, fetch this repository and the packages Colab lacks, then find the data and
# pick the profile (fer_utils.colab.prepare). Anywhere else this cell changes nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    if not os.path.isdir("/content/fer2013"):
        for step in (
            "git clone -q --depth 1 {repository} /content/fer2013",
            "pip install -q {extras}",
            "pip install -q --no-deps -e /content/fer2013",
        ):
            subprocess.run(step, shell=True, check=True)
    sys.path.insert(0, "/content/fer2013")
    os.chdir("/content/fer2013/notebooks")

from fer_utils.colab import prepare

profile, data_path = prepare(profile, data_path)"""


def parameters_cell(cells: list) -> int:
    """The index of a notebook's papermill ``parameters`` cell (cells as dicts or nodes)."""
    return next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))


def setup_cell(root: Path | None = None) -> str:
    """The source of every notebook's setup cell (placed right after its parameters cell)."""
    return SETUP_CELL.format(repository=repository_url(root), extras=COLAB_EXTRAS)


def write_colab_cells(root: Path | None = None) -> list[Path]:
    """Put the current badge at the top of each notebook's first (Markdown) cell and the
    current :func:`setup_cell` after its parameters cell, and the badges into the README's
    notebook table; returns the files changed. Run after changing the repository address."""
    import nbformat

    from fer_utils.files import atomic_write_text

    root = root or project_root()
    changed = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        before = nbformat.writes(notebook)
        title = notebook.cells[0]
        lines = [line for line in title.source.splitlines() if not BADGE.search(line)]
        title.source = "\n".join([badge(path.name, root), *lines])
        at = parameters_cell(notebook.cells) + 1
        if notebook.cells[at].source.startswith(SETUP_CELL.split("\n", 1)[0]):
            notebook.cells[at].source = setup_cell(root)
        else:
            notebook.cells.insert(at, nbformat.v4.new_code_cell(setup_cell(root)))
        if nbformat.writes(notebook) != before:
            atomic_write_text(path, nbformat.writes(notebook) + "\n")
            changed.append(path)
    readme = root / "README.md"
    text = readme.read_text()
    rows = []
    for line in text.splitlines():
        match = re.match(r"\| (?:\[!\[Open In Colab\][^|]*\) )?`(\d\d_\w+)` \|", line)
        if match:
            name = match[1]
            line = re.sub(r"^\| [^|]*\|", f"| {badge(name + '.ipynb', root)} `{name}` |", line)
        rows.append(line)
    new = "\n".join(rows) + "\n"
    if new != text:
        atomic_write_text(readme, new)
        changed.append(readme)
    return changed
