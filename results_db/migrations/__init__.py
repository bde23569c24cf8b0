"""Alembic migrations of the results database (run through `results_db.migrate`, no alembic.ini needed)."""
