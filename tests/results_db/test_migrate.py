"""`upgrade` is all or nothing: an upgrade that fails or is interrupted after any of its operations leaves the old
database, and running it again does the whole upgrade."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from alembic.ddl.impl import DefaultImpl
from sqlalchemy import exc as sa_exc

from results_db import DatabaseOpenError
from results_db.migrate import upgrade
from results_db.version import SCHEMA_VERSION
from tests.results_db.fixtures import COLUMNS_0001, make_0001_db, table_rows


def dump(path) -> list[str]:
    """Every table's schema and rows, as SQL (SQLite's .dump)."""
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def copy_db(src, dst) -> str:
    """A copy of a closed database file (it has no -wal), as a URL."""
    shutil.copyfile(src, dst)
    return f"sqlite:///{dst}"


class Interrupt:
    """Counts the statements the migrations run (`DefaultImpl._exec`: DDL, batch copies, the version row) and raises
    `exc` right after statement `at` ran (None: never)."""

    def __init__(self, monkeypatch, at: int | None = None, exc: BaseException | None = None) -> None:
        self.at, self.exc, self.count = at, exc, 0
        original = DefaultImpl._exec

        def _exec(impl, construct, *args, **kwargs):
            result = original(impl, construct, *args, **kwargs)
            self.count += 1
            if self.count == self.at:
                raise self.exc
            return result

        monkeypatch.setattr(DefaultImpl, "_exec", _exec)


@pytest.fixture(scope="module")
def old_db(tmp_path_factory):
    """A database at schema 0001 with rows in every table (closed: no -wal), and its dump."""
    path = tmp_path_factory.mktemp("old") / "old.db"
    make_0001_db(f"sqlite:///{path}")
    return path, dump(path)


def _statements(old_db, tmp_path, monkeypatch) -> int:
    counter = Interrupt(monkeypatch)
    assert upgrade(copy_db(old_db[0], tmp_path / "count.db")) == ("0001", SCHEMA_VERSION)
    return counter.count


@pytest.mark.slow
def test_an_upgrade_interrupted_after_any_statement_leaves_the_database_as_it_was(old_db, tmp_path, monkeypatch):
    """Before transactional DDL, 34 of these 35 points left trial_reports behind at version 0001."""
    path, before = old_db
    total = _statements(old_db, tmp_path, monkeypatch)
    assert total >= 30  # table creations, column additions, two batch copies of trials, six version updates
    for at in range(1, total + 1):
        url = copy_db(path, tmp_path / f"at{at}.db")
        Interrupt(monkeypatch, at, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            upgrade(url)
        assert dump(tmp_path / f"at{at}.db") == before, f"interrupted after statement {at}"
    monkeypatch.undo()
    rows = {t: table_rows(url, t, cols) for t, cols in COLUMNS_0001.items()}
    assert upgrade(url) == ("0001", SCHEMA_VERSION)  # the rerun does all of it
    assert {t: table_rows(url, t, cols) for t, cols in COLUMNS_0001.items()} == rows


@pytest.mark.parametrize("at", [1, 10, 21, 34])  # trial_reports; inside 0004's copy of trials; 0005's copy; 0006
def test_a_failed_migration_is_one_line_that_says_nothing_was_changed(old_db, tmp_path, monkeypatch, at):
    path, before = old_db
    url = copy_db(path, tmp_path / "full.db")
    # As SQLAlchemy raises what the driver raised: SQLite's SQLITE_FULL.
    full = sa_exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
    Interrupt(monkeypatch, at, full)
    with pytest.raises(DatabaseOpenError) as e:
        upgrade(url)
    assert str(e.value) == (
        f"upgrading database {url} from schema version 0001 failed; nothing was changed (the upgrade is one "
        "transaction): database or disk is full (free space on its file system, then run `spinenas db upgrade` "
        "again)"
    )
    assert dump(tmp_path / "full.db") == before
    monkeypatch.undo()
    assert upgrade(url) == ("0001", SCHEMA_VERSION)


def test_a_database_a_non_transactional_upgrade_left_half_way_says_to_restore_its_copy(old_db, tmp_path):
    """What an interrupted upgrade of an earlier spinenas left: trial_reports made, the version still 0001."""
    url = copy_db(old_db[0], tmp_path / "wedged.db")
    con = sqlite3.connect(tmp_path / "wedged.db")
    con.execute("CREATE TABLE trial_reports (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    with pytest.raises(DatabaseOpenError, match=r"from schema version 0001 failed; nothing was changed .*table "
                       r"trial_reports already exists; .* an earlier upgrade was interrupted half way; restore the "
                       r"copy made before it$"):
        upgrade(url)


def test_the_upgrade_takes_the_write_lock_before_it_reads(old_db, tmp_path, monkeypatch):
    """BEGIN IMMEDIATE: a writer holding the file makes the upgrade wait (here: fail at once), never interleave."""
    import results_db.migrate

    url = copy_db(old_db[0], tmp_path / "busy.db")
    monkeypatch.setattr(results_db.migrate, "BUSY_TIMEOUT_S", 0.0)
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseOpenError, match="cannot open database for upgrading: database is locked"):
            upgrade(url)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert dump(tmp_path / "busy.db") == old_db[1]
