"""What a running search shows: a line per finished trial, and the trials still running with their progress.

Two views with one interface. `LiveView` (a terminal) keeps one live line per running trial (its step of N, latest
loss, AP when it has one, ETA) and the summary line at the bottom, redrawn in place with rich, while finished
trials scroll above. `PlainView` (a pipe, a log file, a test) prints the finished-trial lines and, once a minute,
one line of what is running, so a log stays readable. Both show every line `printable` (a trial's error or a stored
name cannot move the cursor or recolour the terminal, or break a line in two).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nas.cli.ui import printable

HEARTBEAT_S = 60.0


@dataclasses.dataclass
class TrialProgress:
    """A running trial as the console shows it."""

    index: int
    key: str
    started: float
    total_steps: int
    step: int = 0
    loss: float | None = None
    ap: float | None = None
    first_report: tuple[float, int] | None = None  # (time, step) of its first report

    def update(self, step: int, metrics: Mapping[str, Any], now: float) -> None:
        if self.first_report is None:
            self.first_report = (now, step)
        self.step = max(self.step, step)
        loss = metrics.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss):
            self.loss = float(loss)
        ap = metrics.get("ap")
        if isinstance(ap, (int, float)) and math.isfinite(ap):
            self.ap = float(ap)

    def eta_s(self, now: float) -> float | None:
        """Seconds left, from the step rate since the first report (which follows the graph trace)."""
        if self.first_report is None or self.step >= self.total_steps:
            return None
        t0, s0 = self.first_report
        if self.step <= s0:
            return None
        return (now - t0) / (self.step - s0) * (self.total_steps - self.step)

    def text(self, now: float) -> str:
        parts = [f"trial {self.index} {self.key[:8]}"]
        if self.step:
            parts.append(f"step {self.step}/{self.total_steps}")
        else:
            parts.append(f"starting ({now - self.started:.0f} s)")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.ap is not None:
            parts.append(f"AP {self.ap:.4f}")
        eta = self.eta_s(now)
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        return "  ".join(parts)


class PlainView:
    """Plain lines: one per finished trial, and a line of the running trials once a minute.

    Args:
      out: where lines go (print by default).
    """

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self._last = time.time()

    def line(self, text: str, status: str = "") -> None:
        """A line that stays (a finished trial, a message); a finished trial's with the job's summary after it."""
        self.out(printable(f"{text} | {status}" if status else text))
        self._last = time.time()

    def refresh(self, running: Sequence[TrialProgress], status: str) -> None:
        """The running trials and the summary line changed (called often; prints at most once a minute)."""
        now = time.time()
        if now - self._last < HEARTBEAT_S or not running:
            return
        self._last = now
        self.out(printable(f"  ... running: {'; '.join(p.text(now) for p in running)} | {status}"))

    def close(self) -> None:
        """The search is over."""


class LiveView:
    """A terminal view drawn with rich: finished trials scroll, the running ones and the summary stay at the bottom.

    Args:
      console: the rich Console to draw on (default: stdout's).
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = console if console is not None else Console()
        self._live = Live(console=self._console, refresh_per_second=2, transient=True)
        self._live.start()
        self._running: Sequence[TrialProgress] = ()
        self._status = ""

    def line(self, text: str, status: str = "") -> None:
        """A line that scrolls; the job's summary (`status`) goes to the bottom, where it stays, so a finished
        trial's line fits a terminal's width."""
        from rich.text import Text

        self._live.console.print(Text(printable(text)))
        if status:
            self._status = status
            self.refresh(self._running, status)

    def refresh(self, running: Sequence[TrialProgress], status: str) -> None:
        from rich.console import Group
        from rich.text import Text

        now = time.time()
        self._running, self._status = running, status
        lines = [Text(printable(f"  {p.text(now)}"), style="cyan") for p in running]
        lines.append(Text(printable(status), style="bold"))
        self._live.update(Group(*lines))

    def close(self) -> None:
        self._live.stop()


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.2 h'."""
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["LiveView", "PlainView", "TrialProgress", "duration"]
