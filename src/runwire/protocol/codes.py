"""Close codes, error codes and event type names of protocol version 1 (SPEC 2.2-2.4)."""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Literal

PROTOCOL_VERSION: Final = 1
SUBPROTOCOL: Final = "runwire.v1"
JWT_SUBPROTOCOL_PREFIX: Final = "jwt."


class CloseCode(IntEnum):
    """WebSocket close codes and what they mean to a client (SPEC 2.2)."""

    NORMAL = 1000  # normal / idle timeout
    GOING_AWAY = 1001  # server shutting down (drain)
    POLICY_VIOLATION = 1008  # repeated abuse
    MESSAGE_TOO_BIG = 1009  # inbound frame over max_message_size
    INTERNAL_ERROR = 1011
    HEARTBEAT_TIMEOUT = 4000
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    TOO_MANY_CONNECTIONS = 4008
    SLOW_CONSUMER = 4009


ErrorCode = Literal[
    "invalid_json",
    "unknown_type",
    "validation_error",
    "rate_limited",
    "not_found",
    "forbidden",
    "thread_busy",
    "storage_unavailable",
    "conflict",
    "internal",
]

AgentErrorCode = Literal[
    "timeout",
    "model_error",
    "tool_error",
    "storage_unavailable",
    "overloaded",
    "internal",
    "node_lost",
]

RunStatus = Literal["queued", "running", "waiting", "completed", "cancelled", "failed",
                    "timed_out"]
# A waiting run (paused for the user's approval of a tool call, SPEC 7) is its thread's
# active run: later messages queue behind it, `interrupt` and stops cancel it.
ACTIVE_RUN_STATUSES: Final[tuple[RunStatus, ...]] = ("queued", "running", "waiting")

MultitaskStrategy = Literal["enqueue", "reject", "interrupt"]

# Events that belong to a thread's log (carry thread_id + seq).
RunEventType = Literal[
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "partial_result",
    "agent_progress",
    "agent_response",
    "agent_completed",
    "agent_error",
    "approval_required",
    "approval_resolved",
]
ThreadEventType = Literal["message_created"] | RunEventType
TERMINAL_EVENTS: Final = frozenset({"agent_completed", "agent_error"})

# Frames that are not part of a thread's log.
ControlFrameType = Literal[
    "connection_established",
    "message_ack",
    "thread_created",
    "thread_updated",
    "thread_deleted",
    "replay_complete",
    "pong",
    "error",
    "chunk",
]
