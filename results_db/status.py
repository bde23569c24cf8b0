"""Trial and search statuses: one enum each, stdlib only (the read commands must not import SQLAlchemy).

Both are ``str`` enums, so a member compares equal to its value (``TrialStatus.COMPLETED == 'completed'``) and the
plain strings stored in the database, returned by `results_db.queries` and printed by the CLI are the values.
"""

from __future__ import annotations

import enum


class _Status(str, enum.Enum):
    """A status that prints as its stored value ('completed'), as f-strings and messages want."""

    def __str__(self) -> str:
        return str(self.value)


class TrialStatus(_Status):
    """Where a trial is. QUEUED -> RUNNING -> COMPLETED | FAILED; CACHED = not run, a stored result was reused;
    REJECTED = not run, its architecture is over the search's FLOPs limit (``search.max_flops``), fed back as a
    failure; PRUNED = stopped at a rung by the search's scheduler (``scheduler.type`` asha): its intermediate metrics
    are stored, and the reward it was fed back with (`nas.engine.schedulers.Scheduler.pruned_reward`)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CACHED = "cached"
    REJECTED = "rejected"
    PRUNED = "pruned"


#: The statuses a trial ends in.
FINISHED_STATUSES = frozenset({TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.CACHED, TrialStatus.REJECTED,
                               TrialStatus.PRUNED})
#: The statuses of a trial that has not ended (a resumed search runs them again).
OPEN_STATUSES = frozenset({TrialStatus.QUEUED, TrialStatus.RUNNING})


class SearchStatus(_Status):
    """Where a search is. RUNNING while a driver works on it (or until a crashed driver is resumed)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


__all__ = ["FINISHED_STATUSES", "OPEN_STATUSES", "SearchStatus", "TrialStatus"]
