"""The project's error types. Each means bad input, never a bug: its message says what was
wrong and how to fix it, and the command line prints that message without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class FerError(ValueError):
    """Bad input of any kind (the base of the project's errors)."""


class UsageError(FerError):
    """An argument names something that does not exist (a model, a run, a file) or is malformed."""


class ModelError(FerError):
    """A model file that is missing, unreadable or not a FER2013 emotion model."""


def require(ok: bool, name: str, value: object, wanted: str) -> None:
    """A :class:`UsageError` ``name=value: must be <wanted>`` unless ``ok`` (settings are checked
    where they are made, before any data is loaded or any epoch is trained)."""
    if not ok:
        raise UsageError(f"{name}={value!r}: must be {wanted}")


def require_choice(name: str, value: object, choices: tuple | list) -> None:
    """A :class:`UsageError` unless ``value`` is one of ``choices`` (listed in the message)."""
    require(value in choices, name, value, f"one of {', '.join(map(str, choices))}")


def report(error: FerError) -> int:
    """Print ``error`` as the one line a user sees (``error: …`` on stderr, no traceback) and
    return the exit status of bad input, 2."""
    print(f"error: {error}", file=sys.stderr)
    return 2


def run_script(main: Callable[[], object]) -> None:
    """Run a script's ``main`` (the benchmarks): bad input is :func:`report`-ed and exits, as
    the command line does, instead of a traceback."""
    try:
        main()
    except FerError as error:
        raise SystemExit(report(error)) from None
