"""``/api`` routes: threads, messages, events, runs — all scoped to the token's user.

Another user's id answers 404 exactly like a missing one. Lists take ``limit`` (default
50, max 500) and an opaque ``cursor`` and answer ``{items, next_cursor}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runwire.auth import Principal
from runwire.errors import AuthError, NotFound, RateLimited, StorageUnavailable
from runwire.store import repo
from runwire.store.models import Message, Run, Thread

if TYPE_CHECKING:
    from runwire.app import Services

router = APIRouter(prefix="/api", tags=["api"])
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _services(request: Request) -> Services:
    from runwire.app import services_of  # the app module imports this one

    return services_of(request.app)


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <jwt>``; 401 problem otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token")
    return _services(request).tokens.verify(token.strip())


async def writer(request: Request, user: Annotated[Principal, Depends(principal)]) -> Principal:
    """The caller of a write endpoint, counted against the `rest_write` rate limit."""
    decision = await _services(request).limiter.hit(user.user_id, "rest_write")
    if not decision.allowed:
        raise RateLimited(decision.retry_after_ms)
    return user


User = Annotated[Principal, Depends(principal)]
Writer = Annotated[Principal, Depends(writer)]


class ThreadOut(BaseModel):
    thread_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    last_seq: int

    @classmethod
    def of(cls, t: Thread) -> ThreadOut:
        return cls(thread_id=t.id, title=t.title, created_at=t.created_at,
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


def _encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise NotFound("invalid cursor") from None


@router.get("/threads", response_model=Page[ThreadOut])
async def list_threads(request: Request, user: User, limit: Limit = 50,
                       cursor: str | None = None) -> Page[ThreadOut]:
    key: tuple[datetime, str] | None = None
    if cursor:
        raw = _decode_cursor(cursor)
        try:
            key = (datetime.fromisoformat(raw[0]), str(raw[1]))
        except (TypeError, ValueError, IndexError):
            raise NotFound("invalid cursor") from None
    async with _services(request).db.read() as session:
        rows = await repo.list_threads(session, user.user_id, limit=limit + 1, cursor=key)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = _encode_cursor([rows[-1].updated_at.isoformat(), rows[-1].id]) if more else None
    return Page[ThreadOut](items=[ThreadOut.of(t) for t in rows], next_cursor=nxt)


@router.post("/threads", response_model=ThreadOut, status_code=201)
async def create_thread(request: Request, user: Writer, body: ThreadCreate) -> ThreadOut:
    services = _services(request)
    async with services.db.write() as session:
        thread = await repo.create_thread(session, user.user_id, body.title or "New chat")
    out = ThreadOut.of(thread)
    await services.runs.publish_control(user.user_id, "thread_created",
                                        {"thread_id": out.thread_id, "title": out.title})
    return out


@router.get("/threads/{thread_id}", response_model=ThreadOut)
async def get_thread(request: Request, user: User, thread_id: str) -> ThreadOut:
    async with _services(request).db.read() as session:
        return ThreadOut.of(await repo.get_thread(session, user.user_id, thread_id))


@router.patch("/threads/{thread_id}", response_model=ThreadOut)
async def rename_thread(request: Request, user: Writer, thread_id: str,
                        body: ThreadRename) -> ThreadOut:
    services = _services(request)
    async with services.db.write() as session:
        out = ThreadOut.of(await repo.rename_thread(session, user.user_id, thread_id, body.title))
    await services.runs.publish_control(user.user_id, "thread_updated",
                                        {"thread_id": out.thread_id, "title": out.title})
    return out


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(request: Request, user: Writer, thread_id: str) -> Response:
    services = _services(request)
    async with services.db.read() as session:
        await repo.get_thread(session, user.user_id, thread_id)
    await services.runs.cancel_thread(user.user_id, thread_id, reason="deleted")
    async with services.db.write() as session:
        await repo.delete_thread(session, user.user_id, thread_id)
    await services.history_cache.invalidate(thread_id)
    await services.runs.publish_control(user.user_id, "thread_deleted", {"thread_id": thread_id})
    return Response(status_code=204)


@router.get("/threads/{thread_id}/messages", response_model=Page[MessageOut])
async def list_messages(request: Request, response: Response, user: User, thread_id: str,
                        limit: Limit = 50, cursor: str | None = None) -> Page[MessageOut]:
    """Newest page first; each page is oldest-first; `next_cursor` pages to older ones.

    When the database is unavailable, the newest page is served from the history cache
    (Redis) if it holds it, with ``X-Runwire-Source: cache``.
    """
    services = _services(request)
    before = None
    if cursor:
        raw = _decode_cursor(cursor)
        if not isinstance(raw, int):
            raise NotFound("invalid cursor")
        before = raw
    try:
        async with services.db.read() as session:
            rows = await repo.list_messages(session, user.user_id, thread_id, limit=limit + 1,
                                            before=before)
    except StorageUnavailable:
        cached = await services.history_cache.get(thread_id) if before is None else None
        if cached is None or cached[0] != user.user_id:
            raise
        response.headers["X-Runwire-Source"] = "cache"
        items = [MessageOut.model_validate(m) for m in cached[1]][-limit:]
        return Page[MessageOut](items=items, next_cursor=None)
    more = len(rows) > limit
    rows = rows[-limit:]
    nxt = _encode_cursor(rows[0].id) if more and rows else None
    page = Page[MessageOut](items=[MessageOut.of(m) for m in rows], next_cursor=nxt)
    if before is None:
        await services.history_cache.put(thread_id, user.user_id,
                                         [m.model_dump(mode="json") for m in page.items])
    return page


@router.get("/threads/{thread_id}/events", response_model=EventsPage)
async def list_events(request: Request, user: User, thread_id: str,
                      after_seq: Annotated[int, Query(ge=0)] = 0,
                      limit: Limit = 500) -> EventsPage:
    """Stored events with seq > `after_seq`, in seq order (the replay log over REST)."""
    reader = _services(request).reader
    bounds = await reader.bounds(user.user_id, thread_id)
    rows = await reader.events(user.user_id, thread_id, after_seq=after_seq, limit=limit,
                               check_owner=False)
    nxt = str(rows[-1].seq) if len(rows) == limit and rows else None
    return EventsPage(items=[json.loads(e.text) for e in rows], next_cursor=nxt,
                      last_seq=bounds.last, first_retained_seq=bounds.first)


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(request: Request, user: User, run_id: str) -> RunOut:
    async with _services(request).db.read() as session:
        return RunOut.of(await repo.get_run(session, user.user_id, run_id))


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(request: Request, user: Writer, run_id: str) -> dict[str, Any]:
    cancelled = await _services(request).runs.stop(user, run_id=run_id, thread_id=None)
    return {"run_id": run_id, "cancelling": bool(cancelled)}
