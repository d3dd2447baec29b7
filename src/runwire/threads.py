"""The thread service: every change to a user's threads goes through here.

REST (``/api/threads``), HTTP runs and the WebSocket's run service share it, so "create a
thread, then tell the user's tabs" exists once. Contracts:

- Each change is one transaction; the frame announcing it (``thread_created``,
  ``thread_updated``, ``thread_deleted``) is published only after it committed, to every
  connection of the owner (other tabs follow).
- Every call is owner-scoped: another user's thread is :class:`~runwire.errors.NotFound`.
- Deleting cancels the thread's active and queued runs first, without waiting for them;
  their terminal write then finds no thread and is dropped (the thread is gone anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runwire.bus.base import Bus
from runwire.errors import NotFound
from runwire.protocol.envelope import Envelope, encode
from runwire.store import repo, runqueue
from runwire.store.cache import HistoryCache
from runwire.store.db import Database
from runwire.store.models import Thread

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New chat"


def clean_title(title: str | None) -> str:
    """Whitespace collapsed (runs of spaces, newlines, control separators); empty → the
    default title."""
    return " ".join((title or "").split()) or DEFAULT_TITLE

# (user_id, thread_id) → how many runs were cancelled
CancelThreadRuns = Callable[[str, str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """A thread as the service hands it out (detached from any session)."""

    thread_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    last_seq: int

    @classmethod
    def of(cls, t: Thread) -> ThreadInfo:
        return cls(t.id, t.title, t.created_at, t.updated_at, t.last_seq)


async def announce(bus: Bus, user_id: str, type: str, payload: Mapping[str, Any]) -> None:
    """Publish a thread change (``thread_created`` / ``_updated`` / ``_deleted``) to every
    connection of the owner, after its transaction committed."""
    await _publish(bus, Envelope(user_id, type, encode(type, payload)))


def created(user_id: str, thread_id: str, title: str) -> Envelope:
    """The ``thread_created`` frame of a thread."""
    return Envelope(user_id, "thread_created",
                    encode("thread_created", {"thread_id": thread_id, "title": title}))


async def announce_created(bus: Bus, user_id: str, thread_id: str, title: str) -> None:
    """``thread_created`` — for a thread made by REST or AG-UI (a first message's thread is
    announced with the message's events, :mod:`runwire.runs.lifecycle`)."""
    await _publish(bus, created(user_id, thread_id, title))


async def _publish(bus: Bus, envelope: Envelope) -> None:
    """A bus failure is logged: these frames are in no thread's log; a tab that missed one
    sees the change at its next thread list."""
    try:
        await bus.publish(envelope)
    except Exception:
        log.warning("bus publish of %s failed", envelope.type, exc_info=True)


class ThreadService:
    """Creates, lists, renames and deletes a user's threads.

    Args:
        db: the database.
        bus: where the announcing frames go (to every connection of the user).
        cancel_runs: cancels a thread's active and queued runs (the run service's).
        history_cache: the read-through cache of recent messages, invalidated on delete.
    """

    def __init__(self, *, db: Database, bus: Bus, cancel_runs: CancelThreadRuns,
                 history_cache: HistoryCache) -> None:
        self._db = db
        self._bus = bus
        self._cancel_runs = cancel_runs
        self._cache = history_cache

    # ---- reads -------------------------------------------------------------------------

    async def get(self, user_id: str, thread_id: str) -> ThreadInfo:
        """Raises NotFound for a missing or foreign thread."""
        async with self._db.read() as session:
            return ThreadInfo.of(await repo.get_thread(session, user_id, thread_id))

    async def list(self, user_id: str, *, limit: int,
                   cursor: tuple[datetime, str] | None) -> list[ThreadInfo]:
        """The user's threads, most recently updated first, after keyset `cursor`."""
        async with self._db.read() as session:
            rows = await repo.list_threads(session, user_id, limit=limit, cursor=cursor)
            return [ThreadInfo.of(t) for t in rows]

    # ---- changes -----------------------------------------------------------------------

    async def create(self, user_id: str, title: str | None) -> ThreadInfo:
        """A new empty thread; announced with ``thread_created``."""
        async with self._db.write() as session:
            info = await self.create_in(session, user_id, clean_title(title))
        await self.announce_created(user_id, info)
        return info

    async def ensure(self, user_id: str, thread_id: str, *, title: str) -> bool:
        """Make sure the user has a thread with this client-chosen id (AG-UI's
        ``threadId``): create it when new (announced), True then.

        Raises:
            NotFound: the id is another user's thread.
        """
        async with self._db.read() as session:
            owner = await repo.thread_owner(session, thread_id)
        if owner == user_id:
            return False
        if owner is not None:
            raise NotFound(f"thread {thread_id} not found")
        try:
            async with self._db.write() as session:
                info = ThreadInfo.of(await repo.create_thread(
                    session, user_id, runqueue.title_from(title), thread_id=thread_id))
        except IntegrityError:  # created meanwhile (by this user, or another one)
            return await self.ensure(user_id, thread_id, title=title)
        await self.announce_created(user_id, info)
        return True

    @staticmethod
    async def create_in(session: AsyncSession, user_id: str, title: str) -> ThreadInfo:
        """Create a thread inside the caller's transaction (a first message creates its
        thread in the same transaction as the message and its run). The caller calls
        :meth:`announce_created` once that transaction committed."""
        return ThreadInfo.of(await repo.create_thread(session, user_id, title))

    async def announce_created(self, user_id: str, info: ThreadInfo) -> None:
        await announce_created(self._bus, user_id, info.thread_id, info.title)

    async def rename(self, user_id: str, thread_id: str, title: str) -> ThreadInfo:
        """Raises NotFound. Announced with ``thread_updated``."""
        async with self._db.write() as session:
            info = ThreadInfo.of(await repo.rename_thread(session, user_id, thread_id,
                                                          clean_title(title)))
        await self._publish(user_id, "thread_updated",
                            {"thread_id": info.thread_id, "title": info.title})
        return info

    async def delete(self, user_id: str, thread_id: str) -> None:
        """Cancel the thread's runs, delete it with its messages, runs and events.

        Raises:
            NotFound: missing or foreign thread (nothing is cancelled then).
        """
        await self.get(user_id, thread_id)
        await self._cancel_runs(user_id, thread_id)
        async with self._db.write() as session:
            await repo.delete_thread(session, user_id, thread_id)
        await self._cache.invalidate(thread_id)
        await self._publish(user_id, "thread_deleted", {"thread_id": thread_id})

    async def _publish(self, user_id: str, type: str, payload: Mapping[str, Any]) -> None:
        await announce(self._bus, user_id, type, payload)
