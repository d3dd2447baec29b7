"""HTTP runs and server-sent events (SPEC 8): for clients that cannot hold a WebSocket.

One code path with the WebSocket: ``POST /api/runs`` calls the same
:meth:`RunService.send_message` (same idempotency by ``message_id``, same owner checks) and
counts against the same ``user_message`` rate limit; its run shows live on the user's
WebSocket connections, and a run started there can be followed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from runwire.api.deps import Api, ApiContext, User, Writer, count_message
from runwire.api.errors import problem_responses
from runwire.api.params import RunId, Seq, ThreadId
from runwire.api.params import last_event_id as parse_last_event_id
from runwire.api.routes import RunOut
from runwire.api.sse import (
    SSE_MEDIA,
    SSE_RESPONSE,
    NodeEventSource,
    StreamOverflow,
    sse_event,
    thread_events,
)
from runwire.protocol.codes import ACTIVE_RUN_STATUSES, TERMINAL_EVENTS
from runwire.protocol.envelope import Envelope
from runwire.protocol.frames import Content, Id, MessageSettings, SendMessage

router = APIRouter(prefix="/api", tags=["runs"],
                   responses=problem_responses(400, 401, 404, 409, 422, 429, 503))



class RunCreate(BaseModel):
    """The body of ``POST /api/runs``: a ``user_message`` (or ``start_agent``) payload."""

    model_config = ConfigDict(extra="forbid")
    content: Content
    thread_id: Id | None = None
    message_id: Id | None = Field(default=None, description="idempotency key, unique per user")
    agent: Id | None = None
    context: dict[str, Any] | None = None
    settings: MessageSettings | None = None

    def command(self) -> SendMessage:
        settings = self.settings
        return SendMessage(
            content=self.content, thread_id=self.thread_id, message_id=self.message_id,
            agent=self.agent, context=dict(self.context or {}),
            settings=settings.model_dump(exclude_none=True) if settings else {},
            multitask_strategy=settings.multitask_strategy if settings else None)


class AckOut(BaseModel):
    """The ``message_ack`` payload."""

    message_id: str
    thread_id: str
    run_id: str
    duplicate: bool


class RunResult(RunOut):
    answer: str | None = Field(description="the run's final answer text (its last "
                                           "assistant message), if it stored one")


def _stream(api: ApiContext, events: AsyncIterator[Envelope]) -> EventSourceResponse:
    """An SSE response over `events`, ending quietly on overflow (the client resumes)."""

    async def content() -> AsyncIterator[ServerSentEvent]:
        with contextlib.suppress(StreamOverflow):
            async for env in events:
                yield sse_event(env)

    return NodeEventSource(
        content(), closing=api.closing, ping=api.settings.sse_keepalive,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _wants_sse(accept: str | None) -> bool:
    return accept is not None and SSE_MEDIA in accept.lower()


@router.post("/runs", status_code=202, response_model=AckOut, responses=SSE_RESPONSE)
async def start_run(api: Api, request: Request, user: Writer, body: RunCreate) -> Response:
    """Store a user message and start its run (one transaction), like ``user_message``.

    Answers 202 with the ``message_ack`` payload (a resent ``message_id``: the original
    ids, ``duplicate: true``); with ``Accept: text/event-stream`` the run's events instead
    (``message_created`` first), ending after its terminal event.
    """
    accept = request.headers.get("accept")  # content negotiation, not a parameter
    await count_message(api, user)
    command = body.command()
    after = 0
    if command.thread_id is not None and _wants_sse(accept):
        after = (await api.reader.bounds(user.user_id, command.thread_id)).last
    ack = await api.runs.send_message(user, command, received_at=time.monotonic())
    if not _wants_sse(accept):
        return JSONResponse(ack.payload(), status_code=202)
    if ack.duplicate:
        after = 0  # replay the original run from the log

    def mine(env: Envelope) -> bool:
        if env.run_id is not None:
            return env.run_id == ack.run_id
        return env.type == "message_created" and json.loads(env.text)["payload"].get(
            "message_id") == ack.message_id

    events = thread_events(
        bus=api.bus, reader=api.reader, user_id=user.user_id, thread_id=ack.thread_id,
        after_seq=after, buffer=api.settings.outbound_queue_size, keep=mine,
        until=lambda env: env.run_id == ack.run_id and env.type in TERMINAL_EVENTS)
    return _stream(api, events)


@router.get("/threads/{thread_id}/stream", responses=SSE_RESPONSE,
            response_class=EventSourceResponse)
async def stream_thread(api: Api, user: User, thread_id: ThreadId,
                        after_seq: Seq | None = None,
                        last_event_id: Annotated[str | None, Header()] = None) -> Response:
    """The thread's events as server-sent events: what is stored after ``Last-Event-ID``
    (or ``after_seq``; default: none, live only from the current end) and then live,
    without gaps or duplicates. A comment line every ``SSE_KEEPALIVE`` seconds."""
    after = after_seq
    if (reconnect := parse_last_event_id(last_event_id)) is not None:
        after = reconnect  # the browser's reconnect wins
    if after is None:
        after = (await api.reader.bounds(user.user_id, thread_id)).last
    else:
        await api.reader.bounds(user.user_id, thread_id)  # 404 before streaming
    events = thread_events(bus=api.bus, reader=api.reader, user_id=user.user_id,
                           thread_id=thread_id, after_seq=after,
                           buffer=api.settings.outbound_queue_size)
    return _stream(api, events)


@router.get("/runs/{run_id}/wait", response_model=RunResult)
async def wait_run(api: Api, user: User, run_id: RunId,
                   timeout: Annotated[float, Query(gt=0, le=600)] = 60.0) -> RunResult:
    """Block until the run ends (at most `timeout` seconds), then answer it with its final
    answer text and usage; on timeout, the run as it stands (status still active)."""
    ended = asyncio.Event()

    def watch(env: Envelope) -> None:
        if env.run_id == run_id and env.type in TERMINAL_EVENTS:
            ended.set()

    async with api.bus.subscribe(user.user_id, watch):  # subscribe, then look: no race
        run = await api.reader.run(user.user_id, run_id)
        if run.status in ACTIVE_RUN_STATUSES:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await ended.wait()
            run = await api.reader.run(user.user_id, run_id)
    answer = None if run.status in ACTIVE_RUN_STATUSES else await api.reader.answer(
        user.user_id, run_id)
    return RunResult(**RunOut.of(run).model_dump(), answer=answer)
