"""What the CLI commands and the report share: the user-error type, number and time formats, plain-text tables."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any

# What a terminal would act on rather than show: C0 controls (ESC starts colour, cursor and title sequences), DEL,
# C1 controls (0x9b is a one-byte CSI), and the bidirectional marks, overrides and isolates that reorder a line.
_UNSAFE_CHARS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_UNSAFE_CHARS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"(?!\n)[{_UNSAFE_CHARS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit code 2."""


def error_text(e: BaseException) -> str:
    """An exception's message: a KeyError's own text rather than its repr (str() quotes it), others' str()."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e)


def printable(text: Any, *, newlines: bool = False) -> str:
    r"""Stored text as a terminal may show it: control characters written out as escapes, so an ESC stored in a
    search name, an error or a host shows as the four characters ``\x1b`` instead of acting on the terminal.

    Args:
      text: anything; shown as `str(text)`.
      newlines: keep line breaks (a multi-line field such as a traceback); by default a newline shows as ``\n``
        (a one-line field, a table cell).

    Example::

      printable("a\x1b[2Jb")    # the 11 characters a\x1b[2Jb: the screen is not cleared
      printable("one\ntwo")     # one\ntwo, on one line
    """
    text = str(text)
    pattern = _UNSAFE_BUT_NEWLINE if newlines else _UNSAFE
    return pattern.sub(_escape, text) if pattern.search(text) else text


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def fmt_int(n: int) -> str:
    """An exact integer, with its order of magnitude when large."""
    if n < 10**6:
        return f"{n:,}"
    return f"{n:.3e}  ({n})"


def fmt_count(n: int | None, unit: str = "") -> str:
    """12_300_000 -> '12.3M'; None -> '-'."""
    if n is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n}{unit}"


def fmt_seconds(s: float | None) -> str:
    """812.0 -> '13m32s'; None -> '-'."""
    if s is None:
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_float(x: float | None, digits: int = 4) -> str:
    """A number to `digits` decimals; None -> '-'."""
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_time(t: datetime.datetime | None) -> str:
    """A stored (UTC) time, to the minute."""
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints an aligned plain-text table (pipes and logs read it as well as a terminal); cells are `printable`."""
    cells = [[printable(c) for c in header]] + [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
