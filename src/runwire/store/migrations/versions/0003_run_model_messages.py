"""Runs keep pydantic-ai's messages (tool calls and results) for the thread's history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: older runs, and runs that did not finish, have none (history falls back to
    # their message texts).
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("model_messages", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("model_messages")
