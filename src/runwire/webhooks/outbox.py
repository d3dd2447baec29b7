"""The webhook outbox (SPEC 9), without I/O: which events become webhooks, their payloads,
and the outbox rows' transitions (SQLAlchemy Core on a synchronous connection, like the
run queue).

- :func:`record` runs inside the event writer's transaction: a run's terminal event or an
  ``approval_required`` and its outbox rows commit together, or neither does.
- Rows are claimed like runs — ``pending``, due, and not leased by a live node — with a
  lease, so one node at a time sends a delivery and a dead node's claims come back.
- Every attempt of a row carries the same ``webhook-id`` (receivers dedupe by it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, and_, delete, func, insert, or_, select, update

from runwire.ids import new_id
from runwire.protocol.envelope import Envelope, utc_now
from runwire.store.models import WebhookDelivery

T = cast(Table, WebhookDelivery.__table__)
WebhookType = Literal["run.completed", "run.failed", "run.cancelled", "run.timed_out",
                      "run.waiting"]
REPORTED = frozenset({"agent_completed", "agent_error", "approval_required"})
FIRST_RETRY = 1.0  # seconds; doubles per attempt, with jitter
MAX_RETRY = 600.0  # capped at 10 minutes


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed delivery."""

    id: int
    webhook_id: str
    url: str
    type: str
    payload: str
    attempts: int
    created_at: datetime


def webhook_for(env: Envelope) -> tuple[WebhookType, dict[str, Any]] | None:
    """The webhook type and payload for a committed event, or None if it reports nothing.

    Payload: ``{type, timestamp, data: {run_id, thread_id, user_id, status, result, usage,
    error?, approval?}}``.
    """
    if env.type not in REPORTED or env.run_id is None:
        return None
    frame = json.loads(env.text)
    p: dict[str, Any] = frame.get("payload") or {}
    data: dict[str, Any] = {"run_id": env.run_id, "thread_id": env.thread_id,
                            "user_id": env.user_id, "result": None, "usage": None}
    kind: WebhookType
    if env.type == "agent_completed":
        status = "cancelled" if p.get("status") == "cancelled" else "completed"
        kind = "run.cancelled" if status == "cancelled" else "run.completed"
        data.update(status=status, result=p.get("result"), usage=p.get("usage"))
    elif env.type == "agent_error":
        timed_out = p.get("code") == "timeout"
        kind = "run.timed_out" if timed_out else "run.failed"
        data.update(status="timed_out" if timed_out else "failed", error={
            "code": p.get("code"), "message": p.get("message"),
            "retryable": p.get("retryable")})
    else:
        kind = "run.waiting"
        data.update(status="waiting", approval={
            k: p.get(k) for k in ("tool_call_id", "tool_name", "tool_args", "expires_at")})
    return kind, {"type": kind, "timestamp": frame.get("timestamp"), "data": data}


def record(conn: Connection, envelopes: Sequence[Envelope], urls: Sequence[str],
           now: datetime | None = None) -> int:
    """Add the outbox rows for the reported events among `envelopes` (in the caller's
    transaction); returns how many rows."""
    if not urls:
        return 0
    now = now or utc_now()
    rows = []
    for env in envelopes:
        found = webhook_for(env)
        if found is None:
            continue
        kind, payload = found
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        webhook_id = f"msg_{new_id()}"
        rows += [{"webhook_id": webhook_id, "url": url, "type": kind, "payload": body,
                  "status": "pending", "attempts": 0, "created_at": now,
                  "next_attempt_at": now} for url in urls]
    if rows:
        conn.execute(insert(T), rows)
    return len(rows)


def claim(conn: Connection, *, node_id: str, limit: int, lease: timedelta,
          skip_locked: bool, now: datetime | None = None) -> list[Due]:
    """Lease up to `limit` due deliveries to this node (oldest first)."""
    now = now or utc_now()
    query = (select(T.c.id).where(
        T.c.status == "pending", T.c.next_attempt_at <= now,
        or_(T.c.lease_until.is_(None), T.c.lease_until < now))
        .order_by(T.c.next_attempt_at, T.c.id).limit(limit))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.scalars(query))
    if not ids:
        return []
    conn.execute(update(T).where(T.c.id.in_(ids)).values(
        lease_until=now + lease, node_id=node_id))
    rows = conn.execute(select(T.c.id, T.c.webhook_id, T.c.url, T.c.type, T.c.payload,
                               T.c.attempts, T.c.created_at)
                        .where(T.c.id.in_(ids)).order_by(T.c.next_attempt_at, T.c.id))
    return [Due(*row) for row in rows]


def _mine(row_id: int, node_id: str) -> Any:
    return and_(T.c.id == row_id, T.c.node_id == node_id, T.c.status == "pending")


def delivered(conn: Connection, row: Due, *, node_id: str, status: int) -> bool:
    """The receiver answered 2xx. False: this node no longer held the row."""
    result = conn.execute(update(T).where(_mine(row.id, node_id)).values(
        status="delivered", attempts=row.attempts + 1, last_status=status, last_error=None,
        lease_until=None, ended_at=utc_now()))
    return bool(result.rowcount)


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after `attempts` failed ones: ~1 s doubling, with
    ±50 % jitter (receivers recovering are not hit by every sender at once), capped at
    10 minutes."""
    base = min(MAX_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1))
    jitter = (rng or random).random()
    return float(min(MAX_RETRY, base * (0.5 + jitter)))


def failed_attempt(conn: Connection, row: Due, *, node_id: str, status: int | None,
                   error: str, retry: bool, give_up_after: timedelta,
                   now: datetime | None = None) -> Literal["retry", "failed", "lost"]:
    """Record a failed attempt: scheduled again with backoff, or failed for good (a
    non-retryable answer, or retried for longer than `give_up_after`)."""
    now = now or utc_now()
    attempts = row.attempts + 1
    next_at = now + timedelta(seconds=retry_delay(attempts))
    final = not retry or next_at - row.created_at > give_up_after
    values: dict[str, Any] = {"attempts": attempts, "last_status": status,
                              "last_error": error[:500], "lease_until": None}
    values.update({"status": "failed", "ended_at": now} if final
                  else {"next_attempt_at": next_at})
    result = conn.execute(update(T).where(_mine(row.id, node_id)).values(**values))
    if not result.rowcount:
        return "lost"
    return "failed" if final else "retry"


def stats(conn: Connection, now: datetime | None = None) -> tuple[int, float]:
    """(pending deliveries, age in seconds of the oldest pending one)."""
    now = now or utc_now()
    count, oldest = conn.execute(select(func.count(), func.min(T.c.created_at))
                                 .where(T.c.status == "pending")).one()
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return int(count), max(0.0, float(age))


def prune(conn: Connection, *, older_than: datetime) -> int:
    """Forget delivered and failed rows that ended before `older_than`."""
    result = conn.execute(delete(T).where(T.c.status != "pending",
                                          T.c.ended_at < older_than))
    return int(result.rowcount or 0)
