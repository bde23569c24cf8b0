"""The lease a driver holds on a search while it runs it: who, where, and its last heartbeat.

Every existing search starts without a lease (no driver holds it); `spinenas searches` shows one still marked
running as interrupted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('lease_pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('lease_heartbeat', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('searches', schema=None) as batch_op:
        for column in ('lease_heartbeat', 'lease_pid', 'lease_host', 'lease_owner'):
            batch_op.drop_column(column)
