"""The run queue is the ``runs`` table: claiming with leases, renewal, expiry.

Any node may claim any queued run (FIFO, at most one running run per thread — also
enforced by a partial unique index, so racing nodes cannot both win). A claim sets a
lease the owning node renews; a run whose lease expired belongs to a dead node and is
ended (or requeued) by whichever node sees it first, through conditional updates, so it
gets exactly one terminal event.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from runwire.protocol.envelope import utc_now
from runwire.store.models import Run


@functools.cache
def _claim_statement(skip_locked: bool) -> Any:
    """The claim UPDATE, built once per flavour (building SQLAlchemy expressions is costly
    on a hot path); values come in as bind parameters."""
    running = aliased(Run)
    earlier = aliased(Run)
    candidates = (
        select(Run.id)
        .where(Run.status == "queued")
        .where(~exists().where(running.thread_id == Run.thread_id, running.status == "running"))
        .where(~exists().where(
            earlier.thread_id == Run.thread_id, earlier.status == "queued",
            (earlier.created_at < Run.created_at)
            | ((earlier.created_at == Run.created_at) & (earlier.id < Run.id))))
        .order_by(Run.created_at, Run.id)
        .limit(bindparam("limit"))
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True, of=Run)
    # A CTE is evaluated once: `IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` may be
    # re-evaluated by PostgreSQL's planner and claim more than n rows.
    claimable = candidates.cte("claimable")
    return (
        update(Run)
        .where(Run.id == claimable.c.id, Run.status == "queued")
        .values(status="running", node_id=bindparam("node"), lease_until=bindparam("lease_until"),
                started_at=bindparam("now"), attempt=Run.attempt + 1)
        .returning(Run)
        .execution_options(synchronize_session=False)
    )


async def claim(
    session: AsyncSession, *, node_id: str, limit: int, lease: timedelta, skip_locked: bool,
) -> list[Run]:
    """Move up to `limit` claimable queued runs to `running` for `node_id`.

    Claimable: queued, the oldest queued run of its thread, and its thread has no
    running run. Raises IntegrityError when another node won a race for a thread (the
    caller retries on its next tick).
    """
    if limit <= 0:
        return []
    now = utc_now()
    result = await session.execute(
        _claim_statement(skip_locked),
        {"limit": limit, "node": node_id, "lease_until": now + lease, "now": now},
    )
    return sorted(result.scalars().all(), key=lambda r: (r.created_at, r.id))


async def renew(
    session: AsyncSession, *, node_id: str, run_ids: Sequence[str], lease: timedelta,
) -> dict[str, bool]:
    """Extend the leases of this node's running runs (one statement).

    Returns run id → cancel requested, for the runs this node still holds; a run of
    `run_ids` missing from the answer was taken away (lease expired and ended elsewhere).
    """
    if not run_ids:
        return {}
    result = await session.execute(
        update(Run)
        .where(Run.id.in_(list(run_ids)), Run.node_id == node_id, Run.status == "running")
        .values(lease_until=utc_now() + lease)
        .returning(Run.id, Run.cancel_requested)
        .execution_options(synchronize_session=False)
    )
    return {row.id: bool(row.cancel_requested) for row in result}


async def request_cancel(session: AsyncSession, run_id: str) -> None:
    """Flag a running run for cancellation (its owner sees it at the next renewal)."""
    await session.execute(
        update(Run).where(Run.id == run_id, Run.status == "running")
        .values(cancel_requested=True).execution_options(synchronize_session=False))


async def expired(session: AsyncSession, *, now: datetime | None = None,
                  limit: int = 100) -> list[Run]:
    """Running runs whose lease ran out (their node is gone)."""
    rows = await session.scalars(
        select(Run).where(Run.status == "running", Run.lease_until < (now or utc_now()))
        .order_by(Run.lease_until).limit(limit))
    return list(rows)


async def take_expired(session: AsyncSession, run_id: str, *, now: datetime | None = None,
                       requeue: bool) -> bool:
    """Conditionally take an expired run: requeue it, or mark it failed (`node_lost`).

    Returns False when it is no longer expired-and-running (another node took it).
    """
    values: dict[str, object]
    if requeue:
        values = {"status": "queued", "node_id": None, "lease_until": None}
    else:
        values = {"status": "failed", "ended_at": utc_now(), "lease_until": None,
                  "error_code": "node_lost",
                  "error_message": "the node running this run stopped"}
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.lease_until < (now or utc_now()))
        .values(**values).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


async def queued_ids(session: AsyncSession, *, limit: int = 10_000) -> list[str]:
    """Queued runs in claim order (for queue positions)."""
    rows = await session.scalars(
        select(Run.id).where(Run.status == "queued").order_by(Run.created_at, Run.id)
        .limit(limit))
    return list(rows)


@functools.cache
def _owner_statement() -> Any:
    return select(Run.id).where(Run.id == bindparam("run"), Run.node_id == bindparam("node"),
                                Run.status == "running")


async def is_owner(session: AsyncSession, run_id: str, node_id: str) -> bool:
    """Fencing: True while `node_id` still holds `run_id` running (checked before every
    event commit of a run: the statement is built once)."""
    found = await session.scalar(_owner_statement(), {"run": run_id, "node": node_id})
    return found is not None


async def is_queued(session: AsyncSession, run_id: str) -> bool:
    found = await session.scalar(select(Run.id).where(Run.id == run_id, Run.status == "queued"))
    return found is not None


async def queued_count(session: AsyncSession) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(Run).where(Run.status == "queued")) or 0)
