"""What one run is given: its identity, its inputs and where its events go.

Everything here is request-scoped: a new :class:`RunScope` is built for every run and
shared with nothing else (seed: UserExecutionContext, without the globals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic_ai.messages import ModelMessage

from runwire.ids import MessageId, RunId, ThreadId, UserId
from runwire.protocol.codes import RunEventType


class EventSink(Protocol):
    """Where a run's events go (the run's emitter).

    Contract: `emit` queues the event for the node's next group commit (see
    :mod:`runwire.runs.writer`: events pending together share one transaction, consecutive
    deltas become one event); nothing is sent before it is committed; events of one run
    keep the order of the `emit` calls. A
    failed commit is raised by the run's next `emit` (StorageUnavailable, LeaseLost). The
    sink adds thread_id, run_id, seq and timestamp; callers give only the type and the
    payload of SPEC 2.4.
    """

    async def emit(self, type: RunEventType, payload: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One of the calling user's own messages that matched a search."""

    thread_id: ThreadId
    thread_title: str
    message_id: MessageId
    role: str
    content: str


class MessageSearch(Protocol):
    """Searches the messages of exactly one user (the run's owner)."""

    async def __call__(self, user_id: UserId, query: str, *, limit: int) -> list[SearchHit]: ...


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """An earlier message of the thread (a stored message row), oldest first."""

    role: Literal["user", "assistant"]
    content: str
    run_id: str | None = None  # the run it started or answered


@dataclass(frozen=True, slots=True)
class RunScope:
    """The execution context of one run.

    Attributes:
        user_id, thread_id, run_id: who and what this run is.
        scopes: permissions granted by the token's `scope` claim.
        agent_name: the agent that supervises the run (registry name).
        user_message: the text of the user message that started the run.
        user_message_id: its public id.
        assistant_message_id: id the answer will be stored under (known before streaming,
            so `partial_result` deltas can name it).
        history: the model's history, oldest first: the thread's earlier messages (up to
            `max_history_size`) with their runs' tool calls and results, see
            :mod:`runwire.agents.history`. Never the run's own user message.
        context, settings: the client's optional `context` / `settings` objects.
        events: the run's emitter.
        search: owner-scoped message search for the `search_threads` tool.
    """

    user_id: UserId
    thread_id: ThreadId
    run_id: RunId
    agent_name: str
    user_message: str
    user_message_id: MessageId
    assistant_message_id: MessageId
    events: EventSink
    search: MessageSearch
    scopes: frozenset[str] = frozenset()
    history: Sequence[ModelMessage] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    depth: int = 0  # 0 for the run's supervisor, +1 per delegation to a sub-agent
    resume: Resumption | None = None  # a run that paused for approvals and goes on


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A tool call that waits for the user's approval (SPEC 7)."""

    tool_call_id: str
    tool_name: str
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """The user's decision on an :class:`ApprovalRequest`; `args`: what an approved call
    runs with (the user's edit, else the model's arguments)."""

    tool_call_id: str
    tool_name: str
    approved: bool
    reason: str | None
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Resumption:
    """What resuming a paused run needs: pydantic-ai's messages at the pause (JSON) — of
    which the first `history_len` are the thread's history, the rest the run's own — the
    answer text streamed so far, and a decision for every call it waited for."""

    messages: str
    history_len: int
    text: str
    decisions: Sequence[ApprovalDecision]


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """What a finished run produced: the final answer, token usage and, for the thread's
    later history, pydantic-ai's messages of the run as JSON (ModelMessagesTypeAdapter).

    A run that paused for approvals (`pending` not empty) produced the answer so far,
    and in `paused_messages` all of pydantic-ai's messages (the first `history_len` the
    thread's history) to resume from."""

    content: str
    usage: Mapping[str, int] = field(default_factory=dict)
    messages: str | None = None
    pending: tuple[ApprovalRequest, ...] = ()
    paused_messages: str | None = None
    history_len: int = 0
