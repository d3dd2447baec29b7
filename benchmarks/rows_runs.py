"""Rows 1–2: ``user_message`` → ``agent_started`` latency and completed runs/s, for
runwire (builtin model, embedded SQLite) and the LangGraph dev server (one-node graph).

Both answer the same request, "what is 12*(3+4)?": runwire's builtin model thinks, calls
the calculator and streams the answer; the LangGraph node parses and evaluates it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from benchmarks.frames import run_prefix, user_message
from benchmarks.rawclient import RawClient, open_raw, type_of
from benchmarks.servers import cpu_seconds

PROMPT = "what is 12*(3+4)?"
LATENCY_RUNS = 200
LATENCY_WARMUP = 20
THROUGHPUT_CLIENTS = 10
THROUGHPUT_SECONDS = 8.0
THROUGHPUT_MAX_RUNS = 5000
RUN_TIMEOUT = 30.0


@dataclass
class _Waiter:
    """Futures for the next `agent_started` / first `partial_result` / `agent_completed`
    on one connection."""

    started: asyncio.Future[float] | None = None
    first: asyncio.Future[float] | None = None
    done: asyncio.Future[float] | None = None

    def on_text(self, _: RawClient, payload: bytes, now: float) -> None:
        kind = type_of(payload)
        if kind == b"agent_started" and self.started is not None and not self.started.done():
            self.started.set_result(now)
        elif kind == b"partial_result" and self.first is not None and not self.first.done():
            self.first.set_result(now)
        elif kind in (b"agent_completed", b"agent_error") and self.done is not None \
                and not self.done.done():
            self.done.set_result(now)

    def arm(self) -> tuple[asyncio.Future[float], asyncio.Future[float],
                           asyncio.Future[float]]:
        loop = asyncio.get_running_loop()
        self.started, self.first, self.done = (loop.create_future(), loop.create_future(),
                                               loop.create_future())
        return self.started, self.first, self.done


async def _one_run(client: RawClient, waiter: _Waiter, message_id: str
                   ) -> tuple[float, float, float]:
    """Seconds to (agent_started, first partial_result, agent_completed) of one run."""
    started, first, done = waiter.arm()
    t0 = time.perf_counter()
    client.send_text(user_message(PROMPT, message_id))
    async with asyncio.timeout(RUN_TIMEOUT):
        t_started = await started
        t_done = await done
    t_first = first.result() if first.done() else t_done
    return t_started - t0, t_first - t0, t_done - t0


async def runwire_latency(url: str, runs: int = LATENCY_RUNS) -> dict[str, list[float]]:
    """Sequential runs on one connection: each a new thread (as a first message is)."""
    waiter = _Waiter()
    prefix = run_prefix("lat")
    client = await open_raw(url, "latency", waiter.on_text)
    try:
        started: list[float] = []
        first: list[float] = []
        completed: list[float] = []
        for i in range(LATENCY_WARMUP + runs):
            s, f, d = await _one_run(client, waiter, f"{prefix}-{i}")
            if i >= LATENCY_WARMUP:
                started.append(s)
                first.append(f)
                completed.append(d)
        return {"started": started, "first_partial": first, "completed": completed}
    finally:
        client.close()


async def runwire_throughput(url: str, clients: int = THROUGHPUT_CLIENTS,
                             seconds: float = THROUGHPUT_SECONDS, pid: int | None = None
                             ) -> dict[str, float]:
    """`clients` users, one connection each, each running runs back to back; with `pid`,
    also the server's CPU seconds over the window (``cpu``)."""
    waiters = [_Waiter() for _ in range(clients)]
    conns = [await open_raw(url, f"tp-{i}", w.on_text) for i, w in enumerate(waiters)]
    count = 0
    stop = time.perf_counter() + seconds
    prefix = run_prefix("tp")

    async def loop(i: int) -> None:
        nonlocal count
        n = 0
        while time.perf_counter() < stop and count < THROUGHPUT_MAX_RUNS:
            await _one_run(conns[i], waiters[i], f"{prefix}-{i}-{n}")
            n += 1
            count += 1

    try:
        cpu0 = cpu_seconds(pid) if pid is not None else 0.0
        t0 = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0 if pid is not None else float("nan")
        return {"runs": count, "seconds": elapsed, "rate": count / elapsed, "cpu": cpu}
    finally:
        for c in conns:
            c.close()


# ---- LangGraph ------------------------------------------------------------------------

@dataclass
class LangGraphTimes:
    first_event: list[float] = field(default_factory=list)
    first_values: list[float] = field(default_factory=list)
    completed: list[float] = field(default_factory=list)


async def _lg_run(http: httpx.AsyncClient, thread_id: str) -> tuple[float, float, float]:
    """(first SSE event, first ``values`` event, end of stream) of one streamed run."""
    body = {"assistant_id": "agent", "input": {"content": PROMPT}, "stream_mode": ["values"]}
    t0 = time.perf_counter()
    first = values = None
    async with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            now = time.perf_counter()
            if line.startswith("event:"):
                if first is None:
                    first = now - t0
                if values is None and line.strip() == "event: values":
                    values = now - t0
    end = time.perf_counter() - t0
    return first if first is not None else end, values if values is not None else end, end


async def _lg_thread(http: httpx.AsyncClient) -> str:
    resp = await http.post("/threads", json={})
    resp.raise_for_status()
    return str(resp.json()["thread_id"])


async def langgraph_latency(base: str, runs: int = 100, warmup: int = 5) -> LangGraphTimes:
    times = LangGraphTimes()
    async with httpx.AsyncClient(base_url=base, timeout=RUN_TIMEOUT) as http:
        for i in range(warmup + runs):
            thread_id = await _lg_thread(http)  # not timed (runwire's is)
            first, values, end = await _lg_run(http, thread_id)
            if i >= warmup:
                times.first_event.append(first)
                times.first_values.append(values)
                times.completed.append(end)
    return times


async def langgraph_throughput(base: str, clients: int = THROUGHPUT_CLIENTS,
                               seconds: float = THROUGHPUT_SECONDS) -> dict[str, float]:
    count = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base, timeout=RUN_TIMEOUT, limits=limits) as http:
        async def loop() -> None:
            nonlocal count
            while time.perf_counter() < stop and count < THROUGHPUT_MAX_RUNS:
                await _lg_run(http, await _lg_thread(http))
                count += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"runs": count, "seconds": elapsed, "rate": count / elapsed}

