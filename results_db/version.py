"""The schema version this code reads and writes, and the check against a database's own (stdlib only)."""

from __future__ import annotations

from results_db.errors import SchemaVersionError

# Every Alembic revision in results_db/migrations/versions, oldest first; the last is the schema this code uses.
# A test checks this tuple against the migrations, so telling "older" from "newer" needs no Alembic import.
SCHEMA_HISTORY: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006")
SCHEMA_VERSION = SCHEMA_HISTORY[-1]


def check_version(version: str, where: str = "the database") -> None:
    """Checks a database's schema version (its Alembic revision) against this code's.

    Raises:
      SchemaVersionError: older (upgrade the database) or unknown (written by a newer spinenas).
    """
    if version == SCHEMA_VERSION:
        return
    if version in SCHEMA_HISTORY:
        raise SchemaVersionError(
            f"database {where} has schema version {version}, this spinenas uses {SCHEMA_VERSION}: back the "
            f"database up, then run `spinenas db upgrade --db {where}`"
        )
    raise SchemaVersionError(
        f"database {where} has schema version {version!r}, unknown to this spinenas (which knows "
        f"{', '.join(SCHEMA_HISTORY)}): it was written by a newer spinenas; upgrade spinenas to read it"
    )
