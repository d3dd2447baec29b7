"""The run queue is the ``runs`` table: enqueueing, claiming with leases, renewal, expiry,
ending.

Any node may claim any queued run (FIFO, at most one running run per thread — also
enforced by a partial unique index, so racing nodes cannot both win). A claim sets a
lease the owning node renews; a run whose lease expired belongs to a dead node and is
ended (or requeued) by whichever node sees it first, through conditional updates, so it
gets exactly one terminal event.

Every function here is SQLAlchemy Core on the synchronous connection of
:meth:`~runwire.store.db.Database.transaction` / ``query`` (one thread hop per unit of
work on SQLite), with its statement built once: these run for every message, claim and
event batch.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from runwire.errors import NotFound, ThreadBusy
from runwire.ids import new_id
from runwire.protocol.codes import ACTIVE_RUN_STATUSES, RunStatus
from runwire.protocol.envelope import utc_now
from runwire.store.db import sqlite_driver
from runwire.store.models import Message, Run, Thread

MAX_TITLE = 200


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What executing a run needs of its row."""

    id: str
    thread_id: str
    user_id: str
    message_id: str
    agent: str
    status: str
    request: Mapping[str, Any] | None
    created_at: datetime
    # Set when it paused for approvals before (SPEC 7): claiming it resumes it.
    paused_state: str | None = field(default=None, repr=False)

    @property
    def paused(self) -> bool:
        return self.paused_state is not None


_RECORD_COLUMNS = (Run.id, Run.thread_id, Run.user_id, Run.message_id, Run.agent, Run.status,
                   Run.request, Run.created_at, Run.paused_state)
# (Not `paused_state IS NOT NULL`: SQLite 3.40 answers 1 for it on a NULL in the RETURNING
# of this UPDATE … FROM.)


def _record(row: Any) -> RunRecord:
    return RunRecord(row.id, row.thread_id, row.user_id, row.message_id, row.agent, row.status,
                     row.request, row.created_at, row.paused_state)


# ---- enqueueing --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Enqueued:
    """The stored user message and its run (or, for a resend, the original ones)."""

    message_id: str
    thread_id: str
    run_id: str
    duplicate: bool
    created_title: str | None = None  # the new thread's title when one was created
    busy_run_ids: tuple[str, ...] = ()  # the thread's active runs before this one
    started: bool = False  # claimed by this node in the same transaction (an admission)


def _one_of(column: Any, values: Iterable[str]) -> Any:
    """``column IN (values)`` for a fixed set of values, as ORed comparisons: SQLAlchemy
    renders an IN of values anew at every execution (an "expanding" parameter: ~30 µs of
    the claim statement's ~290 µs on SQLite)."""
    return or_(*(column == value for value in values))


@functools.cache
def _statements() -> dict[str, Any]:
    """Hot statements, built once (building SQLAlchemy expressions is costly)."""
    return {
        "find_message": select(Message.thread_id, Message.run_id).where(
            Message.user_id == bindparam("user"), Message.message_id == bindparam("mid")),
        "thread_owner": select(Thread.user_id).where(Thread.id == bindparam("thread")),
        "active": select(Run.id).where(
            Run.thread_id == bindparam("thread"), _one_of(Run.status, ACTIVE_RUN_STATUSES))
        .order_by(Run.created_at, Run.id),
        "insert_thread": insert(Thread),
        "insert_run": insert(Run),
        "insert_message": insert(Message),
        "owned": select(Run.id).where(
            Run.id.in_(bindparam("runs", expanding=True)), Run.node_id == bindparam("node"),
            Run.status == "running"),
        "is_queued": select(Run.id).where(Run.id == bindparam("run"), Run.status == "queued"),
        "end_running": update(Run).where(
            Run.id == bindparam("run"), Run.status == "running",
            Run.node_id == bindparam("node")),
        # A run that waits for approvals ends like a queued one (it holds no lease).
        "end_queued": update(Run).where(Run.id == bindparam("run"),
                                        _one_of(Run.status, ("queued", "waiting"))),
    }


