"""Alembic environment: runs on the connection runwire hands in (see Database.migrate)."""

from __future__ import annotations

from alembic import context

from runwire.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - runwire always passes its connection
    raise RuntimeError("run migrations with `runwire migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
