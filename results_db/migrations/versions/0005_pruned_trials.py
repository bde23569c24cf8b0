"""Trial status 'pruned': a trial stopped at a rung by the search's scheduler (asynchronous successive halving).

trials.status is a VARCHAR with the CHECK constraint `trial_status` listing the statuses (`results_db.models._enum`),
so a new status means rewriting that constraint, exactly as revision 0004 did for 'rejected': on PostgreSQL in place
(drop it, add the new one); on SQLite, which cannot alter a constraint, by batch mode's table copy (every row, index
and foreign key kept; back the file up first, as `spinenas db upgrade` says). Every existing row is kept as it is.

A downgrade stores the pruned trials as failed (their error says why), since the older schema has no other finished
status for a trial that did not reach its last step.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_BEFORE = ('queued', 'running', 'completed', 'failed', 'cached', 'rejected')
_AFTER = _BEFORE + ('pruned',)


def _status(values: tuple[str, ...]) -> sa.Enum:
    # As revision 0001 wrote it: the constraint's name is the enum's.
    return sa.Enum(*values, name='trial_status', native_enum=False, create_constraint=True, length=16)


def _check_foreign_keys_off() -> None:
    # The SQLite copy drops the old trials table: with foreign keys enforced, that DROP would delete every trial's
    # reports (trial_reports.trial_id is ON DELETE CASCADE). `results_db.migrate.upgrade` connects without them.
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite' and bind.exec_driver_sql('PRAGMA foreign_keys').scalar():
        raise RuntimeError('revision 0005 copies the trials table; on a connection that enforces foreign keys that '
                           'would delete every trial report: run it with `spinenas db upgrade`')


def upgrade() -> None:
    _check_foreign_keys_off()
    # alter_column with both types drops the old type's CHECK constraint and adds the new one's (batch mode on
    # SQLite: the copied table gets only the new one).
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=_status(_BEFORE), type_=_status(_AFTER), existing_nullable=False)


def downgrade() -> None:
    op.execute("UPDATE trials SET status = 'failed', error = COALESCE(error, 'pruned: stopped at a rung') "
               "WHERE status = 'pruned'")
    _check_foreign_keys_off()
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=_status(_AFTER), type_=_status(_BEFORE), existing_nullable=False)
