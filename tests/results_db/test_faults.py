"""The database under faults of its surroundings: a full disk, no write access, a directory given as the file.

Each is one line naming the problem, nothing is damaged, and reading needs no write access. These tests need no
root: a full disk is SQLite's own `max_page_count` (a write past it fails with SQLITE_FULL, "database or disk is
full", as on a full file system), and a read-only folder is a read-only open that fails as SQLite's does there
(CANTOPEN). tests/nas/test_cli_db_mounts.py checks the same on a real full tmpfs and a read-only mount.
"""

from __future__ import annotations

import os
import sqlite3

import pytest
from sqlalchemy import event

import results_db.reader
from results_db import DatabaseFullError, DatabaseOpenError, ResultReader, ResultStore
from results_db.integrity import check_before_writing, integrity, not_damage
from results_db.store import ResultStore as _Store


def _files(path) -> set[str]:
    return {n for n in os.listdir(path.parent) if n.startswith(path.name)}


def _closed_db(path) -> str:
    """A WAL database with two searches, closed (no -wal, no -shm), as a URL."""
    url = f"sqlite:///{path}"
    with ResultStore(url) as store:
        store.create_search("a", config="x: 1\n")
        store.create_search("b")
    assert _files(path) == {path.name}
    return url


# --------------------------------------------------------------------------------------------------- a full disk
@pytest.fixture
def full_after(monkeypatch):
    """Stores opened from now on can grow their file by `pages` pages, no more (`PRAGMA max_page_count`)."""
    limit = {}
    create = _Store._create_engine

    def _create_engine(self, echo):
        engine = create(self, echo)

        @event.listens_for(engine, "connect")
        def _limit(dbapi_conn, _record):
            if "pages" not in limit:
                return
            size = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {size + limit['pages']}")

        return engine

    monkeypatch.setattr(_Store, "_create_engine", _create_engine)

    def set_pages(pages: int) -> None:
        limit["pages"] = pages

    return set_pages


def test_a_write_on_a_full_disk_is_one_line_and_stores_nothing(tmp_path, full_after):
    """A write on a full file system is one line (DatabaseFullError, not SQLAlchemy's traceback) and stores nothing."""
    url = _closed_db(tmp_path / "r.db")
    full_after(2)
    store = ResultStore(url)
    with pytest.raises(DatabaseFullError) as e:
        store.create_search("big", config="x" * 100_000)
    assert str(e.value) == (
        f"cannot write database {url}: its file system is full (database or disk is full); nothing of this write was "
        "stored and the database is sound: free space there, then run the command again (a search or a study "
        "continues with --resume)"
    )
    assert isinstance(e.value, DatabaseOpenError)  # where the commands already turn store errors into one line
    store.create_search("small")  # what fits is still written: the store goes on
    assert [s.name for s in store.list_searches()] == ["a", "b", "small"]
    store.close()
    assert integrity(str(tmp_path / "r.db"), quick=False) == ["ok"]


