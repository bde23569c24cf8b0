"""A search's running count: trials finished by status, the best reward and its architecture, trial seconds, and the
status line the console shows after every finished trial."""

from __future__ import annotations

import dataclasses
import math

from results_db.status import TrialStatus


@dataclasses.dataclass
class Tally:
    """What a search has finished so far (a resume starts it from the stored trials).

    Attributes:
      budget: the search's trial budget.
      workers: trials in flight at once (the ETA's divisor).
      finished: trials finished, whatever their status.
      counts: finished trials by status.
      best: (reward, key) of the best completed or cached trial (a pruned trial's fed reward never counts).
      wall_times: seconds of every trial that trained (not cached or rejected ones).
    """

    budget: int
    workers: int
    finished: int = 0
    counts: dict[TrialStatus, int] = dataclasses.field(default_factory=lambda: {
        TrialStatus.COMPLETED: 0, TrialStatus.FAILED: 0, TrialStatus.CACHED: 0, TrialStatus.REJECTED: 0,
        TrialStatus.PRUNED: 0})
    best: tuple[float, str] | None = None
    wall_times: list[float] = dataclasses.field(default_factory=list)

    def add(self, status: TrialStatus, reward: float | None, key: str, wall_s: float | None) -> None:
        """Counts one finished trial."""
        self.finished += 1
        self.counts[status] += 1
        if reward is not None and status != TrialStatus.PRUNED and (self.best is None or reward > self.best[0]):
            self.best = (reward, key)
        if wall_s and status not in (TrialStatus.CACHED, TrialStatus.REJECTED):
            self.wall_times.append(wall_s)

    def status_line(self, *, running: int, show_rejected: bool, show_pruned: bool) -> str:
        """'done 3 failed 0 cached 1 running 2 | best 0.2100 | 84 s/trial | ETA 5m'."""
        from nas.cli.console import duration

        c = self.counts
        best = f"{self.best[0]:.4f}" if self.best else "-"
        rejected = f"rejected {c[TrialStatus.REJECTED]} " if show_rejected or c[TrialStatus.REJECTED] else ""
        pruned = f"pruned {c[TrialStatus.PRUNED]} " if show_pruned or c[TrialStatus.PRUNED] else ""
        line = (f"done {c[TrialStatus.COMPLETED]} failed {c[TrialStatus.FAILED]} cached {c[TrialStatus.CACHED]} "
                f"{rejected}{pruned}running {running} | best {best}")
        if self.wall_times:
            per = sum(self.wall_times) / len(self.wall_times)
            eta = per * math.ceil((self.budget - self.finished) / max(1, self.workers))
            line += f" | {per:.0f} s/trial | ETA {duration(eta)}"
        return line


__all__ = ["Tally"]
