"""``POST /ag-ui``: runwire as an AG-UI agent (SPEC 8), for CopilotKit and every AG-UI client.

Takes an AG-UI ``RunAgentInput`` and answers an SSE stream of AG-UI events, encoded with
the official ``ag-ui-protocol`` models and ``EventEncoder``. The last user message of
``messages`` becomes a runwire user message of thread ``threadId`` — the thread is created
for the caller when new; another user's thread id ends the run with ``RUN_ERROR``
``not_found`` — and the run goes through the same :meth:`RunService.send_message` as the
WebSocket (same limits, idempotency by the message's ``id``, live on the user's tabs).
Translation: :mod:`runwire.api.agui_map`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from ag_ui.core import BaseEvent, RunAgentInput, UserMessage
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import StringConstraints, TypeAdapter, ValidationError

from runwire.api.agui_map import AgUiMapper, parse_interrupt_id
from runwire.api.deps import Api, ApiContext, Writer, count_message
from runwire.api.errors import problem_responses
from runwire.api.sse import SSE_RESPONSE, NodeEventSource, StreamOverflow, thread_events
from runwire.auth import Principal
from runwire.errors import (
    Conflict,
    InvalidArguments,
    NotFound,
    RateLimited,
    StorageUnavailable,
    ThreadBusy,
)
from runwire.protocol.codes import TERMINAL_EVENTS
from runwire.protocol.envelope import Envelope
from runwire.protocol.frames import ApprovalBody, Id, SendMessage

router = APIRouter(tags=["ag-ui"], responses=problem_responses(400, 401, 422, 429))
_ID = TypeAdapter(Id)
_THREAD_ID = TypeAdapter(Annotated[str, StringConstraints(
    min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")])


class BadInput(ValueError):
    """The RunAgentInput has no usable user message."""


def last_user_text(run: RunAgentInput) -> tuple[str, str | None]:
    """The last user message's text and (when usable as a runwire message_id) its id."""
    for message in reversed(run.messages):
        if isinstance(message, UserMessage):
            content = message.content
            text = content if isinstance(content, str) else "\n".join(
                str(getattr(part, "text", "")) for part in content
                if getattr(part, "type", None) == "text")
            if not text.strip():
                break
            if "\x00" in text:  # PostgreSQL refuses NUL in text: say so here, not as a 500
                raise BadInput("messages: text must not contain NUL (\\u0000)")
            try:
                return text, _ID.validate_python(message.id)
            except ValidationError:
                return text, None
    raise BadInput("messages: no user message with text content")


