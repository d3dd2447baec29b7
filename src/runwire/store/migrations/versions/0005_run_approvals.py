"""Human approval of tool calls (SPEC 7): a paused run's state, and its pending calls.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("paused_state", sa.Text(), nullable=True))
    op.create_table(
        "run_approvals",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tool_call_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("tool_name", sa.String(128), nullable=False),
        sa.Column("tool_args", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("final_args", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_run_approvals_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "tool_call_id", name="pk_run_approvals"),
    )
    op.create_index("ix_run_approvals_pending", "run_approvals", ["decided_at", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_run_approvals_pending", table_name="run_approvals")
    op.drop_table("run_approvals")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("paused_state")
