"""Errors of the results database: a database that cannot be opened, or one of another schema version."""

from __future__ import annotations


class DatabaseNotFoundError(FileNotFoundError):
    """A read-only open was asked for a SQLite file that does not exist (nothing is created)."""


class DatabaseOpenError(RuntimeError):
    """The database exists but cannot be used: not a database, corrupt, unreachable, or not a spinenas database."""


class DatabaseFullError(DatabaseOpenError):
    """A write found the database's file system full (SQLite's "database or disk is full", ENOSPC, PostgreSQL's
    disk_full): nothing of that write was stored, and the database is as it was before it."""


class SchemaVersionError(RuntimeError):
    """The database was written with another schema version; the message says how to upgrade."""


class LeaseLostError(RuntimeError):
    """A write of a fenced store (`ResultStore.fence`) found that its driver no longer holds the search's lease:
    another driver took it over. Nothing of the write was stored."""


class DuplicateSearchError(ValueError):
    """`create_search` was given a name that is already taken."""


class AmbiguousKeyError(LookupError):
    """An architecture key prefix matches several architectures.

    Attributes:
      prefix: the prefix given.
      candidates: the matching keys (at most the first few).
    """

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        super().__init__(
            f"key prefix {prefix!r} is ambiguous: it matches {', '.join(candidates)}; give more characters"
        )
