"""The schema version: migrations match the models, and another version is upgraded or refused with a message."""

from __future__ import annotations

import sqlite3

import pytest

import results_db.version
from nas import cli
from results_db import DatabaseOpenError, ResultReader, ResultStore, SchemaVersionError
from results_db.migrate import revisions, upgrade
from results_db.models import BaseModel
from results_db.version import SCHEMA_HISTORY, SCHEMA_VERSION
from search_space import SPINENET_49
from tests.results_db.fixtures import (
    assert_0001_upgrades,
    assert_0003_upgrades,
    assert_0004_upgrades,
    make_0001_db,
    make_db,
)


def _schema_diff(url: str) -> list:
    from alembic.migration import MigrationContext
    from alembic.autogenerate import compare_metadata
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), BaseModel.metadata)
    engine.dispose()
    return diff


def _set_version(path, version: str) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE alembic_version SET version_num = ?", (version,))


def test_schema_history_matches_the_migrations():
    assert revisions() == list(SCHEMA_HISTORY)
    assert SCHEMA_VERSION == SCHEMA_HISTORY[-1]


def test_migrations_build_the_models_schema(tmp_path):
    """Every revision, applied from an empty database, gives exactly the tables the models declare."""
    migrated = "sqlite:///" + str(tmp_path / "migrated.db")
    assert upgrade(migrated) == (None, SCHEMA_VERSION)
    assert _schema_diff(migrated) == []
    assert upgrade(migrated) == (SCHEMA_VERSION, SCHEMA_VERSION)  # idempotent
    created = "sqlite:///" + str(tmp_path / "created.db")
    ResultStore(created).close()  # create_all + version row, no Alembic import
    assert _schema_diff(created) == []
    with ResultStore(migrated) as s:  # a migrated database is a normal store
        s.create_search("a")
    with sqlite3.connect(tmp_path / "migrated.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_older_schema_is_refused_with_the_upgrade_command(tmp_path, monkeypatch, capsys):
    path = tmp_path / "old.db"
    make_db(str(path))
    # Pretend this code knows a newer revision, so the database's is the older one.
    monkeypatch.setattr(results_db.version, "SCHEMA_HISTORY", (SCHEMA_VERSION, "9000"))
    monkeypatch.setattr(results_db.version, "SCHEMA_VERSION", "9000")
    before = path.read_bytes()
    for opener in (ResultReader, ResultStore, lambda u: ResultStore(u, readonly=True)):
        with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION}.*spinenas db upgrade --db"):
            opener(str(path))
    assert cli.main(["top", "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spinenas db upgrade" in err
    assert path.read_bytes() == before


def test_unknown_newer_schema_is_refused(tmp_path, capsys):
    path = tmp_path / "new.db"
    make_db(str(path))
    _set_version(path, "7777")
    for opener in (ResultReader, ResultStore):
        with pytest.raises(SchemaVersionError, match="written by a newer spinenas; upgrade spinenas"):
            opener(str(path))
    assert cli.main(["searches", "--db", str(path)]) == 2
    assert "newer spinenas" in capsys.readouterr().err


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE people (name TEXT)")
    before = path.read_bytes()
    for opener in (ResultReader, ResultStore):
        with pytest.raises(DatabaseOpenError, match=r"not a spinenas results database: it has tables \['people'\]"):
            opener(str(path))
    assert path.read_bytes() == before
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_an_empty_file_is_empty_for_readers_and_a_new_database_for_writers(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(DatabaseOpenError, match="is empty: no search has written to it yet"):
        ResultReader(str(path))
    assert path.stat().st_size == 0
    with ResultStore(str(path)) as s:
        s.create_search("a")
    with ResultReader(str(path)) as r:
        assert [x.name for x in r.list_searches()] == ["a"]


def test_db_upgrade_command(tmp_path, capsys):
    path = tmp_path / "u.db"
    assert cli.main(["db", "upgrade", "--db", str(path)]) == 2
    assert "nothing to upgrade" in capsys.readouterr().err and not path.exists()
    path.touch()
    assert cli.main(["db", "upgrade", "--db", str(path)]) == 0
    assert f"(empty) -> {SCHEMA_VERSION}" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "--db", str(path)]) == 0
    assert f"already at schema version {SCHEMA_VERSION}" in capsys.readouterr().out


def test_a_0001_database_upgrades_to_0002_with_every_row(tmp_path):
    """Searches, archs, trials and checkpoints written at revision 0001 survive `upgrade`; the store then opens it."""
    assert_0001_upgrades("sqlite:///" + str(tmp_path / "old.db"))
    with sqlite3.connect(tmp_path / "old.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_0001_database_is_refused_until_upgraded(tmp_path, capsys):
    path = tmp_path / "old.db"
    make_0001_db("sqlite:///" + str(path))
    for opener in (ResultReader, ResultStore):
        with pytest.raises(SchemaVersionError, match=f"schema version 0001, this spinenas uses {SCHEMA_VERSION}"):
            opener(str(path))
    assert cli.main(["db", "upgrade", "--db", str(path)]) == 0
    assert f"schema version 0001 -> {SCHEMA_VERSION}" in capsys.readouterr().out
    with ResultReader(str(path)) as r:
        assert [s.name for s in r.list_searches()] == ["old-ppo", "old-random"]


def test_a_0003_database_upgrades_to_0004_and_takes_rejected_trials(tmp_path):
    """Revision 0004 rewrites the trials table's status constraint (SQLite: a table copy) and keeps every row."""
    assert_0003_upgrades("sqlite:///" + str(tmp_path / "old.db"))
    with sqlite3.connect(tmp_path / "old.db") as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_0003_database_is_refused_until_upgraded_and_a_downgrade_keeps_rejected_trials_as_failed(tmp_path, capsys):
    from alembic import command

    from results_db.migrate import alembic_config

    path = tmp_path / "old.db"
    url = "sqlite:///" + str(path)
    assert upgrade(url, revision="0003") == (None, "0003")
    with pytest.raises(SchemaVersionError,
                       match=f"schema version 0003, this spinenas uses {SCHEMA_VERSION}.*spinenas db upgrade"):
        ResultStore(str(path))
    assert cli.main(["db", "upgrade", "--db", str(path)]) == 0
    assert f"schema version 0003 -> {SCHEMA_VERSION}" in capsys.readouterr().out
    with ResultStore(url) as store:
        store.create_search("s")
        key = store.register_arch(SPINENET_49)
        [t] = store.add_trials("s", [(key, [1])])
        store.finish_trial(t, status="rejected", error="rejected: over the FLOPs limit")
    command.downgrade(alembic_config(url), "0003")
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT status, error FROM trials").fetchall() == [("failed", "rejected: over the FLOPs limit")]
    assert upgrade(url) == ("0003", SCHEMA_VERSION)


def test_a_0004_database_upgrades_to_0005_and_takes_pruned_trials(tmp_path):
    """Revision 0005 rewrites the trials table's status constraint (SQLite: a table copy) and keeps every row."""
    assert_0004_upgrades("sqlite:///" + str(tmp_path / "old.db"))
    with sqlite3.connect(tmp_path / "old.db") as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []


def _one_trial_downgraded(tmp_path, revision: str, **finish) -> tuple:
    """A database of today's schema holding one finished trial (`finish`: finish_trial's arguments), downgraded to
    `revision`: (its path, URL, the arch's key)."""
    from alembic import command

    from results_db.migrate import alembic_config

    path = tmp_path / "old.db"
    url = "sqlite:///" + str(path)
    with ResultStore(url) as store:
        store.create_search("s")
        key = store.register_arch(SPINENET_49)
        [t] = store.add_trials("s", [(key, [1])])
        store.finish_trial(t, **finish)
    command.downgrade(alembic_config(url), revision)
    return path, url, key


def test_a_downgrade_from_0005_keeps_pruned_trials_as_failed(tmp_path):
    path, url, _ = _one_trial_downgraded(tmp_path, "0004", status="pruned", reward=0.1, metrics={"rung": 100})
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT status, error FROM trials").fetchall() == [("failed", "pruned: stopped at a rung")]
    assert upgrade(url) == ("0004", SCHEMA_VERSION)


def test_a_0005_database_upgrades_to_0006_and_its_trials_read_without_a_precision(tmp_path):
    """Revision 0006 adds trials.precision (nullable): older trials keep every field and read as None."""
    path, url, key = _one_trial_downgraded(tmp_path, "0005", status="completed", reward=0.3, metrics={"ap": 0.3},
                                           host="w1")
    with sqlite3.connect(path) as c:
        assert "precision" not in [row[1] for row in c.execute("PRAGMA table_info(trials)")]
    assert upgrade(url) == ("0005", SCHEMA_VERSION)
    with ResultStore(url) as store:
        [old] = store.trials("s")
        assert (old.reward, old.host, dict(old.metrics), old.precision) == (0.3, "w1", {"ap": 0.3}, None)
        [t2] = store.add_trials("s", [(key, [2])])
        store.finish_trial(t2, status="completed", reward=0.31, precision="bfloat16")
        assert store.get_trial(t2).precision == "bfloat16"
        [t3] = store.add_trials("s", [(key, [3])])
        with pytest.raises(ValueError, match="precision must be"):
            store.finish_trial(t3, status="failed", precision="x" * 17)
        assert store.get_trial(t3).status == "queued"  # a refused finish writes nothing
