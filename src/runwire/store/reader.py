"""Owner-checked reads of a thread's event log, messages and runs (for resume, gap
repair, REST and HTTP runs). Each call is one short read transaction; another user's
thread or run is :class:`~runwire.errors.NotFound`."""

from __future__ import annotations

from sqlalchemy import Connection

from runwire.errors import NotFound
from runwire.protocol.envelope import Envelope
from runwire.store import eventlog, repo
from runwire.store.db import Database
from runwire.store.eventlog import LogBounds
from runwire.store.models import Message, Run


class ThreadReader:
    """Reads events of threads, each call checking the thread belongs to the user (one
    query unit each: one thread hop on SQLite)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def bounds(self, user_id: str, thread_id: str) -> LogBounds:
        """Raises NotFound for a missing or foreign thread."""

        def work(conn: Connection) -> LogBounds:
            return eventlog.bounds(conn, thread_id, last=_owned_last(conn, user_id, thread_id))

        return await self._db.query(work)

    async def events(
        self, user_id: str, thread_id: str, *, after_seq: int, before_seq: int | None = None,
        limit: int = 1000, check_owner: bool = True,
    ) -> list[Envelope]:
        def work(conn: Connection) -> list[Envelope]:
            if check_owner:
                _owned_last(conn, user_id, thread_id)
            return eventlog.read(conn, user_id, thread_id, after_seq=after_seq,
                                 before_seq=before_seq, limit=limit)

        return await self._db.query(work)


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


def _owned_last(conn: Connection, user_id: str, thread_id: str) -> int:
    found = eventlog.owner_and_last(conn, thread_id)
    if found is None or found[0] != user_id:
        raise NotFound(f"thread {thread_id} not found")
    return found[1]
