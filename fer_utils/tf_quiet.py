"""TensorFlow's start-up lines kept off the command line's stderr, GPUs left as they are.

While it is imported, TensorFlow writes lines such as the oneDNN notice and "Could not find
cuda drivers" through absl before absl is initialised, and absl then prints every message
whatever ``TF_CPP_MIN_LOG_LEVEL`` says (plus its own "All log messages before
absl::InitializeLog() ..." line). The first look for a GPU logs "failed call to cuInit" as an
error on machines that have none. :func:`install` makes that import and that first look
write stderr to a temporary file, then passes on what the level lets through: nothing is hidden
from TensorFlow (``CUDA_VISIBLE_DEVICES`` is not touched), only its messages are filtered.
Later, TensorFlow's "triggered tf.function retracing" hint is dropped too: predicting splits of
different sizes retraces a model's predict step once per final-batch size, by design.
``FER_VERBOSE=1`` or ``TF_CPP_MIN_LOG_LEVEL=0`` turns the filter off."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SEVERITIES = "IWEF"  # absl's letters, in TF_CPP_MIN_LOG_LEVEL's order 0..3
# "I0512 14:03:02.123456   1234 file.cc:12] "; before absl's initialisation the time is
# "00:00:<seconds since 1970>.<microseconds>"
_RECORD = re.compile(r"([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ [^\s\]]+:\d+\] ")
_PREINIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_PYTHON_WARNING = re.compile(r"\S.*:\d+: \w+: ")  # what warnings.warn writes to stderr


def _not_a_retracing_hint(record: logging.LogRecord) -> bool:
    """False for TensorFlow's "… triggered tf.function retracing …" warning (a logging filter)."""
    return "triggered tf.function retracing" not in record.getMessage()


def _gpu_device_present() -> bool:
    """Whether this machine has an NVIDIA device node (Linux, or WSL's ``/dev/dxg``): where it
    has one, a failed cuInit is a real problem and stays on stderr."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "dxg").exists()


def kept_lines(text: str, min_level: int, gpu_present: bool) -> str:
    """``text`` (stderr captured while TensorFlow started) less absl's pre-init notice and
    TensorFlow's records below ``min_level`` (0 info … 3 fatal), each with its continuation
    lines, and less the cuInit error where no GPU device exists. Other lines are kept."""
    out, dropping = [], False
    for line in text.splitlines(keepends=True):
        record = _RECORD.match(line)
        if record:
            severity = SEVERITIES.index(record.group(1))
            no_gpu_notice = "failed call to cuInit" in line and not gpu_present
            dropping = severity < min_level or no_gpu_notice
        elif line.rstrip("\n") == _PREINIT:
            dropping = True
            continue
        elif _PYTHON_WARNING.match(line):
            dropping = False
        if not dropping:
            out.append(line)
    return "".join(out)


@contextlib.contextmanager
def filtered_stderr(min_level: int) -> Iterator[None]:
    """Inside the block, file descriptor 2 (C++ code's stderr too) goes to a temporary file;
    on leaving, :func:`kept_lines` of it are written to the real stderr."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a daemon's): nothing to filter
        yield
        return
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                text = capture.read().decode(errors="replace")
                kept = kept_lines(text, min_level, _gpu_device_present())
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()
    finally:
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run inside :func:`filtered_stderr`, followed by the first look
    for GPUs (where cuInit is called)."""

    def __init__(self, loader: importlib.abc.Loader, min_level: int) -> None:
        self.loader, self.min_level = loader, min_level

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr(self.min_level):
            self.loader.exec_module(module)
            with contextlib.suppress(Exception):  # any real problem shows again when used
                module.config.list_physical_devices("GPU")
        logging.getLogger("tensorflow").addFilter(_not_a_retracing_hint)

    def __getattr__(self, name: str):  # resource readers and the like: TensorFlow's loader
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` the usual way and gives it a :class:`_QuietLoader`."""

    def __init__(self, min_level: int) -> None:
        self.min_level = min_level

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader, self.min_level)
        return spec


def install() -> None:
    """From now on, when TensorFlow is imported (if it was not already), its start-up lines
    below ``TF_CPP_MIN_LOG_LEVEL`` (``fer_utils`` sets 2: errors and fatal ones pass) stay off
    stderr, and so does the cuInit error of a machine without a GPU: on the command line and
    in notebooks alike (a Jupyter kernel shows C++ stderr in the cell's output). TensorFlow is
    not imported here: a command that does not need it (predict with ONNX) never loads it."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    min_level = int(level) if level.isdigit() else 0
    if os.environ.get("FER_VERBOSE") == "1" or min_level == 0 or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder(min_level))
