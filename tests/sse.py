"""A minimal server-sent events reader for tests (httpx streaming, WHATWG field rules)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Sse:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


async def read_sse(response: httpx.Response, *, comments: bool = False) -> AsyncIterator[Sse]:
    """Yield each event of an SSE response (comment-only blocks too when `comments`)."""
    current = Sse()
    seen = False
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data or current.id is not None or (comments and current.comments):
                current.data = "\n".join(data)
                yield current
            current, data, seen = Sse(), [], False
            continue
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        seen = True
        if name == "event":
            current.event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
    del seen