def title_from(content: str) -> str:
    """A thread title from its first message: the first line, shortened."""
    line = " ".join(content.strip().split())
    return line if len(line) <= 60 else line[:57].rstrip() + "..."


def enqueue(
    conn: Connection, *, user_id: str, thread_id: str | None, message_id: str, resend: bool,
    content: str, agent: str, request: Mapping[str, Any], reject_if_busy: bool,
) -> Enqueued:
    """Store a user message and its queued run (and its thread when `thread_id` is None).

    A resend (`resend`: the client gave `message_id`) of a stored message writes nothing
    and answers the original ids with `duplicate`.

    Raises:
        NotFound: `thread_id` is not one of the user's threads.
        ThreadBusy: the thread has an active run and `reject_if_busy`.
        IntegrityError: the same `message_id` was stored concurrently.
    """
    st = _statements()
    if resend:
        found = conn.execute(st["find_message"], {"user": user_id, "mid": message_id}).first()
        if found is not None and found.run_id is not None:
            return Enqueued(message_id, found.thread_id, found.run_id, duplicate=True)
    now = utc_now()
    title: str | None = None
    busy: tuple[str, ...] = ()
    if thread_id is not None:
        owner = conn.execute(st["thread_owner"], {"thread": thread_id}).scalar_one_or_none()
        if owner != user_id:
            raise NotFound(f"thread {thread_id} not found")
        busy = tuple(conn.execute(st["active"], {"thread": thread_id}).scalars())
        if busy and reject_if_busy:
            raise ThreadBusy(f"thread {thread_id} has an active run")
    else:
        thread_id, title = new_id(), title_from(content)[:MAX_TITLE] or "New chat"
        conn.execute(st["insert_thread"], {"id": thread_id, "user_id": user_id, "title": title,
                                           "last_seq": 0, "created_at": now, "updated_at": now})
    run_id = new_id()
    conn.execute(st["insert_run"], {
        "id": run_id, "thread_id": thread_id, "user_id": user_id, "message_id": message_id,
        "agent": agent, "status": "queued", "attempt": 0, "cancel_requested": False,
        "request": dict(request), "created_at": now})
    add_message(conn, user_id=user_id, thread_id=thread_id, message_id=message_id, role="user",
                content=content, run_id=run_id, now=now)
    return Enqueued(message_id, thread_id, run_id, duplicate=False, created_title=title,
                    busy_run_ids=busy)


def add_message(conn: Connection, *, user_id: str, thread_id: str, message_id: str, role: str,
                content: str, run_id: str | None, now: datetime | None = None) -> None:
    conn.execute(_statements()["insert_message"], {
        "message_id": message_id, "user_id": user_id, "thread_id": thread_id, "run_id": run_id,
        "role": role, "content": content, "created_at": now or utc_now()})


def active_run_ids(conn: Connection, thread_id: str) -> list[str]:
    """The queued and running runs of a thread, oldest first."""
    return list(conn.execute(_statements()["active"], {"thread": thread_id}).scalars())


# ---- claiming ----------------------------------------------------------------------------

@functools.cache
def _claim_statement(skip_locked: bool) -> Any:
    """The claim UPDATE, built once per flavour; values come in as bind parameters."""
    running = aliased(Run)
    earlier = aliased(Run)
    candidates = (
        select(Run.id)
        .where(Run.status == "queued")
        # A waiting run (paused for approvals) is its thread's active run too.
        .where(~exists().where(running.thread_id == Run.thread_id,
                               _one_of(running.status, ("running", "waiting"))))
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
        .returning(*_RECORD_COLUMNS)
    )


