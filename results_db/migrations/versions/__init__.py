"""Alembic revisions, one file each; the newest is `results_db.models.SCHEMA_VERSION`."""
