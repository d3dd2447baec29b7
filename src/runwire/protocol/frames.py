"""Client → server frames (SPEC 2.3): parsing and validation, no I/O.

:func:`parse_client_frame` turns raw text into a typed command or a :class:`FrameError`
that the gateway sends back as an ``error`` frame; it never raises on bad input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
)

from runwire.protocol.codes import ErrorCode, MultitaskStrategy

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def storable_text(value: str) -> str:
    """Pydantic check for text stored in a text column: no NUL (PostgreSQL refuses it in
    text, so it would fail in the store, far from the input that carried it)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000)")
    return value


Content = Annotated[str, StringConstraints(min_length=1, max_length=1_000_000),
                    AfterValidator(storable_text),
                    Field(json_schema_extra={"pattern": r"^[^\x00]*$"})]  # (documented)
MAX_SEQ = 2**63 - 1  # seqs are 64-bit signed integers in the store

# A UTF-16 surrogate code point, raw or as a JSON escape (``\ud800``..``\udfff``). JSON
# decodes an escaped *pair* to one astral character; a lone one stays a surrogate, which
# has no UTF-8 encoding: echoing or storing it would fail far from here.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MessageSettings(_Payload):
    model_config = ConfigDict(extra="allow", frozen=True)
    multitask_strategy: MultitaskStrategy | None = None


class UserMessagePayload(_Payload):
    content: Content
    thread_id: Id | None = None
    message_id: Id | None = None
    context: dict[str, Any] | None = None
    settings: MessageSettings | None = None
    references: list[Any] | None = Field(default=None, max_length=100)


class StartAgentPayload(_Payload):
    user_request: Content | None = None
    content: Content | None = None
    thread_id: Id | None = None
    agent: Id | None = None
    message_id: Id | None = None
    context: dict[str, Any] | None = None
    settings: MessageSettings | None = None


class StopAgentPayload(_Payload):
    run_id: Id | None = None
    thread_id: Id | None = None


class ResumePayload(_Payload):
    thread_id: Id
    after_seq: int = Field(ge=0, le=MAX_SEQ)


class ApprovalBody(_Payload):
    """A decision on a tool call waiting for approval (SPEC 7); also the REST body of
    ``POST /api/runs/{run_id}/approvals`` (where `run_id` comes from the path)."""

    tool_call_id: Id
    approved: StrictBool
    reason: Annotated[str, StringConstraints(max_length=1000)] | None = None
    args: dict[str, Any] | None = None


class ApproveToolPayload(ApprovalBody):
    run_id: Id


@dataclass(frozen=True, slots=True)
class SendMessage:
    """`user_message`, `chat` or `start_agent`: store a user message and start a run."""

    content: str
    thread_id: str | None = None
    message_id: str | None = None
    agent: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    multitask_strategy: MultitaskStrategy | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class StopAgent:
    run_id: str | None
    thread_id: str | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    thread_id: str
    after_seq: int
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApproveTool:
    """`approve_tool`: the user's decision on a call waiting for approval."""

    run_id: str
    decision: ApprovalBody
    request_id: str | None = None


ClientFrame = SendMessage | StopAgent | Resume | Ping | ApproveTool
FrameKind = Literal["user_message", "control"]


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bad input: becomes an ``error`` frame; the connection stays up."""

    code: ErrorCode
    message: str
    request_id: str | None = None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{where}: {err['msg']}"


def _send(payload: dict[str, Any], request_id: str | None, *, start: bool) -> SendMessage:
    if start:
        sp = StartAgentPayload.model_validate(payload)
        content = sp.user_request or sp.content
        if content is None:
            raise _Invalid("user_request: Field required")
        agent = sp.agent
        base: UserMessagePayload | StartAgentPayload = sp
    else:
        up = UserMessagePayload.model_validate(payload)
        content, agent, base = up.content, None, up
    if not content.strip():
        raise _Invalid("content: must not be blank")
    settings = base.settings
    return SendMessage(
        content=content,
        thread_id=base.thread_id,
        message_id=base.message_id,
        agent=agent,
        context=dict(base.context or {}),
        settings=settings.model_dump(exclude_none=True) if settings else {},
        multitask_strategy=settings.multitask_strategy if settings else None,
        request_id=request_id,
    )


class _Invalid(Exception):
    pass


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (RFC 8259), and PostgreSQL's json refuses them."""
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in `value` (keys too) holds a surrogate code point.

    Iterative: the depth is whatever :func:`json.loads` accepted.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_client_frame(text: str) -> ClientFrame | FrameError:
    """Parse one inbound text frame.

    Returns a typed command, or a :class:`FrameError` (`invalid_json`, `unknown_type`,
    `validation_error`) naming what is wrong; never raises for bad input. Every string of
    a returned command (and of a FrameError's `request_id`) can be encoded as UTF-8.
    """
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return FrameError("invalid_json", "frame is not valid JSON")
    if not isinstance(raw, dict):
        return FrameError("invalid_json", "frame must be a JSON object")
    if (_SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text)) and _has_lone_surrogate(raw):
        rid = raw.get("request_id")
        if not isinstance(rid, str) or len(rid) > 128 or _SURROGATE.search(rid):
            rid = None  # never echo the bad string
        return FrameError("validation_error", "frame holds a lone UTF-16 surrogate "
                          "(\\ud800-\\udfff): not valid Unicode", rid)
    request_id = raw.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
        return FrameError("validation_error", "request_id: must be a string of at most 128 chars")
    kind = raw.get("type")
    payload = raw.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(kind, str):
        return FrameError("validation_error", "type: Field required", request_id)
    if not isinstance(payload, dict):
        return FrameError("validation_error", "payload: must be an object", request_id)
    try:
        if kind in ("user_message", "chat"):
            return _send(payload, request_id, start=False)
        if kind == "start_agent":
            return _send(payload, request_id, start=True)
        if kind == "stop_agent":
            stop = StopAgentPayload.model_validate(payload)
            if stop.run_id is None and stop.thread_id is None:
                raise _Invalid("payload: run_id or thread_id is required")
            return StopAgent(stop.run_id, stop.thread_id, request_id)
        if kind == "resume":
            res = ResumePayload.model_validate(payload)
            return Resume(res.thread_id, res.after_seq, request_id)
        if kind == "ping":
            return Ping(request_id)
        if kind == "approve_tool":
            approve = ApproveToolPayload.model_validate(payload)
            return ApproveTool(approve.run_id, ApprovalBody.model_validate(
                approve.model_dump(exclude={"run_id"})), request_id)
    except ValidationError as exc:
        return FrameError("validation_error", _first_error(exc), request_id)
    except _Invalid as exc:
        return FrameError("validation_error", str(exc), request_id)
    return FrameError("unknown_type", f"unknown frame type {kind[:64]!r}", request_id)
