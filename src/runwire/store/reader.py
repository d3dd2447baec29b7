"""Owner-checked reads of a thread's event log (for resume, gap repair and REST)."""

from __future__ import annotations

from runwire.protocol.envelope import Envelope
from runwire.store import eventlog, repo
from runwire.store.db import Database
from runwire.store.eventlog import LogBounds


class ThreadReader:
    """Reads events of threads, each call checking the thread belongs to the user."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def bounds(self, user_id: str, thread_id: str) -> LogBounds:
        """Raises NotFound for a missing or foreign thread."""
        async with self._db.read() as session:
            await repo.get_thread(session, user_id, thread_id)
            return await eventlog.bounds(session, thread_id)

    async def events(
        self, user_id: str, thread_id: str, *, after_seq: int, before_seq: int | None = None,
        limit: int = 1000, check_owner: bool = True,
    ) -> list[Envelope]:
        async with self._db.read() as session:
            if check_owner:
                await repo.get_thread(session, user_id, thread_id)
            return await eventlog.read(
                session, user_id, thread_id, after_seq=after_seq, before_seq=before_seq,
                limit=limit,
            )
