"""Checks of a SQLite results database before anything writes to it (stdlib only).

A writer that opens a damaged file (a disk error, a half-copied backup, another program's file) would write into it
and make it worse; `check_before_writing` refuses it in one line instead, before the first write. `spinenas db
check` runs the full `integrity_check`.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse

from results_db.errors import DatabaseFullError, DatabaseNotFoundError, DatabaseOpenError


# SQLite's result codes that say the file could not be reached or used here (permissions, a read-only or full file
# system, a lock, memory), not that its content is damaged: the primary codes PERM, BUSY, LOCKED, NOMEM, READONLY,
# FULL, CANTOPEN, and the I/O errors of the -shm file a WAL database needs beside it (IOERR_SHMOPEN, _SHMSIZE,
# _SHMLOCK, _SHMMAP). Python 3.11 gives the code (`sqlite_errorcode`); on 3.10 the messages tell.
_NOT_DAMAGE_PRIMARY = frozenset({3, 5, 6, 7, 8, 13, 14})
_NOT_DAMAGE_EXTENDED = frozenset({4618, 4874, 5130, 5386})
_NOT_DAMAGE_MESSAGES = ("unable to open database file", "database or disk is full", "readonly database",
                        "database is locked", "out of memory")


def not_damage(e: sqlite3.Error) -> bool:
    """Is this SQLite error the environment's (no access, a full or read-only disk, a lock), not the file's damage?"""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _NOT_DAMAGE_PRIMARY or code in _NOT_DAMAGE_EXTENDED
    return any(m in str(e) for m in _NOT_DAMAGE_MESSAGES)


def open_hint(path: str, e: BaseException) -> str:
    """What to do about an environment's SQLite error met opening `path` ('' when there is nothing to add)."""
    code = getattr(e, "sqlite_errorcode", None)
    if code == 13 or "disk is full" in str(e):
        return ": free space on its file system"
    if code in _NOT_DAMAGE_EXTENDED or code == 14 or "unable to open" in str(e):
        return f" (SQLite could not make or grow {path}-shm beside it: is that file system full or read-only?)"
    return ""


def cannot_read(path: str, e: sqlite3.Error) -> str:
    """The one line of an environment's error (`not_damage`) met reading `path`, with what to do about it."""
    return f"cannot read database {path}: {e}{open_hint(path, e)}"


# What SQLite makes first beside a WAL database it opens: the -shm's first region (the -wal starts empty).
SHM_BYTES = 32 * 1024


def no_room_beside(path: str) -> str | None:
    """Why SQLite cannot make the -shm beside the database `path` here, or None (it is there, or it can be made, as
    far as the file system tells). Checked before an open that would fail half way: such an open leaves an empty
    -wal and a truncated -shm behind.

    Returns:
      'its folder ... cannot be written' (a read-only mount, another user's folder) or 'its file system is full
      (N bytes free, ...)'.
    """
    if os.path.exists(path + "-shm"):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return None  # made later (a writer makes its folder), where the next check runs
    if not os.access(folder, os.W_OK):  # False on a read-only mount, for root too (EROFS)
        return f"its folder {folder} cannot be written (a read-only file system, or not this user's)"
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize  # root may use the reserved blocks
    if free < SHM_BYTES:
        return f"its file system is full ({free} bytes free; SQLite needs {SHM_BYTES} for {path}-shm beside it)"
    return None


def _connect_ro(path: str, *, immutable: bool) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, timeout=30)


def _wal_size(path: str) -> int | None:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return None


def _stamp(path: str) -> tuple[int, int, int, int | None]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, _wal_size(path)


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
        if not_damage(e):
            raise DatabaseOpenError(cannot_read(path, e)) from None
        return [str(e)]  # the check itself ran into the damage ("database disk image is malformed")
    return [str(r[0]) for r in rows]


def integrity(path: str, *, quick: bool = True) -> list[str]:
    """SQLite's `quick_check` (or the full `integrity_check`) of a file: ['ok'] for a sound one.

    It leaves no file behind when it can: a read-only connection to a WAL database makes its -wal and -shm files and
    cannot remove them, so a database with nothing in a -wal (none, or an empty one: no connection has it open, or
    none has written since its last checkpoint) is read as immutable, without either; that needs neither write
    access nor free space. Such a read takes no lock, so it counts only when the file did not change under it and
    its -wal neither appeared nor grew (a writer that came meanwhile wrote to its -wal, not to the file read);
    otherwise the check runs again on an ordinary read-only connection (which may leave those two files).

    Raises:
      DatabaseNotFoundError: no such file.
      DatabaseOpenError: a directory or a device, not a SQLite database at all, or a file that cannot be read here
        (permissions; a full or read-only file system where SQLite needs to write the -shm beside it).
    """
    if not os.path.exists(path):
        raise DatabaseNotFoundError(f"no database at {path}: nothing has been written there (give the search's "
                                    "--db, or set $SPINENAS_DB)")
    if not os.path.isfile(path):
        raise DatabaseOpenError(f"{path} is not a database file (it is a directory or a device)")
    pragma = "quick_check" if quick else "integrity_check"
    before = _stamp(path)
    if not before[3]:  # no -wal, or an empty one
        result = _check(path, pragma, immutable=True)
        if _stamp(path) == before:
            return result
    return _check(path, pragma, immutable=False)


def _check_room(path: str) -> None:
    room = no_room_beside(path)
    if room is not None:  # the open would leave a -wal and a truncated -shm behind, and write nothing
        error = DatabaseFullError if "is full" in room else DatabaseOpenError
        raise error(f"cannot write database {path}: {room}; nothing was written to it: free space there (or give a "
                    "--db on a file system this user can write), then run the command again")


def check_before_writing(path: str, *, create: bool) -> None:
    """Refuses to write into a damaged or non-database file; with `create` False, also into a missing or empty one.

    Raises:
      DatabaseNotFoundError: no file and `create` is False.
      DatabaseOpenError: a directory, an empty file (with `create` False), a non-database, a damaged database, or one
        that cannot be read or written here (`integrity`, `no_room_beside`).
      DatabaseFullError: its file system has no room for the -shm an open makes beside it.
    """
    if not os.path.exists(path):
        if create:
            _check_room(path)
            return
        raise DatabaseNotFoundError(f"no database at {path}: nothing has been written there (give the search's "
                                    "--db, or set $SPINENAS_DB)")
    if not os.path.isfile(path):
        raise DatabaseOpenError(f"{path} is not a database file (it is a directory or a device)")
    if os.path.getsize(path) == 0:
        if create:
            _check_room(path)
            return
        raise DatabaseOpenError(f"{path} is an empty file, not a results database: no search was ever written to it")
    result = integrity(path, quick=True)
    _check_room(path)
    if result != ["ok"]:
        raise DatabaseOpenError(
            f"database {path} is damaged (SQLite's quick_check: {result[0]}{' ...' if len(result) > 1 else ''}); "
            f"nothing was written to it: restore a copy, and see 'spinenas db check --db {path}'"
        )


__all__ = ["SHM_BYTES", "cannot_read", "check_before_writing", "integrity", "no_room_beside", "not_damage", "open_hint"]
