"""Queries on threads, messages and runs. Every read is scoped to its owner.

Functions take the caller's session so several of them share one transaction (a user
message and its run are created together; an answer is stored as its run completes).
Another user's object is reported as :class:`~runwire.errors.NotFound`, never as
"forbidden", so ids can't be probed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from runwire.errors import NotFound
from runwire.ids import new_id
from runwire.protocol.codes import ACTIVE_RUN_STATUSES
from runwire.protocol.envelope import utc_now
from runwire.store import search
from runwire.store.models import Message, Run, Thread

MAX_TITLE = 200


async def create_thread(session: AsyncSession, user_id: str, title: str, *,
                        thread_id: str | None = None) -> Thread:
    """A new thread; `thread_id` chosen by the client (AG-UI) or generated."""
    now = utc_now()
    thread = Thread(
        id=thread_id or new_id(), user_id=user_id, title=title[:MAX_TITLE] or "New chat",
        last_seq=0, created_at=now, updated_at=now,
    )
    session.add(thread)
    await session.flush()
    return thread


async def thread_owner(session: AsyncSession, thread_id: str) -> str | None:
    """Whose thread `thread_id` is (None: no such thread). Never tell a client."""
    owner: str | None = await session.scalar(select(Thread.user_id).where(Thread.id == thread_id))
    return owner


async def get_thread(session: AsyncSession, user_id: str, thread_id: str) -> Thread:
    thread = await session.get(Thread, thread_id)
    if thread is None or thread.user_id != user_id:
        raise NotFound(f"thread {thread_id} not found")
    return thread


async def list_threads(
    session: AsyncSession, user_id: str, *, limit: int, cursor: tuple[datetime, str] | None
) -> list[Thread]:
    """Threads of a user, most recently updated first (keyset pagination)."""
    query = select(Thread).where(Thread.user_id == user_id)
    if cursor is not None:
        ts, tid = cursor
        query = query.where(
            or_(Thread.updated_at < ts, (Thread.updated_at == ts) & (Thread.id < tid))
        )
    rows = await session.scalars(
        query.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(limit)
    )
    return list(rows)


async def rename_thread(session: AsyncSession, user_id: str, thread_id: str, title: str) -> Thread:
    thread = await get_thread(session, user_id, thread_id)
    thread.title = title[:MAX_TITLE]
    thread.updated_at = utc_now()
    await session.flush()
    return thread


async def delete_thread(session: AsyncSession, user_id: str, thread_id: str) -> None:
    thread = await get_thread(session, user_id, thread_id)
    await session.delete(thread)
    await session.flush()


async def find_message(session: AsyncSession, user_id: str, message_id: str) -> Message | None:
    return await session.scalar(
        select(Message).where(Message.user_id == user_id, Message.message_id == message_id)
    )


async def add_message(
    session: AsyncSession,
    *,
    user_id: str,
    thread_id: str,
    message_id: str,
    role: str,
    content: str,
    run_id: str | None,
) -> Message:
    msg = Message(
        message_id=message_id, user_id=user_id, thread_id=thread_id, run_id=run_id, role=role,
        content=content, created_at=utc_now(),
    )
    session.add(msg)
    await session.flush()
    return msg


async def list_messages(
    session: AsyncSession, user_id: str, thread_id: str, *, limit: int, before: int | None,
) -> list[Message]:
    """The newest `limit` messages before cursor `before` (internal id), oldest first."""
    await get_thread(session, user_id, thread_id)
    query = select(Message).where(Message.thread_id == thread_id)
    if before is not None:
        query = query.where(Message.id < before)
    rows = list(await session.scalars(query.order_by(Message.id.desc()).limit(limit)))
    rows.reverse()
    return rows


async def search_messages(
    session: AsyncSession, user_id: str, query: str, *, limit: int
) -> list[tuple[Message, str]]:
    """Messages of `user_id` matching `query` (full text, :mod:`runwire.store.search`),
    best match first, each with its thread's title."""
    hits = await search.search_messages(session, user_id, query, limit=limit)
    if not hits:
        return []
    rows = await session.scalars(select(Message).where(
        Message.user_id == user_id, Message.message_id.in_([h.message_id for h in hits])))
    by_id = {m.message_id: m for m in rows}
    return [(by_id[h.message_id], h.thread_title) for h in hits if h.message_id in by_id]


async def create_run(
    session: AsyncSession,
    *,
    user_id: str,
    thread_id: str,
    message_id: str,
    agent: str,
    request: dict[str, Any],
) -> Run:
    run = Run(
        id=new_id(), thread_id=thread_id, user_id=user_id, message_id=message_id, agent=agent,
        status="queued", attempt=0, request=request, created_at=utc_now(),
    )
    session.add(run)
    await session.flush()
    return run


async def get_run(session: AsyncSession, user_id: str, run_id: str) -> Run:
    run = await session.get(Run, run_id)
    if run is None or run.user_id != user_id:
        raise NotFound(f"run {run_id} not found")
    return run


async def active_runs(session: AsyncSession, thread_id: str) -> Sequence[Run]:
    rows = await session.scalars(
        select(Run)
        .where(Run.thread_id == thread_id, Run.status.in_(ACTIVE_RUN_STATUSES))
        .order_by(Run.created_at)
    )
    return list(rows)


async def run_answer(session: AsyncSession, user_id: str, run_id: str) -> str | None:
    """The content of the last assistant message `run_id` stored, if it is `user_id`'s."""
    return await session.scalar(
        select(Message.content)
        .where(Message.run_id == run_id, Message.user_id == user_id,
               Message.role == "assistant")
        .order_by(Message.id.desc())
        .limit(1)
    )
