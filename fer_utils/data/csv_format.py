"""Vectorised parser for the Kaggle challenge CSV (``emotion,pixels,Usage``).

A plain ``pandas.read_csv`` followed by ``str.split`` per row takes about 28 s on two cores;
``np.fromstring`` per row is not much better. Here the whole file is one uint8 array: every
pixel value is a run of 1–3 ASCII digits, so a value is read off where a digit run ends, from
the (at most two) digits before it — elementwise NumPy, no per-row Python. Every structural
check (field count, value count, characters, labels, ``Usage``) is also vectorised, so a bad
row is found and named without slowing the good path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from fer_utils.config import IMAGE_SIZE, SPLITS
from fer_utils.data.dataset import DataError

N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
REQUIRED_COLUMNS = ("emotion", "pixels", "usage")
_NEWLINE, _COMMA = ord("\n"), ord(",")

_ALLOWED = np.zeros(256, dtype=bool)
for _chars in (b'0123456789 ,"\r\n', b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"):
    _ALLOWED[list(_chars)] = True
_LETTER = np.zeros(256, dtype=bool)
_LETTER[list(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")] = True

SKIP_HINT = (
    "Fix the file (re-download it with `python -m fer_utils download`), or load with "
    "errors='skip' (command line: --skip-bad-rows) to exclude such rows; they are counted."
)


@dataclass(frozen=True)
class ParsedCsv:
    """The rows of a FER2013 CSV that passed every check, and counts of those that did not."""

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    source_index: np.ndarray
    excluded: dict[str, int]
    n_rows: int


def _column_order(header: bytes, name: str) -> tuple[int, int, int]:
    """Positions of the emotion, pixels and Usage fields, read from the header line."""
    columns = [c.strip().strip('"').lower() for c in header.decode("utf-8-sig").split(",")]
    if columns[0].isdigit():
        raise DataError(
            f"{name}: no header row: its first line is a face ({header[:40]!r}…), but the "
            "first line of a FER2013 CSV must be emotion,pixels,Usage. Add that line."
        )
    if sorted(columns) != sorted(REQUIRED_COLUMNS):
        raise DataError(
            f"{name}: the header has columns {columns}, but a FER2013 CSV has exactly "
            "emotion, pixels, Usage (the Kaggle challenge's fer2013.csv). If you saved it with "
            "pandas, write it with index=False; if it is another file, point --data / "
            "FER2013_PATH at fer2013.csv."
        )
    return tuple(columns.index(c) for c in REQUIRED_COLUMNS)  # type: ignore[return-value]


BLOCK_BYTES = 8 << 20
"""Rows are parsed in blocks of about this many bytes: the temporaries stay small enough to be
reused from block to block (fresh pages cost more than the arithmetic), and blocks run on all
cores (NumPy releases the GIL)."""


@dataclass(frozen=True)
class _Block:
    """One block's rows: values of the good rows, and per-row problems (local row numbers)."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    good: np.ndarray
    line_of_row: np.ndarray
    n_lines: int
    problems: dict[str, np.ndarray]


