"""What the CLI commands share: the user-error type and plain-text tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit code 2."""


def error_text(e: BaseException) -> str:
    """An exception's message: a KeyError's own text rather than its repr (str() quotes it), others' str()."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e)


def fmt_int(n: int) -> str:
    """An exact integer, with its order of magnitude when large."""
    if n < 10**6:
        return f"{n:,}"
    return f"{n:.3e}  ({n})"


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints an aligned plain-text table (pipes and logs read it as well as a terminal)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
