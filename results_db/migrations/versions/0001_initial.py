"""Initial schema: searches, archs, trials, controller checkpoints.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26 13:00:38.506662
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('archs',
    sa.Column('key', sa.String(length=16), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('summary', sa.String(length=255), nullable=False),
    sa.Column('family', sa.String(length=32), nullable=True),
    sa.Column('flops', sa.BigInteger(), nullable=True),
    sa.Column('params', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('searches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('config', sa.Text(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=True),
    sa.Column('controller', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('running', 'completed', 'failed', 'stopped', name='search_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('controller_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('search_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['search_id'], ['searches.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('search_id', 'step')
    )
    op.create_table('trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('search_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('arch_key', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'completed', 'failed', 'cached', name='trial_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('decisions', sa.Text(), nullable=False),
    sa.Column('reward', sa.Float(), nullable=True),
    sa.Column('metrics', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('cached_from', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('wall_s', sa.Float(), nullable=True),
    sa.Column('finish_order', sa.Integer(), nullable=True),
    sa.CheckConstraint('attempt >= 0', name='ck_trials_attempt'),
    sa.ForeignKeyConstraint(['arch_key'], ['archs.key'], ),
    sa.ForeignKeyConstraint(['cached_from'], ['trials.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['search_id'], ['searches.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('search_id', 'index')
    )
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.create_index('ix_trials_arch_status', ['arch_key', 'status'], unique=False)
        batch_op.create_index('ix_trials_search_finish_order', ['search_id', 'finish_order'], unique=False)
        batch_op.create_index('ix_trials_search_status', ['search_id', 'status'], unique=False)
        batch_op.create_index('ix_trials_status_reward', ['status', 'reward'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_index('ix_trials_status_reward')
        batch_op.drop_index('ix_trials_search_status')
        batch_op.drop_index('ix_trials_search_finish_order')
        batch_op.drop_index('ix_trials_arch_status')

    op.drop_table('trials')
    op.drop_table('controller_checkpoints')
    op.drop_table('searches')
    op.drop_table('archs')
