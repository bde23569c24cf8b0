"""`ResultReader`: the read-only side of the results database, fast enough for `spinenas top`.

A SQLite file is read through the standard library's ``sqlite3``, opened as ``file:...?mode=ro``: nothing is
created (a missing path is an error) and nothing can be written. Every other URL goes through SQLAlchemy
(`ResultStore` with ``readonly=True``). Both run the same queries (`results_db.queries`).

SQLite in WAL mode lets this reader run while the search job writes. Like any WAL reader it may leave the
``-wal`` / ``-shm`` side files of an existing database in place; it never creates the database file itself. Where
it cannot make them (a read-only mount, a folder it may not write, a full disk) it reads the file as immutable
(`connect_readonly`): reading needs no write access.

Example::

  with ResultReader('runs/spinenas.db') as reader:
      for r in reader.top(k=10):
          print(r.rank, r.arch_key, r.reward)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from results_db.errors import DatabaseNotFoundError, DatabaseOpenError
from results_db.integrity import cannot_read, no_room_beside
from results_db.queries import Executor, ReadAPI
from results_db.url import resolve_url, sqlite_path

if TYPE_CHECKING:
    from results_db.store import ResultStore

logger = logging.getLogger(__name__)

# Milliseconds a read waits on a lock (SQLite busy timeout); WAL readers wait only in rare moments.
BUSY_TIMEOUT_MS = 30_000

# SQLite's result codes of a read-only open that failed for want of the -shm file beside a WAL database (it cannot
# be made or grown here): CANTOPEN, READONLY (and its extended codes), FULL, PERM, IOERR_SHMOPEN/_SHMSIZE/_SHMMAP.
# Python 3.10's errors carry no code: their messages tell.
_NO_SHM_PRIMARY = frozenset({3, 8, 13, 14})
_NO_SHM_EXTENDED = frozenset({4618, 4874, 5386})
_NO_SHM_MESSAGES = ("unable to open database file", "disk I/O error", "database or disk is full", "readonly database")


def _no_shm(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _NO_SHM_PRIMARY or code in _NO_SHM_EXTENDED
    return any(m in str(e) for m in _NO_SHM_MESSAGES)


def connect_readonly(path: str, *, timeout: float) -> sqlite3.Connection:
    """A read-only connection to an existing SQLite file, that needs no write access to it or its folder.

    ``mode=ro`` where it can: it reads a WAL database through the -wal and -shm files beside it, and so sees what a
    writer is committing meanwhile, but it must create the -shm (and the -wal) when they are missing. Where it
    cannot (a read-only mount, a folder this user may not write, a full file system: `no_room_beside` tells
    beforehand, a failed ``mode=ro`` open afterwards) the file is opened ``immutable=1`` instead: no -shm, no
    locks, nothing made beside it. That is sound only because no writer is at work: a writer of a WAL database
    always has its -shm, and the -shm was missing or unusable; and the -wal must hold nothing (none, or empty),
    since an immutable read never looks at it. (A writer that starts while such a read runs is not seen; a writer
    could not start on a read-only or full file system anyway.)

    Raises:
      DatabaseOpenError: the -wal holds committed changes that cannot be read without making the -shm here.
      sqlite3.Error: any other failure of the open (the caller's to describe).
    """
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        wal = os.path.getsize(path + "-wal")
    except OSError:
        wal = 0
    # Known beforehand (a read-only folder, a full disk): no attempt that would leave a -wal and a truncated -shm.
    why: str | None = no_room_beside(path)
    if why is None:
        conn = None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read opens the -wal and -shm
            return conn
        except sqlite3.OperationalError as e:
            if conn is not None:
                conn.close()
            if not _no_shm(e):
                raise
            why = cannot_read(path, e)
            wal = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
    else:
        why = f"cannot read database {path} with SQLite's -shm: {why}"
    if wal:
        raise DatabaseOpenError(
            f"{why}; its -wal ({wal} bytes) may hold committed changes, which SQLite reads only through a "
            f"{path}-shm it cannot make here: open the database once where it can be written (a copy of it and its "
            "-wal in a writable folder will do)"
        )
    logger.info("reading %s as immutable (%s)", path, why)
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


class ResultReader(ReadAPI):
    """Opens a results database for reading only.

    Args:
      url: a SQLAlchemy URL, a plain file path, or None for ``$SPINENAS_DB`` / ``sqlite:///runs/spinenas.db``.

    Raises:
      DatabaseNotFoundError: the SQLite file does not exist (nothing is created).
      DatabaseOpenError: not a database, corrupt, unreachable, empty, or not a spinenas database.
      SchemaVersionError: another schema version (the message says what to do).
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self._conn: sqlite3.Connection | None = None
        self._store: ResultStore | None = None
        path = sqlite_path(self.url)
        if path:
            self._conn = self._open_sqlite(path)
        else:
            from results_db.store import ResultStore

            self._store = ResultStore(self.url, readonly=True)

    @property
    def display_url(self) -> str:
        """The URL with any password hidden."""
        if self._store is not None:
            return self._store.display_url
        return self.url

    def _open_sqlite(self, path: str) -> sqlite3.Connection:
        if not os.path.exists(path):
            raise DatabaseNotFoundError(
                f"no database at {path}: nothing has been written there (give the search's --db, or set "
                "$SPINENAS_DB)"
            )
        if not os.path.isfile(path):
            raise DatabaseOpenError(f"{path} is not a database file (it is a directory or a device)")
        try:
            conn = connect_readonly(path, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.DatabaseError as e:
            hint = " (the file is not a SQLite database, or it is corrupt)" if "not a database" in str(e) else ""
            raise DatabaseOpenError(f"cannot open database {path}: {e}{hint}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = self._version(conn, tables)
        except sqlite3.DatabaseError as e:
            conn.close()
            hint = " (the file is not a SQLite database, or it is corrupt)" if "not a database" in str(e) else ""
            raise DatabaseOpenError(f"cannot open database {path}: {e}{hint}") from None
        except BaseException:
            conn.close()
            raise
        from results_db.version import check_version

        try:
            check_version(version, self.url)
        except BaseException:
            conn.close()
            raise
        return conn

    def _version(self, conn: sqlite3.Connection, tables: set[str]) -> str:
        if "alembic_version" not in tables:
            if not tables:
                raise DatabaseOpenError(f"database {self.url} is empty: no search has written to it yet")
            raise DatabaseOpenError(
                f"not a spinenas results database: it has tables {sorted(tables)[:6]} but no schema version "
                "(alembic_version)"
            )
        versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        if len(versions) != 1:
            raise DatabaseOpenError(f"the database records {len(versions)} schema versions {versions}; expected one")
        return versions[0]

    @contextmanager
    def _executor(self) -> Iterator[Executor]:
        if self._store is not None:
            with self._store._executor() as ex:
                yield ex
            return
        if self._conn is None:
            raise RuntimeError("the reader is closed")
        conn = self._conn

        def ex(sql: str, params: Mapping[str, Any]) -> Any:
            return conn.execute(sql, params)

        try:
            yield ex
        except sqlite3.DatabaseError as e:
            raise DatabaseOpenError(f"reading {self.url} failed: {e}") from None

    def close(self) -> None:
        """Closes the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> ResultReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultReader({self.display_url!r})"
