"""runwire's exceptions.

Hierarchy::

    RunwireError                  root of everything runwire raises on purpose
    ├── ConfigError               a setting is invalid; start-up stops with one line
    ├── AuthError                 token missing/invalid/expired (close 4001, REST 401)
    ├── NotFound                  no such thread/run/message *for this user* (REST 404)
    ├── StorageUnavailable        the database cannot be reached or timed out
    ├── ThreadBusy                a thread has an active run and the strategy is `reject`
    ├── Conflict                  a tool call was decided already (REST 409)
    ├── InvalidArguments          edited tool arguments do not fit the tool (REST 422)
    ├── RateLimited               over a per-user, per-operation limit (REST 429)
    ├── LeaseLost                 this node no longer holds a run (fencing): stop, write nothing
    └── AgentFailure              a run failed; carries the `agent_error` code + retryable
        ├── ModelFailure          provider error (`model_error`)
        └── ToolFailure           a tool failed in a way the run cannot recover (`tool_error`)

Client-visible codes come from :mod:`runwire.protocol.codes`.
"""

from __future__ import annotations

from runwire.protocol.codes import AgentErrorCode


class RunwireError(Exception):
    """Root of runwire's exceptions."""


class ConfigError(RunwireError):
    """A setting is invalid."""


class AuthError(RunwireError):
    """The token is missing, malformed, expired or not signed by a trusted key."""


class NotFound(RunwireError):
    """The object does not exist or belongs to another user (never say which)."""


class StorageUnavailable(RunwireError):
    """The database failed or timed out; the operation left no partial state."""


class ThreadBusy(RunwireError):
    """The thread already has an active run and the strategy is `reject`."""


class Conflict(RunwireError):
    """A tool call was decided already (the first decision wins), or its run moved on."""


class InvalidArguments(RunwireError):
    """Edited tool arguments that do not fit the tool's schema; nothing was decided."""


class RateLimited(RunwireError):
    """Over a rate limit; `retry_after_ms` says when the next attempt may succeed."""

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


class LeaseLost(RunwireError):
    """This node no longer holds the run (its lease expired and another node ended it)."""


class AgentFailure(RunwireError):
    """A run ended in failure.

    Args:
        code: the `agent_error` code sent to clients.
        message: human-readable reason (no secrets).
        retryable: whether the same request may succeed later.
    """

    def __init__(self, code: AgentErrorCode, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code: AgentErrorCode = code
        self.message = message
        self.retryable = retryable


class ModelFailure(AgentFailure):
    """The model provider failed (HTTP 429/5xx, connection error, bad response)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__("model_error", message, retryable=retryable)


class ToolFailure(AgentFailure):
    """A tool failed and the run cannot go on."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__("tool_error", message, retryable=retryable)