def claim(conn: Connection, *, node_id: str, limit: int, lease: timedelta,
          skip_locked: bool) -> list[RunRecord]:
    """Move up to `limit` claimable queued runs to `running` for `node_id`, oldest first.

    Claimable: queued, the oldest queued run of its thread, and its thread has no
    running run. Raises IntegrityError when another node won a race for a thread (the
    caller retries on its next tick).
    """
    if limit <= 0:
        return []
    now = utc_now()
    rows = conn.execute(_claim_statement(skip_locked),
                        {"limit": limit, "node": node_id, "lease_until": now + lease, "now": now})
    return sorted((_record(r) for r in rows), key=lambda r: (r.created_at, r.id))


def get_record(conn: Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(select(*_RECORD_COLUMNS).where(Run.id == run_id)).first()
    return None if row is None else _record(row)


# ---- running -----------------------------------------------------------------------------

def owned(conn: Connection, run_ids: Collection[str], node_id: str) -> set[str]:
    """Fencing, for a batch: those of `run_ids` that `node_id` still holds running."""
    if not run_ids:
        return set()
    driver = sqlite_driver(conn)
    if driver is not None:
        ids = list(run_ids)
        return {row[0] for row in driver.execute(_sqlite_owned(len(ids)), [node_id, *ids])}
    return set(conn.execute(_statements()["owned"],
                            {"runs": list(run_ids), "node": node_id}).scalars())


@functools.lru_cache(maxsize=64)
def _sqlite_owned(n: int) -> str:
    """The fencing query for `n` runs on the sqlite3 connection (see ``sqlite_driver``)."""
    return ("SELECT id FROM runs WHERE node_id = ? AND status = 'running' AND id IN ("
            + ", ".join("?" * n) + ")")


def renew(conn: Connection, *, node_id: str, run_ids: Sequence[str],
          lease: timedelta) -> dict[str, bool]:
    """Extend the leases of this node's running runs (one statement).

    Returns run id → cancel requested, for the runs this node still holds; a run of
    `run_ids` missing from the answer was taken away (lease expired and ended elsewhere).
    """
    if not run_ids:
        return {}
    result = conn.execute(
        update(Run)
        .where(Run.id.in_(list(run_ids)), Run.node_id == node_id, Run.status == "running")
        .values(lease_until=utc_now() + lease)
        .returning(Run.id, Run.cancel_requested))
    return {row.id: bool(row.cancel_requested) for row in result}


def request_cancel(conn: Connection, run_id: str) -> bool:
    """Flag a running run for cancellation (its owner sees it at the next renewal); False
    when it is no longer running (e.g. it just paused for approvals)."""
    return bool(conn.execute(update(Run).where(Run.id == run_id, Run.status == "running")
                             .values(cancel_requested=True)).rowcount)


def is_queued(conn: Connection, run_id: str) -> bool:
    return conn.execute(_statements()["is_queued"], {"run": run_id}).first() is not None


def end(
    conn: Connection, run_id: str, status: RunStatus, *, node_id: str | None,
    error_code: str | None = None, error_message: str | None = None,
    usage: Mapping[str, Any] | None = None, model_messages: str | None = None,
) -> bool:
    """End a run conditionally (the fence): a running run only by the node holding it
    (`node_id`), a queued or waiting run only while still queued or waiting (`node_id`
    None). Returns False (nothing written) when the run already moved on.

    `model_messages`: the run's pydantic-ai messages as JSON (completed runs), kept for the
    history of the thread's later runs."""
    st = _statements()
    params: dict[str, Any] = {"run": run_id}
    if node_id is not None:
        params["node"] = node_id
    result = conn.execute(
        (st["end_queued"] if node_id is None else st["end_running"]).values(
            status=status, ended_at=utc_now(), error_code=error_code,
            error_message=error_message, usage=dict(usage) if usage is not None else None,
            model_messages=model_messages, lease_until=None, paused_state=None),
        params)
    return bool(result.rowcount)


# ---- dead nodes --------------------------------------------------------------------------

def expired(conn: Connection, *, now: datetime | None = None, limit: int = 100) -> list[RunRecord]:
    """Running runs whose lease ran out (their node is gone)."""
    rows = conn.execute(
        select(*_RECORD_COLUMNS).where(Run.status == "running",
                                       Run.lease_until < (now or utc_now()))
        .order_by(Run.lease_until).limit(limit))
    return [_record(r) for r in rows]


def running(conn: Connection) -> list[RunRecord]:
    """Every running run (a single node's dead predecessor's, at start-up)."""
    rows = conn.execute(select(*_RECORD_COLUMNS).where(Run.status == "running")
                        .order_by(Run.created_at))
    return [_record(r) for r in rows]


def take_expired(conn: Connection, run_id: str, *, now: datetime | None = None,
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
    result = conn.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.lease_until < (now or utc_now()))
        .values(**values))
    return bool(result.rowcount)