def parse_fer_csv(buf: bytes, name: str, errors: str = "raise") -> ParsedCsv:
    """Parse the bytes of a FER2013 CSV.

    Args:
        buf: the whole (decompressed) file.
        name: how to name the file in messages.
        errors: ``"raise"`` stops at bad rows with a :class:`DataError` naming the first one;
            ``"skip"`` excludes them and counts them, by reason, in ``excluded``.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
    header_end = buf.find(b"\n")
    if header_end < 0:
        raise DataError(f"{name}: no data rows (the file has at most a header).")
    columns = _column_order(buf[:header_end], name)
    if not buf.endswith(b"\n"):
        buf += b"\n"
    # Block boundaries fall just after a newline; a block never starts within 3 bytes of the
    # buffer's start, since the header line ("...Usage\n") comes first.
    bounds = [header_end + 1]
    while bounds[-1] < len(buf):
        nxt = buf.find(b"\n", bounds[-1] + BLOCK_BYTES)
        bounds.append(len(buf) if nxt < 0 else nxt + 1)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        blocks = list(pool.map(_parse_block, repeat(buf), bounds[:-1], bounds[1:], repeat(columns)))

    if sum(len(b.good) for b in blocks) == 0:
        raise DataError(f"{name}: no data rows (the file has only a header).")
    line_offsets = np.cumsum([0] + [b.n_lines for b in blocks[:-1]])
    lines = np.concatenate(
        [b.line_of_row + off for b, off in zip(blocks, line_offsets, strict=True)]
    )
    lines += 2  # 1-based, and the header is line 1
    good = np.concatenate([b.good for b in blocks])
    problems = {
        reason: np.concatenate(
            [b.problems.get(reason, np.zeros(len(b.good), bool)) for b in blocks]
        )
        for reason in dict.fromkeys(r for b in blocks for r in b.problems)
    }
    if problems and errors == "raise":
        details = "; ".join(
            f"{reason}: {int(rows.sum())} row(s), first at line {lines[rows.argmax()]}"
            for reason, rows in problems.items()
        )
        raise DataError(f"{name}: {int((~good).sum())} bad row(s) — {details}. {SKIP_HINT}")
    return ParsedCsv(
        images=np.concatenate([b.images for b in blocks]),
        labels=np.concatenate([b.labels for b in blocks]),
        splits=np.concatenate([b.usage for b in blocks]),
        source_index=np.flatnonzero(good).astype(np.int64),
        excluded={reason: int(rows.sum()) for reason, rows in problems.items()},
        n_rows=len(good),
    )


def _parse_block(buf: bytes, start: int, stop: int, columns: tuple[int, int, int]) -> _Block:
    """Parse the whole lines in ``buf[start:stop]`` (``buf[start - 1]`` is a newline)."""
    col_emotion, col_pixels, col_usage = columns
    # The view starts 3 bytes early so that every digit run has 3 bytes before it to look
    # back into; the newline at view[2] stops any look-back, whatever precedes it.
    body = np.frombuffer(buf, dtype=np.uint8, offset=start - 3, count=stop - start + 3)
    digit = body - np.uint8(48)
    is_digit = digit < 10
    # Everything that is neither a digit nor a space is rare (commas, newlines, the letters of
    # Usage, stray characters): find it once, then classify the few positions.
    scratch = np.not_equal(body, np.uint8(ord(" ")))
    scratch &= ~is_digit
    other = np.flatnonzero(scratch[2:]) + 2  # from the newline before the block on
    other_bytes = body[other]
    newlines = other[other_bytes == _NEWLINE]
    starts, ends = newlines[:-1] + 1, newlines[1:]
    stripped_len = ends - starts - (body[ends - 1] == ord("\r"))
    nonblank = stripped_len > 0
    starts, ends = starts[nonblank], ends[nonblank]
    n_rows = len(starts)
    if n_rows == 0:
        nothing = np.zeros(0, np.int64)
        return _Block(
            np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), nothing, nothing.astype("<U11"),
            np.zeros(0, bool), nothing, len(nonblank), {},
        )  # fmt: skip

    problems: dict[str, np.ndarray] = {}

    def flag(reason: str, bad_rows: np.ndarray) -> None:
        if bad_rows.any():
            problems[reason] = problems.get(reason, np.zeros(n_rows, bool)) | bad_rows

    def rows_holding(positions: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(ends, positions), minlength=n_rows)[:n_rows] > 0

    # Characters: digits, spaces, commas, quotes, CR and the letters of Usage only.
    is_letter = _LETTER[other_bytes]
    flag("non-integer characters (e.g. '.', '-')", rows_holding(other[~_ALLOWED[other_bytes]]))

    # Fields: exactly two commas per row, so three fields.
    commas = other[other_bytes == _COMMA]
    first_comma = np.searchsorted(commas, starts)
    n_commas = np.searchsorted(commas, ends) - first_comma
    flag("wrong number of fields (expected 3)", n_commas != 2)
    ok_fields = n_commas == 2
    c1 = np.where(ok_fields, commas[np.minimum(first_comma, len(commas) - 1)], starts)
    c2 = np.where(ok_fields, commas[np.minimum(first_comma + 1, len(commas) - 1)], starts)
    field_start = np.stack([starts, c1 + 1, c2 + 1])
    field_end = np.stack([c1, c2, ends])

    # Digit runs ("tokens"): a token ends where a digit is followed by a non-digit. Its value
    # is read from its last three bytes: at most three digits, else it is > 255 anyway.
    # Shifted views (``view[k][i] == body[i + k]``) avoid building index arrays per shift.
    np.logical_not(is_digit[1:], out=scratch[:-1])
    scratch[:-1] &= is_digit[:-1]
    token_end = np.flatnonzero(scratch[3:-1]) + 3
    del scratch
    at = token_end - 3
    values = digit[3:][at].astype(np.int16)
    tens = is_digit[2:][at]
    values += (digit[2:][at] * tens).astype(np.int16) * np.int16(10)
    hundreds = tens & is_digit[1:][at]
    values += (digit[1:][at] * hundreds).astype(np.int16) * np.int16(100)
    too_long = hundreds & is_digit[at]
    del at, tens, hundreds, digit, is_digit
    first_token = np.searchsorted(token_end, field_start)
    tokens_in = np.searchsorted(token_end, field_end) - first_token

    flag("the emotion field is not one integer", ok_fields & (tokens_in[col_emotion] != 1))
    flag(
        f"wrong pixel count (expected {N_PIXELS})",
        ok_fields & (tokens_in[col_pixels] != N_PIXELS),
    )
    flag("digits in the Usage field", ok_fields & (tokens_in[col_usage] != 0))
    flag("a number above 255", rows_holding(token_end[too_long | (values > 255)]))

    # Usage: decode the few bytes of each row's last field; letters belong there only.
    usage = np.array(
        [
            bytes(body[a:b]).decode("ascii", "replace").strip('"\r ')
            for a, b in zip(field_start[col_usage], field_end[col_usage], strict=True)
        ]
    )
    letters = other[is_letter]
    letter_row = np.minimum(np.searchsorted(ends, letters), n_rows - 1)
    in_usage = (letters >= field_start[col_usage][letter_row]) & (
        letters < field_end[col_usage][letter_row]
    )
    flag("letters outside the Usage field", rows_holding(letters[~in_usage]))
    flag(f"Usage not one of {', '.join(SPLITS)}", ok_fields & ~np.isin(usage, SPLITS))

    bad = np.zeros(n_rows, bool)
    for rows in problems.values():
        bad |= rows
    emotion_token = first_token[col_emotion]
    labels = np.where(bad, 0, values[np.minimum(emotion_token, len(values) - 1)])
    labels = labels.astype(np.int64)
    flag("label outside 0–6", ~bad & ((labels < 0) | (labels > 6)))
    for rows in problems.values():
        bad |= rows

    good = ~bad
    if good.all() and (col_emotion < col_pixels):
        # Fast path: rows are [emotion, 2304 pixels] back to back.
        images = values.reshape(n_rows, N_PIXELS + 1)[:, 1:]
    else:
        images = values[first_token[col_pixels][good][:, None] + np.arange(N_PIXELS)]
    return _Block(
        images=images.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
        labels=labels[good],
        usage=usage[good].astype(f"<U{max(map(len, SPLITS))}"),
        good=good,
        line_of_row=np.flatnonzero(nonblank),
        n_lines=len(nonblank),
        problems=problems,
    )
