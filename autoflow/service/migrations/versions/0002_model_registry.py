"""model registry

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 07:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('models',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('feature_schema', sa.Text(), nullable=True),
    sa.Column('lineage', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('model_aliases',
    sa.Column('alias', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('set_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['sha256'], ['models.sha256'], ),
    sa.PrimaryKeyConstraint('alias')
    )
    op.create_table('alias_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alias', sa.String(length=32), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('previous_sha256', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=True),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alias_events', schema=None) as batch_op:
        batch_op.create_index('ix_alias_events_sha256', ['sha256'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('alias_events', schema=None) as batch_op:
        batch_op.drop_index('ix_alias_events_sha256')

    op.drop_table('alias_events')
    op.drop_table('model_aliases')
    op.drop_table('models')
