"""Streaming capacity: C concurrent provider streams × 20 tokens/s × 100 tokens.

The paced fake provider (``tests/fake_openai.py``) stamps every token with its send time
(``time.time()``, µs); every client here is on the same machine, so a token's lag is its
arrival time (``time.time()`` when the frame's bytes arrived) − that stamp. The C streams
are started evenly over :data:`RAMP` seconds (as users arrive, not in lock-step).

- runwire: C users, one raw WebSocket each, one ``user_message`` each (a new thread);
  tokens are read from ``partial_result`` deltas; a stream is complete when its deltas
  concatenate to exactly tokens 0…99 in order.
- LangGraph: the ``chat`` graph (``ChatOpenAI`` → the same provider), one
  ``/threads/{id}/runs/stream`` request per stream with ``stream_mode: messages-tuple``;
  tokens from the ``messages`` events' chunk contents.
- The floor: :mod:`benchmarks.floor` ``paced`` (pydantic-ai alone) in its own process.

Server CPU = user + system time of the server process (and its workers) over the window
from the first request to the last stream's end, from /proc/<pid>/stat.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.common import pct
from benchmarks.frames import run_prefix, user_message
from benchmarks.rawclient import RawClient, open_raw, type_of
from benchmarks.servers import PYTHON, ROOT, cpu_seconds, pinned

LEVELS = (20, 50, 100, 200)
TOKENS = 100
RATE = 20.0
RAMP = 1.0
STREAM_TIMEOUT = 120.0
_TOKEN = re.compile(rb"(\d+)@(\d+) ")
_SSE_END = re.compile(rb"\r?\n\r?\n")


def prompt() -> str:
    return f"paced {TOKENS} {RATE:g}"


@dataclass
class StreamResult:
    """One system at one level: per-token lags and what arrived."""

    streams: int
    lags: list[float] = field(default_factory=list)
    texts: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: float = 0.0
    wall: float = 0.0
    complete: int = 0  # streams whose text is exactly tokens 0…TOKENS-1
    received: int = 0  # distinct tokens that arrived, summed over the streams
    unfinished: int = 0  # streams that had not ended when the wait timed out

    @property
    def expected(self) -> int:
        return self.streams * TOKENS

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def finish(self) -> StreamResult:
        """Count `texts` (one per stream) into `received` and `complete`."""
        want = list(range(TOKENS))
        self.received = sum(len({m[0] for m in _TOKEN.findall(t)}) for t in self.texts)
        self.complete = sum(1 for t in self.texts if _TOKEN.sub(b"", t) == b"" and
                            [int(m[0]) for m in _TOKEN.findall(t)] == want)
        return self

    def cpu_per_token_ms(self) -> float:
        """Server CPU over the window per token received; nan when streams never ended
        (the window is then the timeout, not the work)."""
        if self.unfinished:
            return float("nan")
        return 1000 * self.cpu / max(1, self.received)

    def summary(self) -> dict[str, Any]:
        return {"streams": self.streams, "p50": pct(self.lags, 50), "p99": pct(self.lags, 99),
                "max": max(self.lags, default=float("nan")), "lost": self.lost,
                "complete": self.complete, "cpu_ms_per_token": self.cpu_per_token_ms(),
                "core": self.cpu / self.wall if self.wall else float("nan"),
                "errors": self.errors[:3], "wall": self.wall}


class _Stream:
    """One runwire connection's stream: text of its ``partial_result`` deltas."""

    def __init__(self, result: StreamResult, offset: float) -> None:
        self.result, self.offset = result, offset
        self.parts: list[bytes] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_text(self, _: RawClient, payload: bytes, now: float) -> None:
        kind = type_of(payload)
        if kind == b"partial_result":
            delta = json.loads(payload)["payload"]["delta"].encode()
            self.parts.append(delta)
            wall = now + self.offset
            self.result.lags.extend(wall - int(t) / 1e6 for _, t in _TOKEN.findall(delta))
        elif kind in (b"agent_completed", b"agent_error") and not self.done.done():
            if kind == b"agent_error":
                self.result.errors.append(payload[:300].decode(errors="replace"))
            self.done.set_result(None)


