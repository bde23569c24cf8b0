"""Checks of a SQLite results database before anything writes to it (stdlib only).

A writer that opens a damaged file (a disk error, a half-copied backup, another program's file) would write into it
and make it worse; `check_before_writing` refuses it in one line instead, before the first write. `spinenas db
check` runs the full `integrity_check`.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse

from results_db.errors import DatabaseNotFoundError, DatabaseOpenError


def _connect_ro(path: str, *, immutable: bool) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, timeout=30)


def _stamp(path: str) -> tuple[int, int, int, bool]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, os.path.exists(path + "-wal")


def _check(path: str, pragma: str, *, immutable: bool) -> list[str]:
    try:
        con = _connect_ro(path, immutable=immutable)
        try:
            rows = con.execute(f"PRAGMA {pragma}").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise DatabaseOpenError(f"{path} is not a SQLite database, or its header is damaged ({e}); nothing "
                                    "was written to it: give the right --db, or restore a copy") from None
        return [str(e)]  # the check itself ran into the damage ("database disk image is malformed")
    return [str(r[0]) for r in rows]


def integrity(path: str, *, quick: bool = True) -> list[str]:
    """SQLite's `quick_check` (or the full `integrity_check`) of a file: ['ok'] for a sound one.

    It leaves no file behind when it can: a read-only connection to a WAL database makes its -wal and -shm files and
    cannot remove them, so a database no connection has open (no -wal) is read as immutable, without either. Such a
    read takes no lock, so it counts only when the file did not change under it and no -wal appeared (a writer that
    came meanwhile wrote to its -wal, not to the file read); otherwise the check runs again on an ordinary read-only
    connection (which may leave those two files).

    Raises:
      DatabaseOpenError: the file is not a SQLite database at all.
    """
    pragma = "quick_check" if quick else "integrity_check"
    before = _stamp(path)
    if not before[3]:
        result = _check(path, pragma, immutable=True)
        if _stamp(path) == before:
            return result
    return _check(path, pragma, immutable=False)


def check_before_writing(path: str, *, create: bool) -> None:
    """Refuses to write into a damaged or non-database file; with `create` False, also into a missing or empty one.

    Raises:
      DatabaseNotFoundError: no file and `create` is False.
      DatabaseOpenError: a directory, an empty file (with `create` False), a non-database or a damaged database.
    """
    if not os.path.exists(path):
        if create:
            return
        raise DatabaseNotFoundError(f"no database at {path}: nothing has been written there (give the search's "
                                    "--db, or set $SPINENAS_DB)")
    if not os.path.isfile(path):
        raise DatabaseOpenError(f"{path} is not a database file (it is a directory or a device)")
    if os.path.getsize(path) == 0:
        if create:
            return
        raise DatabaseOpenError(f"{path} is an empty file, not a results database: no search was ever written to it")
    result = integrity(path, quick=True)
    if result != ["ok"]:
        raise DatabaseOpenError(
            f"database {path} is damaged (SQLite's quick_check: {result[0]}{' ...' if len(result) > 1 else ''}); "
            f"nothing was written to it: restore a copy, and see 'spinenas db check --db {path}'"
        )


__all__ = ["check_before_writing", "integrity"]
