"""trials.precision: what a trial trained in ('float32', 'float16', 'bfloat16'), beside its host and times.

``proxy.mixed_precision=auto`` lets each trial decide from the devices it sees, so the precision is a fact of the
trial, not of its search's config. A nullable column: every existing trial keeps NULL (it trained in float32, the
only precision before this revision; `show --json` prints null). Adding a nullable column needs no table copy on
SQLite.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('trials', sa.Column('precision', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_column('precision')
