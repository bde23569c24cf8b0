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


def resolve_url(db: str | None = None, *, persistent: bool = False) -> str:
    """The SQLAlchemy URL of a `--db` value.

    Args:
      db: a SQLAlchemy URL, a plain file path (taken as SQLite), ``:memory:``, or None for ``$SPINENAS_DB`` or
        `DEFAULT_URL`.
      persistent: refuse an in-memory database (``sqlite://``, ``:memory:``): for the commands that write results,
        which would vanish with the process. The Python API (tests) may use one.

    Returns:
      A URL; plain paths become ``sqlite:///<absolute path>``, ``:memory:`` becomes ``sqlite://``.

    Raises:
      ValueError: an empty string; a SQLite ``file:`` URI given as a path (SQLite's URI parameters are taken only
        from a ``sqlite:///file:...?uri=true`` URL; as a path it names a file called ``file:...``); a
        ``sqlite:///file:...`` URL without ``uri=true`` (the same); with `persistent`, an in-memory database.
    """
    source = ""
    if db is None:
        db = os.environ.get(ENV_VAR) or DEFAULT_URL
        source = f" (from ${ENV_VAR})" if os.environ.get(ENV_VAR) else ""
    if not isinstance(db, str) or not db.strip():
        raise ValueError(f"expected a database URL or file path, got {db!r}")
    db = db.strip()
    if db == ":memory:":
        url = "sqlite://"
    elif db[:5].lower() == "file:":
        path = urllib.parse.unquote(urllib.parse.urlsplit(db).path) or "PATH"
        raise ValueError(
            f"expected a database URL (sqlite:///path.db, postgresql://user@host/db) or a plain file path, got the "
            f"SQLite URI {db!r}{source}: give its path ({path}) or sqlite:///{path}"
        )
    elif "://" not in db:
        url = "sqlite:///" + os.path.abspath(os.path.expanduser(db))
    else:
        url = db
        _check_sqlite_uri(url)
    if persistent and sqlite_path(url) == "":
        raise ValueError(
            f"{db!r}{source} is an in-memory database: it holds nothing before a command and keeps nothing after "
            f"it, so results written there would vanish; expected a file path or a database URL such as {DEFAULT_URL}"
        )
    return url


def _check_sqlite_uri(url: str) -> None:
    """Refuses ``sqlite:///file:x.db?mode=rw`` without ``uri=true``: SQLAlchemy would drop the parameters with a
    warning and make a file literally named ``file:x.db``."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0].lower() != "sqlite":
        return
    path, _, query = rest.partition("?")
    path = path[1:] if path.startswith("/") else path
    if path.startswith("file:") and urllib.parse.parse_qs(query).get("uri", ["false"])[0].lower() not in ("true",
                                                                                                          "1"):
        plain = urllib.parse.unquote(path[len("file:"):]) or "PATH"
        raise ValueError(
            f"expected uri=true in a sqlite:///file:... URL (without it SQLite's parameters are dropped and a file "
            f"named {path!r} is made), got {url!r}: add uri=true to its query, or give sqlite:///{plain}"
        )


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
