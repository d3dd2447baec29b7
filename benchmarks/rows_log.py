"""Rows 5–6: resume replay of stored events, and cross-node delivery over Redis.

Resume: one thread with more than 1,000 stored events (runs on the same thread, one
after another), then on fresh connections ``resume after_seq=0`` → ``replay_complete``.

Cross-node: two nodes on PostgreSQL + Redis; one user with connections A1, A2 on node A
and B1 on node B; runs are submitted on A1. For every thread event: cross-node latency =
arrival on B1 − arrival on A1 (same clock: this process); the in-process baseline =
|arrival on A2 − arrival on A1|, a second local delivery. Also, from the event's own
``timestamp`` (set when it is appended, before the commit; millisecond resolution) to
its arrival on A1 and on B1.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from benchmarks.frames import run_prefix, user_message
from benchmarks.rawclient import RawClient, open_raw, type_of

RESUME_EVENTS = 1000
RESUME_REPEATS = 20
RUN_TIMEOUT = 30.0
CROSS_RUNS = 100


class _Collector:
    """Arrival times of one connection's frames: thread events by (thread, seq)."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, int], tuple[float, float]] = {}  # (perf, wall−ts)
        self.waiting: dict[bytes, asyncio.Future[dict[str, object]]] = {}
        self.replayed = 0

    def expect(self, kind: bytes) -> asyncio.Future[dict[str, object]]:
        fut: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.waiting[kind] = fut
        return fut

    def on_text(self, _: RawClient, payload: bytes, now: float) -> None:
        kind = type_of(payload)
        fut = self.waiting.get(kind)
        if b'"seq":' in payload[:400] or fut is not None:
            frame = json.loads(payload)
            if "seq" in frame:
                stamp = datetime.fromisoformat(frame["timestamp"].replace("Z", "+00:00"))
                self.arrivals[(frame["thread_id"], frame["seq"])] = (
                    now, time.time() - stamp.timestamp())
                self.replayed += 1
            if fut is not None and not fut.done():
                del self.waiting[kind]
                fut.set_result(frame)


async def _run(client: RawClient, col: _Collector, content: str, message_id: str,
               thread_id: str | None = None, others: tuple[_Collector, ...] = ()) -> str:
    ack, done = col.expect(b"message_ack"), col.expect(b"agent_completed")
    ends = [c.expect(b"agent_completed") for c in others]
    client.send_text(user_message(content, message_id, thread_id))
    async with asyncio.timeout(RUN_TIMEOUT):
        payload = (await ack)["payload"]
        await done
        for end in ends:
            await end
    assert isinstance(payload, dict)
    return str(payload["thread_id"])


async def build_thread(url: str, events: int = RESUME_EVENTS) -> tuple[str, int]:
    """A thread with at least `events` stored events: (thread id, last seq)."""
    col = _Collector()
    prefix = run_prefix("resume")
    writer = await open_raw(url, "resume", col.on_text)
    try:
        thread = await _run(writer, col, "hello", f"{prefix}-0")
        i = 1
        while max(seq for (_, seq) in col.arrivals) < events and i < 2 * events:
            await _run(writer, col, "what is 1+1?", f"{prefix}-{i}", thread)
            i += 1
        return thread, max(seq for (_, seq) in col.arrivals)
    finally:
        writer.close()


async def time_resumes(url: str, thread: str, repeats: int = RESUME_REPEATS
                       ) -> dict[str, Any]:
    """`repeats` times, on a fresh connection: resume after_seq=0 → replay_complete."""
    times: list[float] = []
    counts: list[int] = []
    sizes: list[int] = []
    for r in range(repeats):
        reader_col = _Collector()
        established = reader_col.expect(b"connection_established")
        reader = await open_raw(url, "resume", reader_col.on_text)
        try:
            await asyncio.wait_for(established, 10)
            reader.sizes = sizes = []
            done = reader_col.expect(b"replay_complete")
            t0 = time.perf_counter()
            reader.send_text(json.dumps({"type": "resume", "payload": {
                "thread_id": thread, "after_seq": 0}, "request_id": f"res-{r}"}))
            await asyncio.wait_for(done, RUN_TIMEOUT)
            times.append(time.perf_counter() - t0)
            counts.append(reader_col.replayed)
        finally:
            reader.close()
    return {"times": times, "replayed": min(counts), "sizes": sizes}


async def baseline_replay(base: str, ws_url: str, sizes: list[int], repeats: int
                          ) -> list[float]:
    """The plain uvicorn + websockets app sending frames of `sizes` to one fresh
    connection: POST /blast → the last frame, `repeats` times (nothing read from a
    database: the floor of sending the replay)."""
    import httpx

    from benchmarks.common import wait_until

    times: list[float] = []
    last = [0.0]

    def on_text(_: RawClient, __: bytes, now: float) -> None:
        last[0] = now

    async with httpx.AsyncClient(base_url=base, timeout=RUN_TIMEOUT) as http:
        for _ in range(repeats):
            client = await open_raw(ws_url, None, on_text)
            try:
                t0 = time.perf_counter()
                (await http.post("/blast", content=json.dumps({"sizes": sizes}))
                 ).raise_for_status()
                await wait_until(lambda c=client: c.frames >= len(sizes), RUN_TIMEOUT,
                                 "baseline replay frames")
                times.append(last[0] - t0)
            finally:
                client.close()
    return times


async def cross_node(url_a: str, url_b: str, runs: int = CROSS_RUNS) -> dict[str, list[float]]:
    a1, a2, b1 = _Collector(), _Collector(), _Collector()
    prefix = run_prefix("cross")
    ca1 = await open_raw(url_a, "cross", a1.on_text)
    ca2 = await open_raw(url_a, "cross", a2.on_text)
    cb1 = await open_raw(url_b, "cross", b1.on_text)
    try:
        # Redis subscriptions are made when the connection is accepted: warm up first.
        for i in range(runs + 5):
            if i == 5:
                for col in (a1, a2, b1):
                    col.arrivals.clear()
            await _run(ca1, a1, "what is 2*(3+4)?", f"{prefix}-{i}", others=(a2, b1))
    finally:
        for client in (ca1, ca2, cb1):
            client.close()
    cross, local, wall_b, wall_a = [], [], [], []
    for key, (t_a, w_a) in a1.arrivals.items():
        if key in b1.arrivals and key in a2.arrivals:
            cross.append(b1.arrivals[key][0] - t_a)
            local.append(abs(a2.arrivals[key][0] - t_a))
            wall_b.append(b1.arrivals[key][1])
            wall_a.append(w_a)
    return {"cross": cross, "local": local, "stamp_b": wall_b, "stamp_a": wall_a}