async def runwire_streams(url: str, pid: int, streams: int) -> StreamResult:
    """`streams` users each start one run on the paced provider; see the module doc."""
    result = StreamResult(streams)
    offset = time.time() - time.perf_counter()
    prefix = run_prefix("stream")
    warm = _Stream(StreamResult(1), offset)  # first run: model client, pool, imports
    conn = await open_raw(url, "stream-warm", warm.on_text)
    conn.send_text(user_message("paced 2 1000", f"{prefix}-warm"))
    try:
        await asyncio.wait_for(warm.done, 30)
    except TimeoutError:
        raise TimeoutError("the warm-up run did not end within 30 s") from None
    finally:
        conn.close()
    flows = [_Stream(result, offset) for _ in range(streams)]
    try:
        conns = [await open_raw(url, f"stream-{i}", f.on_text) for i, f in enumerate(flows)]
    except TimeoutError:
        raise TimeoutError("opening the connections timed out") from None
    text = prompt()

    async def start(i: int) -> None:
        await asyncio.sleep(RAMP * i / streams)  # ok-sleep: the ramp (start times) itself
        conns[i].send_text(user_message(text, f"{prefix}-{i}"))

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    try:
        await asyncio.gather(*(start(i) for i in range(streams)))
        _, pending = await asyncio.wait([f.done for f in flows], timeout=STREAM_TIMEOUT)
        result.cpu, result.wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
        if pending:
            result.unfinished = len(pending)
            result.errors.append(f"{len(pending)} streams not ended after {STREAM_TIMEOUT:.0f}s")
    finally:
        for c in conns:
            c.close()
    result.texts = [b"".join(f.parts) for f in flows]
    return result.finish()


async def _lg_stream(http: httpx.AsyncClient, thread_id: str, delay: float,
                     result: StreamResult, offset: float) -> bytes:
    await asyncio.sleep(delay)  # ok-sleep: the ramp (start times) itself
    body = {"assistant_id": "chat", "stream_mode": ["messages-tuple"],
            "input": {"messages": [{"role": "user", "content": prompt()}]}}
    parts: list[bytes] = []
    buf = b""
    async with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as resp:
        resp.raise_for_status()
        async for chunk in resp.aiter_raw():
            wall = time.perf_counter() + offset
            events = _SSE_END.split(buf + chunk)
            buf = events.pop()
            for event in events:
                name, _, data = event.partition(b"\n")
                if name.strip() == b"event: messages" and data.startswith(b"data: "):
                    message = json.loads(data[6:])[0]
                    if message.get("type") in ("AIMessageChunk", "ai") and \
                            isinstance(message.get("content"), str):
                        delta = message["content"].encode()
                        parts.append(delta)
                        result.lags.extend(wall - int(t) / 1e6
                                           for _, t in _TOKEN.findall(delta))
                elif name.strip() == b"event: error":
                    result.errors.append(data[:300].decode(errors="replace"))
    return b"".join(parts)


async def langgraph_streams(base: str, pid: int, streams: int) -> StreamResult:
    result = StreamResult(streams)
    offset = time.time() - time.perf_counter()
    limits = httpx.Limits(max_connections=streams + 5, max_keepalive_connections=streams + 5)
    async with httpx.AsyncClient(base_url=base, timeout=STREAM_TIMEOUT, limits=limits) as http:
        async def thread() -> str:
            resp = await http.post("/threads", json={})
            resp.raise_for_status()
            return str(resp.json()["thread_id"])

        await _lg_stream(http, await thread(), 0.0, StreamResult(1), offset)  # warm-up
        threads = [await thread() for _ in range(streams)]
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        outcomes = await asyncio.gather(*(
            _lg_stream(http, t, RAMP * i / streams, result, offset)
            for i, t in enumerate(threads)), return_exceptions=True)
        result.cpu, result.wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    for out in outcomes:
        if isinstance(out, BaseException):
            result.errors.append(f"{type(out).__name__}: {out}"[:300])
            result.texts.append(b"")
        else:
            result.texts.append(out)
    return result.finish()


def floor_streams(provider_base: str, streams: int) -> StreamResult:
    """pydantic-ai alone (:mod:`benchmarks.floor`), pinned to the server core."""
    argv = pinned([str(PYTHON), "-m", "benchmarks.floor", "paced", "--base-url",
                   f"{provider_base}/v1", "--streams", str(streams), "--tokens", str(TOKENS),
                   "--rate", str(RATE), "--ramp", str(RAMP)])
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                         timeout=STREAM_TIMEOUT + 60)
    if out.returncode != 0:
        raise RuntimeError(f"floor failed: {out.stderr.strip()[-300:]}")
    data = json.loads(out.stdout)
    return StreamResult(streams, lags=data["lags"], errors=data["errors"], cpu=data["cpu"],
                        wall=data["wall"], complete=data["complete_streams"],
                        received=data["received"])


def floor_builtin(runs: int, clients: int) -> dict[str, Any]:
    """pydantic-ai alone with the builtin model (:mod:`benchmarks.floor` ``builtin``),
    pinned to the server core: ``first_text`` (s, sequential runs), ``cpu`` / ``runs``."""
    argv = pinned([str(PYTHON), "-m", "benchmarks.floor", "builtin", "--runs", str(runs),
                   "--clients", str(clients)])
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"floor failed: {out.stderr.strip()[-300:]}")
    return dict(json.loads(out.stdout))
