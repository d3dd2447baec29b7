"""REST inputs checked at the edge: ids, 64-bit numbers and opaque cursors.

Anything that reaches the store is of a shape and range it can take: an id matches the
pattern runwire's ids have, a seq fits a signed 64-bit integer, a timestamp converts to
UTC. A bad input is a 422 problem (``validation_error``, like FastAPI's own), never a 500
or a database error (issue 14: a cursor made the store raise and opened the database
breaker for everyone).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

from fastapi import Path, Query
from fastapi.exceptions import RequestValidationError

from runwire.protocol.frames import MAX_SEQ

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"  # the ids runwire makes and accepts (frames.Id)
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]
RunId = Annotated[str, Path(pattern=ID_PATTERN)]
Seq = Annotated[int, Query(ge=0, le=MAX_SEQ)]
MAX_CURSOR = 512  # characters of an opaque cursor (runwire's own are < 100)


def invalid(where: str, why: str) -> NoReturn:
    """Raise the 422 problem FastAPI gives for a bad query parameter."""
    raise RequestValidationError([{"type": "value_error", "loc": ("query", where),
                                   "msg": why}])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The JSON value inside an opaque cursor; 422 when it is not one of this API's."""
    if len(cursor) > MAX_CURSOR or not cursor.isascii():
        invalid("cursor", "invalid cursor: not a cursor of this API")
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)),
                          parse_constant=_no_constant)
    except (ValueError, binascii.Error, RecursionError):
        invalid("cursor", "invalid cursor: not a cursor of this API")


def thread_cursor(cursor: str) -> tuple[datetime, str]:
    """``[updated_at ISO 8601 with an offset, thread_id]`` → a UTC keyset position."""
    raw = decode_cursor(cursor)
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, str) for v in raw)):
        invalid("cursor", "invalid cursor: expected [timestamp, thread_id]")
    stamp, thread_id = raw
    if not re.fullmatch(ID_PATTERN, thread_id):
        invalid("cursor", "invalid cursor: bad thread_id")
    try:
        ts = datetime.fromisoformat(stamp) if len(stamp) <= 40 else None
        if ts is None or ts.tzinfo is None:
            invalid("cursor", "invalid cursor: the timestamp needs a UTC offset")
        return ts.astimezone(UTC), thread_id
    except (ValueError, OverflowError):  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        invalid("cursor", "invalid cursor: bad timestamp")


def int_cursor(cursor: str, *, high: int = MAX_SEQ) -> int:
    """A cursor holding a position in ``0..high`` (a bool is not one)."""
    raw = decode_cursor(cursor)
    if type(raw) is not int or not 0 <= raw <= high:
        invalid("cursor", "invalid cursor: expected a position")
    return raw


def message_cursor(cursor: str) -> int:
    return int_cursor(cursor)


def last_event_id(value: str | None) -> int | None:
    """An SSE ``Last-Event-ID`` (a seq), or None when absent or not one (ignored, as the
    browser's reconnect hint is best-effort)."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_SEQ:
        return None
    return int(value)
