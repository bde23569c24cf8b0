"""Schema migrations with Alembic: bring an older results database up to `SCHEMA_VERSION`.

An upgrade is all or nothing: every migration runs in one transaction, and on SQLite that transaction holds the DDL
too (`migration_engine`), so an upgrade interrupted at any point (Ctrl-C, SIGTERM, kill -9, a full disk) leaves the
database as it was, at its old version, and running it again does the whole upgrade.

Example::

  from results_db.migrate import upgrade
  before, after = upgrade('sqlite:///runs/spinenas.db')   # ('0001', '0002'), or (None, '0002') for an empty db
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import TYPE_CHECKING, Any

from results_db.url import resolve_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# How long an upgrade waits for a SQLite writer (a search still running) to let go of the file.
BUSY_TIMEOUT_S = 30.0


def alembic_config(url: str | None = None):  # -> alembic.config.Config
    """An Alembic config pointing at this package's migrations (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", resolve_url(url).replace("%", "%%"))
    return cfg


def revisions() -> list[str]:
    """Every revision id of the migrations, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def migration_engine(url: str) -> Engine:
    """An engine for migrations whose transactions hold DDL too.

    Python's sqlite3 driver opens a transaction only before INSERT/UPDATE/DELETE and runs CREATE, DROP and ALTER
    outside of it, each committed at once: an upgrade interrupted after its first CREATE TABLE left that table
    behind at the old version, and every later upgrade failed on it. SQLite itself has transactional DDL; this is
    SQLAlchemy's recipe for it ("Serializable isolation / Savepoints / Transactional DDL" in its pysqlite docs):
    the driver's own transaction handling off, and a BEGIN (IMMEDIATE: the write lock at once, so that a writer
    cannot slip in between the upgrade's reads and its writes) wherever SQLAlchemy begins one. PostgreSQL's DDL is
    transactional already.

    Raises:
      sqlalchemy.exc.ArgumentError, NoSuchModuleError, ImportError: a bad URL or a missing driver.
    """
    from sqlalchemy import create_engine, event

    from results_db.url import sqlite_path

    if sqlite_path(url) is None:
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrates a database to `revision` (default the newest) and returns its versions before and after.

    An empty database gets the whole schema. The database must be reachable for writing; back a SQLite file
    up first (migrations of SQLite copy tables). All migrations run in one transaction: a failure or an interruption
    anywhere leaves the database at its old version, unchanged.

    Raises:
      DatabaseOpenError: not a database, unreachable, it has tables but no schema version, or a migration failed
        (nothing was changed then).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect
    from sqlalchemy import exc as sa_exc

    from results_db.errors import DatabaseOpenError
    from results_db.url import sqlite_path

    url = resolve_url(url)
    path = sqlite_path(url)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    try:
        engine = migration_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as e:
        raise DatabaseOpenError(f"cannot open database for upgrading: {str(e).splitlines()[0]}") from None
    before: str | None = None
    opened = False  # past reading the version: a failure now is one of the migrations
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            if tables and "alembic_version" not in tables:
                raise DatabaseOpenError(
                    f"not a spinenas results database: it has tables {sorted(tables)[:6]} but no schema version"
                )
            before = MigrationContext.configure(conn).get_current_revision()
            opened = True
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            after = MigrationContext.configure(conn).get_current_revision()
    except (sa_exc.DBAPIError, OSError) as e:
        raise DatabaseOpenError(_failure(e, url, before, opened, engine.dialect.name)) from None
    finally:
        engine.dispose()
    if path and engine.dialect.name == "sqlite":
        import sqlite3

        raw = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            raw.execute("PRAGMA journal_mode = WAL")
        finally:
            raw.close()
    logger.info("upgraded %s from schema %s to %s", url, before, after)
    return before, after


def _display(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse never got this far; show it as given
        return url


def _failure(e: BaseException, url: str, before: str | None, opened: bool, dialect: str) -> str:
    """The one line of a failed upgrade."""
    orig = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    why = lines[0] if lines else type(orig).__name__
    if "disk is full" in why or getattr(orig, "errno", None) == 28:  # SQLITE_FULL, ENOSPC
        why += " (free space on its file system, then run `spinenas db upgrade` again)"
    elif isinstance(orig, sqlite3.Error):
        from results_db.integrity import open_hint
        from results_db.url import sqlite_path

        why += open_hint(sqlite_path(url) or "the database", orig)  # no -shm beside it: a full or read-only disk
    if not opened:
        return f"cannot open database for upgrading: {why}"
    kept = " nothing was changed (the upgrade is one transaction):" if dialect in ("sqlite", "postgresql") else ""
    hint = ""
    if "already exists" in why:
        # What an upgrade by a spinenas without transactional DDL left when it was interrupted.
        hint = ("; the database holds parts of a newer schema than its version says: an earlier upgrade was "
                "interrupted half way; restore the copy made before it")
    return f"upgrading database {_display(url)} from schema version {before or '(empty)'} failed;{kept} {why}{hint}"
