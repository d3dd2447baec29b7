"""The per-thread event log: gapless seq allocation, reads for replay, retention.

Appending is part of the caller's write transaction (SQLAlchemy Core on the synchronous
connection of :meth:`~runwire.store.db.Database.transaction`): ``UPDATE threads SET last_seq =
last_seq + n ... RETURNING last_seq`` then the INSERTs. The row lock serialises writers
of one thread (across nodes on PostgreSQL); a rollback takes the counter back with it, so
a seq is never skipped or reused. Only committed events are ever published or sent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Dialect, bindparam, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from runwire.errors import NotFound
from runwire.protocol.codes import ACTIVE_RUN_STATUSES
from runwire.protocol.envelope import Envelope, encode, utc_now
from runwire.store.db import sqlite_driver
from runwire.store.models import Event, Run, Thread


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type, payload and (for run events) run id."""

    type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class LogBounds:
    """What the log of a thread holds: retained seqs are `first..last` (contiguous)."""

    first: int | None  # lowest retained seq, None when nothing is retained
    last: int  # the thread's last allocated seq (0: no event yet)


@functools.cache
def _allocate_statement() -> Any:
    """Seq allocation, built once (it runs for every event commit)."""
    return (update(Thread)
            .where(Thread.id == bindparam("thread"))
            .values(last_seq=Thread.last_seq + bindparam("n"), updated_at=bindparam("now"))
            .returning(Thread.last_seq))


@functools.cache
def _insert_statement() -> Any:
    return insert(Event)


@functools.cache
def _allocate_many_statement() -> Any:
    """Seq allocation for several threads in one statement (PostgreSQL: the writer's batch
    is one round trip, not one per thread). The rows are locked in id order first, so two
    nodes allocating for overlapping threads wait for each other instead of deadlocking."""
    return text(
        "WITH locked AS MATERIALIZED ("
        " SELECT id FROM threads WHERE id = ANY(CAST(:threads AS VARCHAR[]))"
        " ORDER BY id FOR UPDATE)"
        " UPDATE threads AS t SET last_seq = t.last_seq + v.n, updated_at = :now"
        " FROM locked JOIN unnest(CAST(:threads AS VARCHAR[]), CAST(:ns AS INTEGER[]))"
        " AS v(id, n) ON v.id = locked.id"
        " WHERE t.id = locked.id"
        " RETURNING t.id, t.last_seq"
    ).bindparams(bindparam("now", type_=Thread.__table__.c.updated_at.type))


# On SQLite the writer's two statements go straight to the driver's cursor: SQLAlchemy's
# execution context per statement was the largest part of a batch's cost (profile of the
# streaming row). Values are bound exactly as SQLAlchemy binds them (its own processor for
# the datetime column), so both paths write the same rows.
_SQLITE_ALLOCATE = ("UPDATE threads SET last_seq = last_seq + ?, updated_at = ? WHERE id = ? "
                    "RETURNING last_seq")
_SQLITE_INSERT = ("INSERT INTO events (thread_id, seq, run_id, type, data, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?)")


@functools.cache
def _sqlite_time(dialect: Dialect) -> Callable[[datetime], Any]:
    processor = Event.__table__.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    return processor


def allocate(conn: Connection, thread_id: str, n: int, now: datetime) -> int | None:
    """Reserve `n` seqs of a thread; returns the last one, None when the thread is gone."""
    driver = sqlite_driver(conn)
    if driver is not None:
        row = driver.execute(_SQLITE_ALLOCATE,
                             (n, _sqlite_time(conn.dialect)(now), thread_id)).fetchone()
        return None if row is None else int(row[0])
    last = conn.execute(_allocate_statement(),
                        {"thread": thread_id, "n": n, "now": now}).scalar_one_or_none()
    return None if last is None else int(last)


def allocate_many(conn: Connection, counts: Mapping[str, int], now: datetime
                  ) -> dict[str, int]:
    """Reserve seqs for several threads (thread id → how many); returns the last seq of
    each, leaving out the threads that are gone."""
    if not counts:
        return {}
    if sqlite_driver(conn) is not None or len(counts) == 1:
        found = {thread: allocate(conn, thread, n, now) for thread, n in counts.items()}
        return {thread: last for thread, last in found.items() if last is not None}
    rows = conn.execute(_allocate_many_statement(),
                        {"threads": list(counts), "ns": list(counts.values()), "now": now})
    return {thread: int(last) for thread, last in rows}


def encode_events(user_id: str, thread_id: str, first_seq: int, events: Sequence[NewEvent],
                  now: datetime, rows: list[dict[str, Any]]) -> list[Envelope]:
    """Encode `events` (seqs from `first_seq`) once: their envelopes, and their log rows
    appended to `rows`."""
    envelopes: list[Envelope] = []
    for offset, ev in enumerate(events):
        seq = first_seq + offset
        text = encode(
            ev.type, ev.payload, thread_id=thread_id, run_id=ev.run_id, seq=seq, timestamp=now
        )
        rows.append(
            {"thread_id": thread_id, "seq": seq, "run_id": ev.run_id, "type": ev.type,
             "data": text, "created_at": now}
        )
        envelopes.append(
            Envelope(user_id=user_id, type=ev.type, text=text, thread_id=thread_id, seq=seq,
                     run_id=ev.run_id)
        )
    return envelopes


def insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert encoded log rows (one multi-row statement)."""
    if not rows:
        return
    driver = sqlite_driver(conn)
    if driver is None:
        conn.execute(_insert_statement(), rows)
        return
    when = _sqlite_time(conn.dialect)
    driver.executemany(_SQLITE_INSERT, [
        (r["thread_id"], r["seq"], r["run_id"], r["type"], r["data"], when(r["created_at"]))
        for r in rows])


def append(
    conn: Connection, user_id: str, thread_id: str, events: Sequence[NewEvent],
    now: datetime | None = None,
) -> list[Envelope]:
    """Allocate seqs for `events` and insert them, inside the caller's transaction;
    returns their envelopes.

    Raises:
        NotFound: the thread does not exist (deleted meanwhile).
    """
    if not events:
        return []
    now = now or utc_now()
    last = allocate(conn, thread_id, len(events), now)
    if last is None:
        raise NotFound(f"thread {thread_id} not found")
    rows: list[dict[str, Any]] = []
    envelopes = encode_events(user_id, thread_id, last - len(events) + 1, events, now, rows)
    insert_rows(conn, rows)
    return envelopes


@functools.cache
def _read_statements() -> dict[str, Any]:
    cols = (Event.seq, Event.type, Event.run_id, Event.data)
    after = (Event.thread_id == bindparam("thread")) & (Event.seq > bindparam("after"))
    return {
        "open": select(*cols).where(after).order_by(Event.seq).limit(bindparam("limit")),
        "between": select(*cols).where(after, Event.seq < bindparam("before"))
        .order_by(Event.seq).limit(bindparam("limit")),
        "owner": select(Thread.user_id, Thread.last_seq).where(Thread.id == bindparam("thread")),
        "first": select(func.min(Event.seq)).where(Event.thread_id == bindparam("thread")),
    }


def read(
    conn: Connection,
    user_id: str,
    thread_id: str,
    *,
    after_seq: int,
    before_seq: int | None = None,
    limit: int = 1000,
) -> list[Envelope]:
    """Stored events with ``after_seq < seq < before_seq``, in seq order: one query of
    envelopes encoded when they were appended."""
    st = _read_statements()
    params: dict[str, Any] = {"thread": thread_id, "after": after_seq, "limit": limit}
    if before_seq is not None:
        params["before"] = before_seq
    rows = conn.execute(st["open" if before_seq is None else "between"], params)
    return [
        Envelope(user_id=user_id, type=type_, text=data, thread_id=thread_id, seq=seq,
                 run_id=run_id)
        for seq, type_, run_id, data in rows
    ]


def owner_and_last(conn: Connection, thread_id: str) -> tuple[str, int] | None:
    """The thread's owner and last allocated seq; None when there is no such thread."""
    row = conn.execute(_read_statements()["owner"], {"thread": thread_id}).first()
    return None if row is None else (row.user_id, int(row.last_seq))


def bounds(conn: Connection, thread_id: str, *, last: int | None = None) -> LogBounds:
    """The retained range of a thread's log."""
    if last is None:
        found = owner_and_last(conn, thread_id)
        if found is None:
            raise NotFound(f"thread {thread_id} not found")
        last = found[1]
    first = conn.execute(_read_statements()["first"], {"thread": thread_id}).scalar()
    return LogBounds(first=first, last=last)


async def prune(
    session: AsyncSession, *, keep_events: int, max_age: timedelta, now: datetime | None = None
) -> int:
    """Delete old events, keeping each thread's log a contiguous suffix.

    An event goes once it is older than `max_age` or beyond its thread's last
    `keep_events`, but never an event of a queued or running run (nor anything after
    one, so the retained log stays contiguous). Returns how many were deleted.
    """
    cutoff_time = (now or utc_now()) - max_age
    active_first = (
        select(Event.thread_id, func.min(Event.seq).label("seq"))
        .join(Run, Run.id == Event.run_id)
        .where(Run.status.in_(ACTIVE_RUN_STATUSES))
        .group_by(Event.thread_id)
    ).subquery()
    old_max = (
        select(Event.thread_id, func.max(Event.seq).label("seq"))
        .where(Event.created_at < cutoff_time)
        .group_by(Event.thread_id)
    ).subquery()
    threads = await session.execute(
        select(Thread.id, Thread.last_seq, old_max.c.seq, active_first.c.seq)
        .outerjoin(old_max, old_max.c.thread_id == Thread.id)
        .outerjoin(active_first, active_first.c.thread_id == Thread.id)
        .where((Thread.last_seq > keep_events) | old_max.c.seq.is_not(None))
    )
    deleted = 0
    for thread_id, last_seq, old_seq, active_seq in threads:
        upto = max(int(last_seq) - keep_events, int(old_seq or 0))
        if active_seq is not None:
            upto = min(upto, int(active_seq) - 1)
        if upto > 0:
            result = await session.execute(
                delete(Event).where(Event.thread_id == thread_id, Event.seq <= upto)
            )
            deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted
