"""Row 4: memory per idle connection (with heartbeats).

RSS of the server process (VmRSS) after a warm-up, then with `N` idle connections held
for longer than one heartbeat interval (every connection pinged and answered): the
difference divided by `N`. runwire: `N` connections of `N / 10` users (10 each, like
browser tabs). Baseline: the plain uvicorn app holding the same number of connections
with the same ping interval.
"""

from __future__ import annotations

import asyncio

from benchmarks.common import wait_until
from benchmarks.rawclient import RawClient, open_raw
from benchmarks.servers import rss_kib

CONNECTIONS = 5000
PER_USER = 10
HEARTBEAT = 2.0
WARMUP = 100
PARALLEL = 100


async def _open(url: str, n: int, authenticated: bool) -> list[RawClient]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(i: int) -> RawClient:
        async with gate:
            return await open_raw(url, f"idle-{i // PER_USER}" if authenticated else None)

    clients = list(await asyncio.gather(*(one(i) for i in range(n))))
    if authenticated:  # accepted = connection_established arrived
        await wait_until(lambda: all(c.frames >= 1 for c in clients), 60, "established")
    return clients


async def _close(clients: list[RawClient]) -> None:
    for c in clients:
        c.close()
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in clients)), 30)


async def idle_memory(url: str, pid: int, *, authenticated: bool,
                      n: int = CONNECTIONS) -> dict[str, float]:
    """KiB per idle connection of the server `pid` serving `url`."""
    await _close(await _open(url, WARMUP, authenticated))
    before = rss_kib(pid)
    clients = await _open(url, n, authenticated)
    try:
        # Idle on purpose: two heartbeat intervals, so every connection got pings.
        await asyncio.sleep(2 * HEARTBEAT + 0.5)
        await wait_until(lambda: all(c.pings >= 1 for c in clients), 20, "heartbeats")
        after = rss_kib(pid)
        pinged = sum(1 for c in clients if c.pings >= 1)
    finally:
        await _close(clients)
    return {"connections": n, "before_kib": before, "after_kib": after,
            "per_conn_kib": (after - before) / n, "pinged": pinged}
