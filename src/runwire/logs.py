"""Logging: JSON lines (production) or human-readable (``make run``), with request ids.

The ids of the work in progress — ``user_id``, ``thread_id``, ``run_id``,
``connection_id`` and ``node_id`` — live in context variables set where that work
starts (a connection's tasks, a run's task); every record logged inside it carries
them, without passing them by hand. Tokens and message contents are never logged at
INFO or above.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import Context, ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

FIELDS = ("node_id", "user_id", "connection_id", "thread_id", "run_id")
_context: ContextVar[dict[str, str] | None] = ContextVar("runwire_log_context", default=None)


def bind(**ids: str | None) -> None:
    """Attach ids to every record logged from the current task (and tasks it starts)."""
    current = dict(_context.get() or {})
    current.update({k: v for k, v in ids.items() if v is not None})
    _context.set(current)


def bound() -> dict[str, str]:
    return dict(_context.get() or {})


def fresh_context(**ids: str) -> Context:
    """A context for a new unit of work (a run) holding only `ids`."""
    ctx = Context()
    ctx.run(bind, **ids)
    return ctx


class ContextFilter(logging.Filter):
    """Copies the bound ids (and this process's node id) onto each record."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "node_id", None) is None:
            record.node_id = self.node_id
        for key, value in (_context.get() or {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS[1:]
                       if getattr(record, k, None) is not None)
        return f"{line} [{ids}]" if ids else line


def configure(fmt: Literal["json", "console"], level: str, node_id: str,
              stream: TextIO | None = None) -> None:
    """Route all logging through one handler with runwire's ids and format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(node_id))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
