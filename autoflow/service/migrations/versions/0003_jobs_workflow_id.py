"""jobs.workflow_id: a workflow's jobs found by an index

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:00:00.000000

A job's ``workflow_id`` was only inside its JSON ``spec``, so finding a workflow's jobs
(``GET`` / ``DELETE /v1/workflows/{id}``, and the run-id check of ``POST /v1/workflows``)
read the whole jobs table. It is now a column of its own with an index; the jobs stored
before get it from their spec.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('workflow_id', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_jobs_workflow_id', ['workflow_id'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        field = "json_extract(spec, '$.workflow_id')"
    else:  # PostgreSQL (spec is json)
        field = "(spec ->> 'workflow_id')"
    op.execute(f"UPDATE jobs SET workflow_id = {field} WHERE {field} IS NOT NULL")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_workflow_id')
        batch_op.drop_column('workflow_id')
