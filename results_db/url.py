"""Where the results database is: the default location, `SPINENAS_DB`, and plain paths as URLs (stdlib only)."""

from __future__ import annotations

import os
import urllib.parse

# The search job and the read commands agree on this default: a SQLite file under ./runs of the current directory.
DEFAULT_URL = "sqlite:///runs/spinenas.db"
# An environment variable that overrides the default (a URL or a plain file path).
ENV_VAR = "SPINENAS_DB"

DB_HELP = (
    f"database: a SQLAlchemy URL (sqlite:///path.db, postgresql://user@host/db) or a plain file path; default "
    f"${ENV_VAR} if set, else {DEFAULT_URL} (relative to the current directory)"
)


def resolve_url(db: str | None = None) -> str:
    """The SQLAlchemy URL of a `--db` value.

    Args:
      db: a SQLAlchemy URL, a plain file path (taken as SQLite), or None for ``$SPINENAS_DB`` or `DEFAULT_URL`.

    Returns:
      A URL; plain paths become ``sqlite:///<absolute path>``.

    Raises:
      ValueError: for an empty string.
    """
    if db is None:
        db = os.environ.get(ENV_VAR) or DEFAULT_URL
    if not isinstance(db, str) or not db.strip():
        raise ValueError(f"expected a database URL or file path, got {db!r}")
    db = db.strip()
    if "://" not in db:
        return "sqlite:///" + os.path.abspath(os.path.expanduser(db))
    return db


def sqlite_path(url: str) -> str | None:
    """The file path of a SQLite URL ('' for an in-memory database), or None for other databases.

    ``sqlite:///rel.db`` is relative to the current directory, ``sqlite:////abs.db`` absolute; a
    ``sqlite:///file:path?...&uri=true`` URL gives ``path``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0].lower() != "sqlite":
        return None
    path, _, query = rest.partition("?")
    path = path[1:] if path.startswith("/") else path  # the third slash of sqlite:/// ends the empty host
    if not path or path == ":memory:":
        return ""
    params = urllib.parse.parse_qs(query)
    if path.startswith("file:") and params.get("uri", ["false"])[0].lower() in ("true", "1"):
        path = urllib.parse.unquote(path[len("file:") :])
        if path in ("", ":memory:") or params.get("mode", [""])[0] == "memory":
            return ""
    return path
