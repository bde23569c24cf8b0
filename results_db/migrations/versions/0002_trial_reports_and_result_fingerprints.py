"""Trial reports (a trial's learning curve), result fingerprints on searches and trials, and search kinds.

Every existing row is kept; the new fingerprint columns start NULL (a NULL fingerprint matches no lookup, so old
results are not reused until `spinenas db upgrade` backfills them from each search's stored config) and
trial_reports starts empty. Every existing search is of kind 'search' (`spinenas calibrate` stores its studies as
'calibration'). On SQLite the columns are added in place (ALTER TABLE ADD COLUMN), no table copy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:02:46.638933
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trial_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['trial_id'], ['trials.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('trial_id', 'step')
    )
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='search'))

    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_trials_fingerprint_status_reward', ['fingerprint', 'status', 'reward'], unique=False)
        # find_result filters by fingerprint now: the arch's index must cover it, or SQLite takes the one above.
        batch_op.drop_index('ix_trials_arch_status')
        batch_op.create_index('ix_trials_arch_status_fingerprint', ['arch_key', 'status', 'fingerprint'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_index('ix_trials_arch_status_fingerprint')
        batch_op.create_index('ix_trials_arch_status', ['arch_key', 'status'], unique=False)
        batch_op.drop_index('ix_trials_fingerprint_status_reward')
        batch_op.drop_column('fingerprint')

    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.drop_column('kind')
        batch_op.drop_column('fingerprint')

    op.drop_table('trial_reports')