def test_a_write_lock_held_past_the_busy_timeout_is_one_line_and_stores_nothing(tmp_path, monkeypatch):
    """Another process in a write transaction for longer than the busy timeout (a driver paused by SIGSTOP in one):
    `search --resume` failed with SQLAlchemy's ~60-line 'database is locked' traceback."""
    import results_db.store

    url = _closed_db(tmp_path / "r.db")
    monkeypatch.setattr(results_db.store, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = ResultStore(url)
    with pytest.raises(DatabaseOpenError) as e:
        store.create_search("c")
    assert str(e.value) == (
        f"cannot write database {url}: another process held its write lock for 0.1 s (database is locked: a writer "
        "paused or hung in a transaction); nothing of this write was stored: end that process or let it go on, then "
        "run the command again (a search or a study continues with --resume)"
    )
    holder.execute("ROLLBACK")
    holder.close()
    store.create_search("c")  # the lock let go: the store goes on
    assert [s.name for s in store.list_searches()] == ["a", "b", "c"]
    store.close()


# --------------------------------------------------------------------------------------------------- a directory
def test_a_directory_is_not_a_database_file_for_every_check(tmp_path):
    """A directory is 'not a database file' for every check (not DAMAGED by a disk I/O error)."""
    line = f"{tmp_path} is not a database file (it is a directory or a device)"
    for check in (lambda: integrity(str(tmp_path)), lambda: check_before_writing(str(tmp_path), create=True),
                  lambda: ResultReader(str(tmp_path))):
        with pytest.raises(DatabaseOpenError) as e:
            check()
        assert str(e.value) == line


# --------------------------------------------------------------------------------------------------- no write access
def test_errors_of_the_surroundings_are_not_damage(tmp_path):
    """A file SQLite cannot open (here: in a folder that is not there) is not a damaged one."""
    with pytest.raises(sqlite3.OperationalError) as e:
        sqlite3.connect(f"file:{tmp_path}/missing/r.db?mode=ro", uri=True)
    assert not_damage(e.value)
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    assert not not_damage(malformed)


def test_a_quick_check_with_an_empty_wal_needs_no_shm(tmp_path):
    """A read that failed on a full disk leaves an empty -wal: the check after it must not need a -shm either (it
    said DAMAGED, 'disk I/O error', on a full disk)."""
    path = tmp_path / "r.db"
    _closed_db(path)
    (tmp_path / "r.db-wal").write_bytes(b"")
    assert integrity(str(path), quick=False) == ["ok"]
    assert _files(path) == {"r.db", "r.db-wal"}  # read as immutable: no -shm made


@pytest.fixture
def no_shm_here(monkeypatch):
    """Read-only opens (``mode=ro`` without ``immutable=1``) fail as they do where SQLite cannot make the -shm
    beside a WAL database (a read-only mount, a folder this user may not write): SQLITE_CANTOPEN. Root passes every
    permission check, so the failure is SQLite's own, from a path it cannot open."""
    connect = sqlite3.connect
    opened = []

    def _connect(database, *args, **kwargs):
        opened.append(database)
        if "mode=ro" in database and "immutable=1" not in database:
            return connect("file:/nonexistent-folder/r.db?mode=ro", *args, **kwargs)
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(results_db.reader.sqlite3, "connect", _connect)
    return opened


def test_reading_needs_no_write_access(tmp_path, no_shm_here):
    """A WAL database on a read-only mount is read without write access (no 'unable to open database file')."""
    path = tmp_path / "r.db"
    _closed_db(path)
    with ResultReader(str(path)) as reader:
        assert [s.search.name for s in reader.search_summaries()] == ["a", "b"]
        assert reader.open_search("a").config == "x: 1\n"
    assert [u.rsplit("?", 1)[1] for u in no_shm_here] == ["mode=ro", "mode=ro&immutable=1"]
    with ResultStore(str(path), readonly=True) as store:  # the SQLAlchemy reader too
        assert [s.name for s in store.list_searches()] == ["a", "b"]
    assert _files(path) == {"r.db"}


def test_a_wal_with_changes_is_not_read_as_immutable(tmp_path, no_shm_here):
    """An immutable read never looks at the -wal: with changes in it, that would be a stale read; refuse instead."""
    path = tmp_path / "r.db"
    _closed_db(path)
    (tmp_path / "r.db-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(100))
    with pytest.raises(DatabaseOpenError) as e:
        ResultReader(str(path))
    assert str(e.value) == (
        f"cannot read database {path}: unable to open database file (SQLite could not make or grow {path}-shm beside "
        "it: is that file system full or read-only?); its -wal (104 bytes) may hold committed changes, which SQLite "
        "reads only through a "
        f"{path}-shm it cannot make here: open the database once where it can be written (a copy of it and its -wal "
        "in a writable folder will do)"
    )
    assert [u.rsplit("?", 1)[1] for u in no_shm_here] == ["mode=ro"]


def test_where_it_can_a_reader_reads_a_live_writers_wal(tmp_path):
    """Not immutable where a -shm can be made: a reader sees what a writer committed and has not checkpointed."""
    path = tmp_path / "r.db"
    url = _closed_db(path)
    writer = ResultStore(url)
    writer.create_search("c")
    assert os.path.getsize(tmp_path / "r.db-wal") > 0
    with ResultReader(str(path)) as reader:
        assert [s.name for s in reader.list_searches()] == ["a", "b", "c"]
    writer.close()


# --------------------------------------------------------------------------------------------------- interrupted
# A child per case creates a store at a new path and sends itself SIGKILL right after statement `at` of the schema's
# creation (each CREATE and the version row); one interpreter, one fork per case. Prints the number of statements.
_KILL_WHILE_CREATING = r"""
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from results_db import ResultStore
work = sys.argv[1]
state = {"n": 0, "at": 0}
@event.listens_for(Engine, "after_cursor_execute")
def _count(conn, cursor, statement, params, context, executemany):
    if statement.lstrip().upper().startswith(("CREATE", "INSERT INTO ALEMBIC_VERSION")):
        state["n"] += 1
        if state["n"] == state["at"]:
            os.kill(os.getpid(), signal.SIGKILL)
ResultStore(f"sqlite:///{work}/warm.db").close()
total = state["n"]
for at in range(1, total + 1):
    state.update(n=0, at=at)
    pid = os.fork()
    if pid == 0:
        try:
            ResultStore(f"sqlite:///{work}/at{at}.db")
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (at, status)
print(total)
"""


@pytest.mark.slow
def test_a_search_killed_while_it_makes_its_database_leaves_one_the_next_search_makes(tmp_path):
    """Before, each CREATE TABLE committed at once: a writer killed (or interrupted) while it made a new database
    left tables without a schema version, and every later command refused the file as not a spinenas database."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _KILL_WHILE_CREATING, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    total = int(proc.stdout)
    assert total >= 10  # six tables, their indexes, the version table and its row
    for at in range(1, total + 1):
        with ResultStore(f"sqlite:///{tmp_path}/at{at}.db") as store:
            store.create_search("a")
            assert [s.name for s in store.list_searches()] == ["a"]


def test_a_writer_interrupted_while_it_makes_its_database_leaves_an_empty_one(tmp_path, monkeypatch):
    from sqlalchemy.engine import Engine

    seen = {"n": 0, "at": 0}

    def _count(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("CREATE"):
            seen["n"] += 1
            if seen["n"] == seen["at"]:
                raise KeyboardInterrupt

    event.listen(Engine, "after_cursor_execute", _count)
    try:
        for at in (1, 5, 9):
            seen.update(n=0, at=at)
            with pytest.raises(KeyboardInterrupt):
                ResultStore(f"sqlite:///{tmp_path}/at{at}.db")
            con = sqlite3.connect(tmp_path / f"at{at}.db")
            assert con.execute("SELECT name FROM sqlite_master").fetchall() == []
            assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            con.close()
            seen.update(at=0)
            ResultStore(f"sqlite:///{tmp_path}/at{at}.db").close()
    finally:
        event.remove(Engine, "after_cursor_execute", _count)


def test_a_folder_that_cannot_be_written_is_read_as_immutable_without_trying(tmp_path, monkeypatch):
    """`os.access` says no (as it does on a read-only mount, for root too): no ``mode=ro`` attempt, which would leave
    a -wal and a truncated -shm where it can make them, and nothing made beside the file."""
    path = tmp_path / "r.db"
    _closed_db(path)
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path) else access(p, mode))
    opened = []
    connect = sqlite3.connect
    monkeypatch.setattr(results_db.reader.sqlite3, "connect", lambda db, *a, **k: opened.append(db) or connect(db, *a,
                                                                                                               **k))
    with ResultReader(str(path)) as reader:
        assert [s.name for s in reader.list_searches()] == ["a", "b"]
    assert [u.rsplit("?", 1)[1] for u in opened] == ["mode=ro&immutable=1"]
    with pytest.raises(DatabaseOpenError, match=r"cannot write database .*: its folder .* cannot be written \(a "
                       r"read-only file system, or not this user's\); nothing was written to it"):
        ResultStore(str(path))
    assert _files(path) == {"r.db"}


def test_no_room_for_the_shm_refuses_writers_and_reads_as_immutable_and_makes_nothing(tmp_path, monkeypatch):
    """A full disk (statvfs: no free block): a writer is refused before its open would leave a -wal and a truncated
    -shm; a reader reads."""
    path = tmp_path / "r.db"
    _closed_db(path)
    statvfs = os.statvfs

    class Full:
        def __init__(self, st):
            self.f_frsize, self.f_bfree, self.f_bavail = st.f_frsize, 0, 0

    monkeypatch.setattr(os, "statvfs", lambda p: Full(statvfs(p)))
    with pytest.raises(DatabaseFullError) as e:
        ResultStore(str(path))
    assert str(e.value) == (
        f"cannot write database {path}: its file system is full (0 bytes free; SQLite needs 32768 for {path}-shm "
        "beside it); nothing was written to it: free space there (or give a --db on a file system this user can "
        "write), then run the command again"
    )
    with ResultReader(str(path)) as reader:
        assert [s.name for s in reader.list_searches()] == ["a", "b"]
    assert _files(path) == {"r.db"}
