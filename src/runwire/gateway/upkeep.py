"""The node's loops over all of its connections (run by the supervisor, ``tasks.py``).

Each is a plain coroutine over the connection registry: the idle sweep, the refresh of
the connection slots in Redis, and the catch-up after the bus lost messages. A failure
propagates to the supervisor (logged, counted, restarted); none touches a socket itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runwire.errors import StorageUnavailable
from runwire.gateway.presence import RedisPresence
from runwire.gateway.registry import ConnectionRegistry
from runwire.protocol.codes import CloseCode
from runwire.store.reader import ThreadReader


async def sweep_idle(registry: ConnectionRegistry, timeout: float,
                     has_active_run: Callable[[str], bool]) -> None:
    """Forever: close with 1000 connections with no frame either way and no active run
    of their user for `timeout` seconds."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(min(timeout / 4, 5.0))
        cutoff = loop.time() - timeout
        for conn in registry:
            if conn.last_activity < cutoff and not has_active_run(conn.user_id):
                conn.request_close(CloseCode.NORMAL, "idle timeout")


async def refresh_presence(presence: RedisPresence, registry: ConnectionRegistry) -> None:
    """Forever: keep this node's connection slots alive in Redis."""
    while True:
        await asyncio.sleep(presence.ttl / 3)
        await presence.refresh((c.user_id, c.connection_id) for c in registry)


async def catch_up(registry: ConnectionRegistry, reader: ThreadReader) -> None:
    """After the bus lost messages (Redis outage): offer every connection what the log
    holds beyond what it was sent, for each thread it follows (the gap rule sorts it)."""
    for conn in list(registry):
        for thread_id, cursor in list(conn.cursors.items()):
            try:
                missed = await reader.events(conn.user_id, thread_id, after_seq=cursor.last,
                                             check_owner=False)
            except StorageUnavailable:
                return  # the database is down too: the clients' resumes will repair
            for env in missed:
                conn.offer(env)
