"""PostgreSQL for tests: a fresh database on the machine's server, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

PG_HOST = os.environ.get("RUNWIRE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def pg_available() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_HOST, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create an empty database; yields its SQLAlchemy URL; drops it afterwards."""
    import asyncpg

    name = f"runwire_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_HOST, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_HOST.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_HOST, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
