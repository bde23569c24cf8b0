"""Alembic environment: runs the migrations on the connection `results_db.migrate` passes in."""

from __future__ import annotations

from alembic import context

from results_db.models import BaseModel

config = context.config
target_metadata = BaseModel.metadata


def run_migrations_online() -> None:
    """Runs the migrations on ``config.attributes['connection']`` (or an engine made from the configured URL)."""
    connection = config.attributes.get("connection")
    if connection is None:
        from results_db.migrate import migration_engine

        engine = migration_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # SQLite cannot ALTER most things in place; batch mode copies the table instead. Its DDL is transactional on a
    # `migration_engine` connection (Alembic assumes it is not): all the migrations of a run in one transaction.
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        **({"transactional_ddl": True} if sqlite else {}),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `spinenas db upgrade --db URL`")
run_migrations_online()
