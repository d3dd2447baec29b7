"""Row 3: events/s delivered to 100 connections of one node.

runwire: one user with 100 connections (every connection of a user gets every event of
the user's threads); connection 0 keeps `IN_FLIGHT` runs going, each streaming the
builtin model's help text word by word, 5 ms apart (``RUNWIRE_BUILTIN_DELTA_DELAY``: each
word is its own ``partial_result`` event; at the 35 ms used before, 20 runs in flight
produced at most ~57k frames/s for 100 connections, so the row measured the model's pace).

Baseline: the plain uvicorn app sends the same number of frames, of the same sizes (the
sequence connection 1 received from runwire), to 100 connections.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from benchmarks.common import wait_until
from benchmarks.frames import run_prefix, user_message
from benchmarks.rawclient import RawClient, open_raw, type_of

CLIENTS = 100
RUNS = 40
IN_FLIGHT = 20
DELTA_DELAY = "0.005"
PROMPT = "hello"  # the builtin model answers with its help text (~90 word deltas)
TIMEOUT = 90.0


async def runwire_fanout(url: str, runs: int = RUNS,
                         on_connected: Callable[[], None] | None = None) -> dict[str, Any]:
    """`runs` runs streamed to `CLIENTS` connections; `on_connected` is called once they
    are all established, before the first run (the profiler starts there)."""
    completed = 0
    slots = asyncio.Semaphore(IN_FLIGHT)
    finish_at: list[float] = [0.0] * CLIENTS
    done_counts = [0] * CLIENTS

    def make_handler(index: int):  # type: ignore[no-untyped-def]
        def on_text(_: RawClient, payload: bytes, now: float) -> None:
            nonlocal completed
            if type_of(payload) == b"agent_completed":
                done_counts[index] += 1
                finish_at[index] = now
                if index == 0:
                    completed += 1
                    slots.release()
        return on_text

    clients = [await open_raw(url, "fan", make_handler(i)) for i in range(CLIENTS)]
    try:
        await wait_until(lambda: all(c.frames >= 1 for c in clients), 20, "established")
        clients[1].sizes = []
        if on_connected is not None:
            on_connected()
        base_frames = sum(c.frames for c in clients)
        prefix = run_prefix("fan")
        t0 = time.perf_counter()
        for i in range(runs):
            await asyncio.wait_for(slots.acquire(), TIMEOUT)
            clients[0].send_text(user_message(PROMPT, f"{prefix}-{i}"))
        await wait_until(lambda: all(n >= runs for n in done_counts), TIMEOUT,
                         "every connection to see every run end")
        elapsed = max(finish_at) - t0
        frames = sum(c.frames for c in clients) - base_frames
        sizes = clients[1].sizes or []
        return {"frames": frames, "seconds": elapsed, "rate": frames / elapsed,
                "sizes": sizes, "events_per_client": len(sizes),
                "mean_size": sum(sizes) / max(1, len(sizes))}
    finally:
        for c in clients:
            c.close()


async def baseline_fanout(base: str, ws_url: str, sizes: list[int]) -> dict[str, float]:
    expected = len(sizes)
    finish_at = [0.0] * CLIENTS

    def make_handler(index: int):  # type: ignore[no-untyped-def]
        def on_text(client: RawClient, _: bytes, now: float) -> None:
            if client.frames >= expected:
                finish_at[index] = now
        return on_text

    clients = [await open_raw(ws_url, None, make_handler(i)) for i in range(CLIENTS)]
    try:
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            t0 = time.perf_counter()
            resp = await http.post("/blast", content=json.dumps({"sizes": sizes}))
            resp.raise_for_status()
            await wait_until(lambda: all(c.frames >= expected for c in clients), TIMEOUT,
                             "baseline frames")
        elapsed = max(finish_at) - t0
        frames = sum(c.frames for c in clients)
        return {"frames": frames, "seconds": elapsed, "rate": frames / elapsed}
    finally:
        for c in clients:
            c.close()
