"""Typed identifiers shared by every layer (no I/O, no runwire imports)."""

from __future__ import annotations

import uuid
from typing import NewType

UserId = NewType("UserId", str)
ThreadId = NewType("ThreadId", str)
RunId = NewType("RunId", str)
MessageId = NewType("MessageId", str)
ConnectionId = NewType("ConnectionId", str)
NodeId = NewType("NodeId", str)


def new_id() -> str:
    """A fresh random identifier (UUID4 hex with dashes)."""
    return str(uuid.uuid4())