@router.post("/ag-ui", status_code=200, responses=SSE_RESPONSE, response_class=NodeEventSource)
async def ag_ui(api: Api, user: Writer, run: RunAgentInput) -> Response:
    """Run the supervisor for the last user message of an AG-UI ``RunAgentInput``; the
    answer is the run as AG-UI events (``RUN_STARTED`` … ``RUN_FINISHED``/``RUN_ERROR``).
    A body that is not a ``RunAgentInput`` is a 422; one runwire cannot run (no user
    message with text, a ``threadId`` it cannot store) streams ``RUN_ERROR``
    ``validation_error``, as AG-UI clients expect errors."""
    invalid: str | None = None
    text, message_id = "", None
    try:
        if not run.resume:  # a resume decides interrupts; it sends no new message
            text, message_id = last_user_text(run)
        _THREAD_ID.validate_python(run.thread_id)
    except ValidationError:
        invalid = "threadId: 1-64 characters of A-Z a-z 0-9 _ . : -"
    except BadInput as exc:
        invalid = str(exc)
    encoder = EventEncoder()
    mapper = AgUiMapper(run.thread_id, run.run_id)

    async def content() -> AsyncIterator[bytes]:
        def frames(events: list[BaseEvent]) -> list[bytes]:
            return [encoder.encode(e).encode() for e in events]

        for frame in frames(mapper.started()):
            yield frame
        if invalid is not None:
            for frame in frames(mapper.error("validation_error", invalid)):
                yield frame
            return
        source = (_resume_events(api, user, run) if run.resume
                  else _run_events(api, user, run, text, message_id))
        try:
            async for env in source:
                for frame in frames(mapper.feed(json.loads(env.text))):
                    yield frame
        except NotFound as exc:
            events = mapper.error("not_found", str(exc))
        except ThreadBusy as exc:
            events = mapper.error("thread_busy", str(exc))
        except RateLimited as exc:
            events = mapper.error("rate_limited", str(exc))
        except StorageUnavailable:
            events = mapper.error("storage_unavailable", "storage is unavailable; retry later")
        except Conflict as exc:
            events = mapper.error("conflict", str(exc))
        except InvalidArguments as exc:
            events = mapper.error("validation_error", str(exc))
        except ValidationError as exc:  # a resume entry's payload
            events = mapper.error("validation_error", str(exc).splitlines()[0])
        except StreamOverflow:
            events = mapper.error("slow_consumer", "the client read too slowly; retry")
        else:  # the stream ended without a terminal event (thread deleted, node draining)
            events = mapper.error("interrupted", "the run's stream ended before the run")
        for frame in frames(events):
            yield frame

    return NodeEventSource(content(), closing=api.closing, ping=api.settings.sse_keepalive,
                           headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _run_events(api: ApiContext, user: Principal, run: RunAgentInput, text: str,
                      message_id: str | None) -> AsyncIterator[Envelope]:
    """Start the run in thread ``run.thread_id`` (created when new) and yield its events
    up to its terminal one.

    Raises:
        NotFound: the thread is another user's. ThreadBusy, RateLimited,
        StorageUnavailable: as for ``POST /api/runs``.
    """
    await count_message(api, user)
    await api.threads.ensure(user.user_id, run.thread_id, title=text)
    after = (await api.reader.bounds(user.user_id, run.thread_id)).last
    context: dict[str, Any] = {"ag_ui": {
        "run_id": run.run_id,
        "context": [c.model_dump(by_alias=True) for c in run.context or []],
        "state": run.state, "forwarded_props": run.forwarded_props}}
    ack = await api.runs.send_message(user, SendMessage(
        content=text, thread_id=run.thread_id, message_id=message_id, context=context),
        received_at=time.monotonic())
    if ack.duplicate:
        after = 0

    async for env in thread_events(
            bus=api.bus, reader=api.reader, user_id=user.user_id, thread_id=ack.thread_id,
            after_seq=after, buffer=api.settings.outbound_queue_size,
            keep=lambda env: env.run_id == ack.run_id,
            until=lambda env: env.run_id == ack.run_id and (
                env.type in TERMINAL_EVENTS or env.type == "approval_required")):
        yield env


async def _resume_events(api: ApiContext, user: Principal, run: RunAgentInput,
                         ) -> AsyncIterator[Envelope]:
    """Decide the interrupts named by ``run.resume`` (``resolved``: approve, unless its
    payload says ``approved: false``; ``cancelled``: deny), then yield the resumed runs'
    events up to their end or their next wait.

    Payload of an entry (optional): ``{approved?: bool, reason?: str, args?: object}`` —
    the ``approve_tool`` fields.

    Raises:
        NotFound: an interrupt of another user, or not one of runwire's.
        Conflict: decided already. InvalidArguments: edited args that do not fit.
    """
    after = (await api.reader.bounds(user.user_id, run.thread_id)).last
    runs: set[str] = set()
    for entry in run.resume or []:
        ids = parse_interrupt_id(entry.interrupt_id)
        if ids is None:
            raise NotFound(f"interrupt {entry.interrupt_id!r} not found")
        payload = entry.payload if isinstance(entry.payload, dict) else {}
        approved = entry.status == "resolved" and payload.get("approved", True) is True
        reason = payload.get("reason") if entry.status == "resolved" else "cancelled"
        body = ApprovalBody.model_validate({
            "tool_call_id": ids[1], "approved": approved,
            "reason": reason if isinstance(reason, str) else None,
            "args": payload.get("args") if approved else None})
        await api.runs.decide(user, ids[0], body)
        runs.add(ids[0])
    async for env in thread_events(
            bus=api.bus, reader=api.reader, user_id=user.user_id, thread_id=run.thread_id,
            after_seq=after, buffer=api.settings.outbound_queue_size,
            keep=lambda env: env.run_id in runs,
            until=lambda env: env.run_id in runs and (
                env.type in TERMINAL_EVENTS or env.type == "approval_required")):
        yield env
