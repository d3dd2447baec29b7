"""Run queue across nodes: cancel flag, one running run per thread, claim index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    # The database enforces "one active run per thread" even when nodes race to claim.
    op.create_index("uq_runs_running_thread", "runs", ["thread_id"], unique=True,
                    postgresql_where=sa.text("status = 'running'"),
                    sqlite_where=sa.text("status = 'running'"))
    op.create_index("ix_runs_node_status", "runs", ["node_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_runs_node_status", "runs")
    op.drop_index("uq_runs_running_thread", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_requested")
