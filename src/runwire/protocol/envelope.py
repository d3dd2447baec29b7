"""Server → client frames (SPEC 2.4): the envelope, one-time serialisation, chunking.

An event is serialised to JSON text exactly once (:func:`encode`); the same text goes to
the log, the bus and every socket. Events larger than ``outbound_chunk_size`` are cut
into ``chunk`` frames by :func:`split_chunks`.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# A surrogate code point has no UTF-8 encoding; in text about to be sent it is replaced
# by U+FFFD, as a UTF-8 decoder does with bytes it cannot read.
_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_safe(text: str) -> str:
    """`text` with every surrogate code point replaced by U+FFFD (unchanged when it has
    none): the result always encodes as UTF-8."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and a ``Z`` suffix."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(
    type: str,
    payload: Mapping[str, Any],
    *,
    thread_id: str | None = None,
    run_id: str | None = None,
    seq: int | None = None,
    timestamp: datetime | None = None,
) -> str:
    """Serialise one server frame to compact JSON text.

    The text is always RFC 8259 JSON that encodes as UTF-8: lone surrogates in `payload`
    (from a model, a tool...) become U+FFFD and non-finite floats ``null``, so it can be
    stored, published, sent and parsed by any client.
    """
    frame: dict[str, Any] = {"type": type, "payload": payload}
    if thread_id is not None:
        frame["thread_id"] = thread_id
    if run_id is not None:
        frame["run_id"] = run_id
    if seq is not None:
        frame["seq"] = seq
    frame["timestamp"] = iso(timestamp or utc_now())
    try:
        text = _ENCODER.encode(frame)
    except ValueError:  # NaN/Infinity (a tool's result...): not JSON; JSON.parse refuses them
        text = _ENCODER.encode(_finite(frame))
    return utf8_safe(text)


# One encoder for every frame (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str,
                            allow_nan=False)


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def split_chunks(text: str, chunk_size: int) -> list[str]:
    """Cut `text` between code points into slices of at most `chunk_size` UTF-8 bytes.

    Joining the slices in order gives `text` back exactly.
    """
    data = text.encode()
    if len(data) <= chunk_size:
        return [text]
    slices: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + chunk_size, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # continuation byte
            end -= 1
        slices.append(data[start:end].decode())
        start = end
    return slices


def chunk_frames(text: str, chunk_size: int, chunk_id: str) -> list[str]:
    """The ``chunk`` frames that carry `text` (one frame when it fits)."""
    slices = split_chunks(text, chunk_size)
    if len(slices) == 1:
        return slices
    total = len(slices)
    return [
        encode("chunk", {"chunk_id": chunk_id, "index": i, "total": total, "data": part})
        for i, part in enumerate(slices)
    ]


def text_frame(data: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame carrying `data` (RFC 6455 §5.2):
    what a server writes for a text message when no extension was negotiated, so the
    same bytes serve every such connection."""
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + data


@dataclass(frozen=True, slots=True)
class Envelope:
    """A serialised server frame on its way to a user's connections.

    Thread events carry `thread_id` and `seq`; other frames (``thread_created``...) carry
    neither. `text` is the frame's JSON, made once and shared by every receiver; its
    ``chunk`` frames (:meth:`chunks`) and its WebSocket frame (:meth:`framed`) are
    computed at most once too.
    """

    user_id: str
    type: str
    text: str
    thread_id: str | None = None
    seq: int | None = None
    run_id: str | None = None
    born: float = field(default_factory=time.monotonic, compare=False)  # committed/read at
    _chunks: dict[int, list[str]] = field(default_factory=dict, compare=False, repr=False)
    _framed: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def framed(self) -> bytes:
        """The WebSocket text frame of `text` (:func:`text_frame`), made once."""
        if not self._framed:
            self._framed.append(text_frame(self.text.encode()))
        return self._framed[0]

    def chunks(self, chunk_size: int) -> list[str]:
        """The frames to send for this envelope: itself, or its ``chunk`` frames."""
        if len(self.text) * 4 <= chunk_size:  # fast path: can't exceed the limit
            return [self.text]
        cached = self._chunks.get(chunk_size)
        if cached is None:
            chunk_id = f"{self.thread_id or 'x'}:{self.seq or 0}:{hash(self.text) & 0xFFFFFFFF:x}"
            cached = chunk_frames(self.text, chunk_size, chunk_id)
            self._chunks[chunk_size] = cached
        return cached
