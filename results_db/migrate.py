"""Schema migrations with Alembic: bring an older results database up to `SCHEMA_VERSION`.

Example::

  from results_db.migrate import upgrade
  before, after = upgrade('sqlite:///runs/spinenas.db')   # ('0001', '0002'), or (None, '0002') for an empty db
"""

from __future__ import annotations

import logging
import os

from results_db.url import resolve_url

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


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


def upgrade(url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrates a database to `revision` (default the newest) and returns its versions before and after.

    An empty database gets the whole schema. The database must be reachable for writing; back a SQLite file
    up first (migrations of SQLite copy tables).

    Raises:
      DatabaseOpenError: not a database, unreachable, or it has tables but no schema version.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, inspect
    from sqlalchemy import exc as sa_exc

    from results_db.errors import DatabaseOpenError
    from results_db.url import sqlite_path

    url = resolve_url(url)
    path = sqlite_path(url)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    try:
        engine = create_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as e:
        raise DatabaseOpenError(f"cannot open database for upgrading: {str(e).splitlines()[0]}") from None
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            if tables and "alembic_version" not in tables:
                raise DatabaseOpenError(
                    f"not a spinenas results database: it has tables {sorted(tables)[:6]} but no schema version"
                )
            before = MigrationContext.configure(conn).get_current_revision()
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            after = MigrationContext.configure(conn).get_current_revision()
    except sa_exc.DBAPIError as e:
        raise DatabaseOpenError(f"cannot open database for upgrading: {str(e.orig).splitlines()[0]}") from None
    finally:
        engine.dispose()
    if path and engine.dialect.name == "sqlite":
        import sqlite3

        with sqlite3.connect(path) as raw:
            raw.execute("PRAGMA journal_mode = WAL")
    logger.info("upgraded %s from schema %s to %s", url, before, after)
    return before, after