# ---- the queue's shape -------------------------------------------------------------------

def queued_ids(conn: Connection, *, limit: int = 10_000) -> list[str]:
    """Queued runs in claim order (for queue positions)."""
    return list(conn.execute(
        select(Run.id).where(Run.status == "queued").order_by(Run.created_at, Run.id)
        .limit(limit)).scalars())


def queued_count(conn: Connection) -> int:
    return int(conn.execute(
        select(func.count()).select_from(Run).where(Run.status == "queued")).scalar() or 0)


# ---- what a run is given -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HistoryRow:
    """An earlier message of the thread, oldest first."""

    role: str
    content: str
    run_id: str | None


@dataclass(frozen=True, slots=True)
class RunInputs:
    """A run's prompt, the thread's earlier messages and their runs' stored model
    messages (see :mod:`runwire.agents.history`)."""

    prompt: str
    earlier: list[HistoryRow]
    stored: dict[str, str]


def inputs(conn: Connection, run: RunRecord, *, history_limit: int) -> RunInputs | None:
    """What executing `run` needs, in one unit of work; None when its user message is gone.

    The window: the newest `history_limit` message rows of the run's owner before the run's
    own user message (the prompt, not history), with their runs' stored pydantic-ai
    messages."""
    found = conn.execute(_input_statements()["prompt"],
                         {"user": run.user_id, "mid": run.message_id}).first()
    if found is None:
        return None
    earlier = history(conn, run.user_id, run.thread_id, before_id=found.id, limit=history_limit)
    stored = model_messages(conn, run.user_id, (m.run_id for m in earlier if m.run_id))
    return RunInputs(found.content, earlier, stored)


def history(conn: Connection, user_id: str, thread_id: str, *, before_id: int,
            limit: int) -> list[HistoryRow]:
    """Up to `limit` of `user_id`'s messages of a thread before internal id `before_id`,
    oldest first."""
    if limit <= 0:
        return []
    rows = conn.execute(_input_statements()["history"], {
        "thread": thread_id, "user": user_id, "before": before_id, "limit": limit})
    return [HistoryRow(r.role, r.content, r.run_id) for r in rows][::-1]


def model_messages(conn: Connection, user_id: str, run_ids: Iterable[str]) -> dict[str, str]:
    """The stored pydantic-ai messages (JSON) of those of `run_ids` that are `user_id`'s
    and have them."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    rows = conn.execute(_input_statements()["model_messages"], {"runs": ids, "user": user_id})
    return {run_id: data for run_id, data in rows if data is not None}


@functools.cache
def _input_statements() -> dict[str, Any]:
    """The statements of :func:`inputs`, built once."""
    return {
        "prompt": select(Message.id, Message.content).where(
            Message.user_id == bindparam("user"), Message.message_id == bindparam("mid")),
        "history": select(Message.role, Message.content, Message.run_id).where(
            Message.thread_id == bindparam("thread"), Message.user_id == bindparam("user"),
            Message.id < bindparam("before")).order_by(Message.id.desc())
        .limit(bindparam("limit")),
        "model_messages": select(Run.id, Run.model_messages).where(
            Run.id.in_(bindparam("runs", expanding=True)), Run.user_id == bindparam("user"),
            Run.model_messages.is_not(None)),
    }
