"""``/api`` routes: threads, messages, events, runs — all scoped to the token's user.

Another user's id answers 404 exactly like a missing one. Lists take ``limit`` (default
50, max 500) and an opaque ``cursor`` and answer ``{items, next_cursor}``. Every input is
checked before it reaches the store (ids by pattern, numbers within 64 bits, cursors by
shape, type and range: :mod:`runwire.api.params`): a bad one is a 422 problem, never a 500
or a database error.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runwire.api.deps import Api, User, Writer
from runwire.api.errors import problem_responses
from runwire.api.params import RunId, Seq, ThreadId, encode_cursor, message_cursor, thread_cursor
from runwire.errors import StorageUnavailable
from runwire.store.models import Message, Run
from runwire.threads import ThreadInfo

router = APIRouter(prefix="/api", tags=["api"],
                   responses=problem_responses(400, 401, 404, 422, 429, 503))
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500)]
# Validated as documented (a non-space character, no NUL: PostgreSQL text can't hold it;
# JSON Schema has no "strip"); the thread service collapses surrounding whitespace.
Title = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                         pattern=r"^[^\x00]*[^\x00\s][^\x00]*$")]


class ThreadOut(BaseModel):
    thread_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    last_seq: int

    @classmethod
    def of(cls, t: ThreadInfo) -> ThreadOut:
        return cls(thread_id=t.thread_id, title=t.title, created_at=t.created_at,
                   updated_at=t.updated_at, last_seq=t.last_seq)


class MessageOut(BaseModel):
    message_id: str
    thread_id: str
    role: str
    content: str
    run_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, m: Message) -> MessageOut:
        return cls(message_id=m.message_id, thread_id=m.thread_id, role=m.role,
                   content=m.content, run_id=m.run_id, created_at=m.created_at)


class RunOut(BaseModel):
    run_id: str
    thread_id: str
    message_id: str
    agent: str
    status: str
    node_id: str | None
    attempt: int
    error_code: str | None
    error_message: str | None
    usage: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, r: Run) -> RunOut:
        return cls(run_id=r.id, thread_id=r.thread_id, message_id=r.message_id, agent=r.agent,
                   status=r.status, node_id=r.node_id, attempt=r.attempt,
                   error_code=r.error_code, error_message=r.error_message,
                   usage=r.usage, created_at=r.created_at, started_at=r.started_at,
                   ended_at=r.ended_at)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title | None = None


class ThreadRename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title


class EventsPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    last_seq: int = Field(description="the thread's last allocated seq")
    first_retained_seq: int | None = Field(description="older events were pruned")


@router.get("/threads", response_model=Page[ThreadOut])
async def list_threads(api: Api, user: User, limit: Limit = 50,
                       cursor: str | None = None) -> Page[ThreadOut]:
    key = thread_cursor(cursor) if cursor else None
    rows = await api.threads.list(user.user_id, limit=limit + 1, cursor=key)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = (encode_cursor([rows[-1].updated_at.isoformat(), rows[-1].thread_id])
           if more else None)
    return Page[ThreadOut](items=[ThreadOut.of(t) for t in rows], next_cursor=nxt)


@router.post("/threads", response_model=ThreadOut, status_code=201)
async def create_thread(api: Api, user: Writer, body: ThreadCreate) -> ThreadOut:
    return ThreadOut.of(await api.threads.create(user.user_id, body.title))


@router.get("/threads/{thread_id}", response_model=ThreadOut)
async def get_thread(api: Api, user: User, thread_id: ThreadId) -> ThreadOut:
    return ThreadOut.of(await api.threads.get(user.user_id, thread_id))


@router.patch("/threads/{thread_id}", response_model=ThreadOut)
async def rename_thread(api: Api, user: Writer, thread_id: ThreadId,
                        body: ThreadRename) -> ThreadOut:
    return ThreadOut.of(await api.threads.rename(user.user_id, thread_id, body.title))


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(api: Api, user: Writer, thread_id: ThreadId) -> Response:
    """Cancels the thread's runs first, then deletes it with its messages and events."""
    await api.threads.delete(user.user_id, thread_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/messages", response_model=Page[MessageOut])
async def list_messages(api: Api, response: Response, user: User, thread_id: ThreadId,
                        limit: Limit = 50, cursor: str | None = None) -> Page[MessageOut]:
    """Newest page first; each page is oldest-first; `next_cursor` pages to older ones.

    When the database is unavailable, the newest page is served from the history cache
    (Redis) if it holds it, with ``X-Runwire-Source: cache``.
    """
    before = message_cursor(cursor) if cursor else None
    try:
        rows = await api.reader.messages(user.user_id, thread_id, limit=limit + 1,
                                         before=before)
    except StorageUnavailable:
        cached = await api.history_cache.get(thread_id) if before is None else None
        if cached is None or cached[0] != user.user_id:
            raise
        response.headers["X-Runwire-Source"] = "cache"
        items = [MessageOut.model_validate(m) for m in cached[1]][-limit:]
        return Page[MessageOut](items=items, next_cursor=None)
    more = len(rows) > limit
    rows = rows[-limit:]
    nxt = encode_cursor(rows[0].id) if more and rows else None
    page = Page[MessageOut](items=[MessageOut.of(m) for m in rows], next_cursor=nxt)
    if before is None:
        await api.history_cache.put(thread_id, user.user_id,
                                    [m.model_dump(mode="json") for m in page.items])
    return page


@router.get("/threads/{thread_id}/events", response_model=EventsPage)
async def list_events(api: Api, user: User, thread_id: ThreadId,
                      after_seq: Seq = 0,
                      limit: Limit = 500) -> EventsPage:
    """Stored events with seq > `after_seq`, in seq order (the replay log over REST)."""
    bounds = await api.reader.bounds(user.user_id, thread_id)
    rows = await api.reader.events(user.user_id, thread_id, after_seq=after_seq, limit=limit,
                                   check_owner=False)
    nxt = str(rows[-1].seq) if len(rows) == limit and rows else None
    return EventsPage(items=[json.loads(e.text) for e in rows], next_cursor=nxt,
                      last_seq=bounds.last, first_retained_seq=bounds.first)


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(api: Api, user: User, run_id: RunId) -> RunOut:
    return RunOut.of(await api.reader.run(user.user_id, run_id))


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(api: Api, user: Writer, run_id: RunId) -> dict[str, Any]:
    cancelled = await api.runs.stop(user, run_id=run_id, thread_id=None)
    return {"run_id": run_id, "cancelling": bool(cancelled)}
