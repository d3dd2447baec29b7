"""Owner-checked reads of a thread's event log, messages and runs (for resume, gap
repair, REST and HTTP runs). Each call is one short read transaction; another user's
thread or run is :class:`~runwire.errors.NotFound`."""

from __future__ import annotations

from runwire.protocol.envelope import Envelope
from runwire.store import eventlog, repo
from runwire.store.db import Database
from runwire.store.eventlog import LogBounds
from runwire.store.models import Message, Run


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

    async def messages(self, user_id: str, thread_id: str, *, limit: int,
                       before: int | None) -> list[Message]:
        """The newest `limit` messages before internal id `before`, oldest first."""
        async with self._db.read() as session:
            return await repo.list_messages(session, user_id, thread_id, limit=limit,
                                            before=before)

    async def run(self, user_id: str, run_id: str) -> Run:
        """Raises NotFound for a missing or foreign run."""
        async with self._db.read() as session:
            return await repo.get_run(session, user_id, run_id)

    async def answer(self, user_id: str, run_id: str) -> str | None:
        """The final assistant text of a run (its last assistant message), if any."""
        async with self._db.read() as session:
            return await repo.run_answer(session, user_id, run_id)
