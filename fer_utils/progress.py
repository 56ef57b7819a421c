"""Progress bars (tqdm) that show in a terminal and stay out of logs and executed notebooks."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable, show: bool, **options) -> tqdm:
    """``tqdm(iterable, **options)``, drawn when ``show`` and stderr is a terminal (tqdm's
    ``disable=None``); silent otherwise, so that a log or an executed notebook holds no bar."""
    return tqdm(iterable, disable=None if show else True, **options)
