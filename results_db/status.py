"""Trial and search statuses: one enum each, stdlib only (the read commands must not import SQLAlchemy).

Both are ``str`` enums, so a member compares equal to its value (``TrialStatus.COMPLETED == 'completed'``) and the
plain strings stored in the database, returned by `results_db.queries` and printed by the CLI are the values.
"""

from __future__ import annotations

import enum


class TrialStatus(str, enum.Enum):
    """Where a trial is. QUEUED -> RUNNING -> COMPLETED | FAILED; CACHED = not run, a stored result was reused."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CACHED = "cached"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        """True for the statuses a trial ends in."""
        return self in FINISHED_STATUSES


#: The statuses a trial ends in.
FINISHED_STATUSES = frozenset({TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.CACHED})
#: The statuses of a trial that has not ended (a resumed search runs them again).
OPEN_STATUSES = frozenset({TrialStatus.QUEUED, TrialStatus.RUNNING})


class SearchStatus(str, enum.Enum):
    """Where a search is. RUNNING while a driver works on it (or until a crashed driver is resumed)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


__all__ = ["FINISHED_STATUSES", "OPEN_STATUSES", "SearchStatus", "TrialStatus"]
