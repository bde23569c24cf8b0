"""What was tried and how it did: SQLAlchemy models and the store API.

Importing the package is cheap: SQLAlchemy loads only when a name below is first used, so the CLI can take
`results_db.url` (the default location) without it.

Example::

  from results_db import NewTrial, ResultStore
  store = ResultStore()                                  # $SPINENAS_DB or sqlite:///runs/spinenas.db
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from results_db.url import DEFAULT_URL, ENV_VAR, resolve_url

if TYPE_CHECKING:
    from results_db.errors import (
        AmbiguousKeyError,
        DatabaseFullError,
        DatabaseNotFoundError,
        DatabaseOpenError,
        DuplicateSearchError,
        SchemaVersionError,
    )
    from results_db.status import SearchStatus, TrialStatus
    from results_db.reader import ResultReader
    from results_db.records import (
        ArchRecord,
        CheckpointRecord,
        FingerprintSummary,
        KnownResult,
        NewTrial,
        RankedArch,
        SearchRecord,
        SearchSummary,
        TrialRecord,
        TrialReport,
    )
    from results_db.store import ResultStore
    from results_db.version import SCHEMA_VERSION

# name -> module that defines it (imported on first use, like Ray Tune's SEARCH_ALG_IMPORT).
_LAZY = {
    "ResultStore": "results_db.store",
    "ResultReader": "results_db.reader",
    "SCHEMA_VERSION": "results_db.version",
    "SearchStatus": "results_db.status",
    "TrialStatus": "results_db.status",
    **{
        n: "results_db.errors"
        for n in (
            "AmbiguousKeyError",
            "DatabaseFullError",
            "DatabaseNotFoundError",
            "DatabaseOpenError",
            "DuplicateSearchError",
            "SchemaVersionError",
        )
    },
    **{
        n: "results_db.records"
        for n in (
            "ArchRecord",
            "CheckpointRecord",
            "FingerprintSummary",
            "KnownResult",
            "NewTrial",
            "RankedArch",
            "SearchRecord",
            "SearchSummary",
            "TrialRecord",
            "TrialReport",
        )
    },
}

__all__ = ["DEFAULT_URL", "ENV_VAR", "resolve_url", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'results_db' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
