"""Bulk scanner for Task1 text (numba): one pass over the bytes, numbers parsed exactly.

Why: a million-line detection file is ~10 million numbers, and Python's ``float`` on each token
costs seconds. The scanner converts a decimal token only when the result is provably the
correctly rounded double (Clinger's fast path: at most 18 significant digits forming an integer
``m <= 2**53`` and a decimal exponent ``|e| <= 22``, so ``m * 10**e`` or ``m / 10**-e`` is one
correctly rounded IEEE operation on exact operands) and marks every other token for Python's
``float``. The parsed values are therefore identical to ``float(token)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["scan_task1_bytes"]

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # all exact in float64
_FIELDS = 10

# A line with the wrong field count or a token the fast grammar does not accept is not parsed
# here: its line number and byte range are returned, and only that line goes through the
# line-by-line path that reports it (or accepts it: Python's float reads "1_000" or "nan").


@njit(cache=True, inline="always")
def _is_space(c: int) -> bool:
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


@njit(cache=True)
def _parse_number(buf: np.ndarray, start: int, end: int, pow10: np.ndarray) -> tuple[float, int]:
    """(value, status) with status 0 = exact, 1 = needs Python float, 2 = not a plain decimal."""
    i = start
    negative = False
    if buf[i] == 45 or buf[i] == 43:  # '-' '+'
        negative = buf[i] == 45
        i += 1
    mantissa = 0
    digits = 0  # significant digits accumulated
    exponent = 0
    seen_digit = False
    while i < end and 48 <= buf[i] <= 57:
        seen_digit = True
        if mantissa > 0 or buf[i] != 48:
            if digits < 18:
                mantissa = mantissa * 10 + (buf[i] - 48)
                digits += 1
            else:
                return 0.0, 1
        i += 1
    if i < end and buf[i] == 46:  # '.'
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            seen_digit = True
            if mantissa > 0 or buf[i] != 48:
                if digits < 18:
                    mantissa = mantissa * 10 + (buf[i] - 48)
                    digits += 1
                else:
                    return 0.0, 1
            exponent -= 1
            i += 1
    if not seen_digit:
        return 0.0, 2
    if i < end and (buf[i] == 101 or buf[i] == 69):  # 'e' 'E'
        i += 1
        exp_negative = False
        if i < end and (buf[i] == 45 or buf[i] == 43):
            exp_negative = buf[i] == 45
            i += 1
        if i >= end:
            return 0.0, 2
        value = 0
        while i < end and 48 <= buf[i] <= 57:
            if value < 100000:
                value = value * 10 + (buf[i] - 48)
            i += 1
        exponent += -value if exp_negative else value
    if i != end:
        return 0.0, 2
    if mantissa == 0:
        return (-0.0 if negative else 0.0), 0
    if mantissa > 9007199254740992 or exponent > 22 or exponent < -22:
        return 0.0, 1
    result = float(mantissa)
    if exponent >= 0:
        result = result * pow10[exponent]
    else:
        result = result / pow10[-exponent]
    return (-result if negative else result), 0


@njit(cache=True)
def _scan(buf: np.ndarray, pow10: np.ndarray):
    n = buf.shape[0]
    # Upper bound on lines: newlines + 1.
    max_lines = 1
    for k in range(n):
        if buf[k] == 10:
            max_lines += 1
    name_start = np.empty(max_lines, dtype=np.int64)
    name_end = np.empty(max_lines, dtype=np.int64)
    line_number = np.empty(max_lines, dtype=np.int64)
    values = np.empty((max_lines, _FIELDS - 1), dtype=np.float64)
    slow_tokens = np.empty((max_lines, 3), dtype=np.int64)  # flat index row*9+col, start, end; grows
    bad_lines = np.empty((16, 3), dtype=np.int64)  # line number, start, stop; grows
    count = 0
    slow = 0
    bad_count = 0
    pos = 0
    line = 0
    while pos < n:
        line += 1
        stop = pos
        while stop < n and buf[stop] != 10:
            stop += 1
        # Tokenize [pos, stop).
        field = 0
        i = pos
        bad = False
        while True:
            while i < stop and _is_space(buf[i]):
                i += 1
            if i >= stop:
                break
            j = i
            while j < stop and not _is_space(buf[j]):
                j += 1
            if field == 0:
                name_start[count] = i
                name_end[count] = j
            elif field < _FIELDS:
                value, status = _parse_number(buf, i, j, pow10)
                if status == 0:
                    values[count, field - 1] = value
                elif status == 1:
                    if slow == slow_tokens.shape[0]:
                        grown = np.empty((2 * slow_tokens.shape[0], 3), dtype=np.int64)
                        grown[:slow] = slow_tokens[:slow]
                        slow_tokens = grown
                    slow_tokens[slow, 0] = count * (_FIELDS - 1) + field - 1
                    slow_tokens[slow, 1] = i
                    slow_tokens[slow, 2] = j
                    slow += 1
                    values[count, field - 1] = 0.0
                else:
                    bad = True
            field += 1
            i = j
        if field == 0:
            pos = stop + 1
            continue  # blank line
        if bad or field != _FIELDS:
            if bad_count == bad_lines.shape[0]:
                grown_bad = np.empty((2 * bad_lines.shape[0], 3), dtype=np.int64)
                grown_bad[:bad_count] = bad_lines[:bad_count]
                bad_lines = grown_bad
            bad_lines[bad_count, 0] = line
            bad_lines[bad_count, 1] = pos
            bad_lines[bad_count, 2] = stop
            bad_count += 1
            # Drop the slow tokens this row queued: the row is parsed again as a whole.
            while slow > 0 and slow_tokens[slow - 1, 0] >= count * (_FIELDS - 1):
                slow -= 1
            pos = stop + 1
            continue
        line_number[count] = line
        count += 1
        pos = stop + 1
    return (
        bad_lines[:bad_count],
        name_start[:count],
        name_end[:count],
        line_number[:count],
        values[:count],
        slow_tokens[:slow],
    )


def scan_task1_bytes(data: bytes):
    """Scan Task1 text in one pass; lines it cannot parse are set aside, not fatal.

    Returns:
        (image_ids list[str], values float64 [N, 9] (score, x1..y4), line_numbers int64 [N],
        set_aside int64 [B, 3]): the N well-formed lines with line numbers counted from 1, and for
        each of the B other lines (wrong field count, a token that is not a plain decimal, a value
        that overflows to infinity) its line number and byte range ``data[start:stop]``, in file
        order. Those lines are for the caller's reporting path.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    set_aside, starts, ends, lines, values, slow = _scan(buf, _POW10)
    flat = values.reshape(-1)
    for index, start, end in slow.tolist():
        flat[index] = float(data[start:end])
    if len(slow):
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():  # e.g. 1e999: the reporting path says which line
            bad_rows = np.flatnonzero(~finite)
            line_starts = np.array([_line_start(data, int(starts[r])) for r in bad_rows.tolist()], dtype=np.int64)
            line_stops = np.array([_line_stop(data, int(starts[r])) for r in bad_rows.tolist()], dtype=np.int64)
            extra = np.stack([lines[bad_rows], line_starts, line_stops], axis=1)
            set_aside = np.concatenate([set_aside, extra])
            set_aside = set_aside[np.argsort(set_aside[:, 0], kind="stable")]
            starts, ends, lines, values = starts[finite], ends[finite], lines[finite], values[finite]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        names = [data[s:e].decode("utf-8", errors="replace") for s, e in zip(starts.tolist(), ends.tolist())]
    else:
        names = [text[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    return names, values, lines, set_aside


def _line_start(data: bytes, position: int) -> int:
    return data.rfind(b"\n", 0, position) + 1


def _line_stop(data: bytes, position: int) -> int:
    stop = data.find(b"\n", position)
    return len(data) if stop < 0 else stop
