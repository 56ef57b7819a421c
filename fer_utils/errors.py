"""The project's error types. Each means bad input, never a bug: its message says what was
wrong and how to fix it, and the command line prints that message without a traceback."""

from __future__ import annotations


class FerError(ValueError):
    """Bad input of any kind (the base of the project's errors)."""


class UsageError(FerError):
    """An argument names something that does not exist (a model, a run, a file) or is malformed."""
