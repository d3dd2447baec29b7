"""What the load generator sends: tokens, message ids and client frames."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt

from benchmarks.servers import SECRET


def token(user: str, ttl: int = 3600) -> str:
    """An HS256 token the servers under test accept (they share `SECRET`)."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl}, SECRET, algorithm="HS256")


def run_prefix(name: str) -> str:
    """A message-id prefix unique to one workload (message ids are idempotency keys: a
    repeated one starts no run)."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def user_message(content: str, message_id: str, thread_id: str | None = None) -> str:
    payload: dict[str, Any] = {"content": content, "message_id": message_id}
    if thread_id is not None:
        payload["thread_id"] = thread_id
    return json.dumps({"type": "user_message", "payload": payload})
