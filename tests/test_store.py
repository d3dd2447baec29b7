"""Storage: migrations, gapless seq allocation, atomic transactions, retention."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runwire.errors import NotFound, StorageUnavailable
from runwire.protocol.envelope import utc_now
from runwire.store import eventlog, repo, runqueue, search
from runwire.store.db import Database
from runwire.store.eventlog import NewEvent
from runwire.store.models import Base, Event, Message, Run

from .conftest import missing_service
from .pg import PG_HOST, fresh_database, pg_available


@pytest.fixture
async def db(empty_db: Database) -> Database:
    """The same tests on the embedded SQLite file and on a real PostgreSQL, migrated."""
    await empty_db.migrate()
    return empty_db


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from runwire.store.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


@pytest.mark.postgres
async def test_nodes_migrating_at_once_migrate_once() -> None:
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    async with fresh_database() as url:
        nodes = [Database(url) for _ in range(4)]
        await asyncio.gather(*(n.migrate() for n in nodes))
        async with nodes[0].read() as s:
            versions = list(await s.scalars(text("SELECT version_num FROM alembic_version")))
        assert versions == [head_revision()]
        for n in nodes:
            await n.aclose()


async def test_migrations_create_exactly_the_models_tables_and_columns(db: Database) -> None:
    async with db.engine.connect() as conn:
        def shape(sync_conn: object) -> dict[str, set[str]]:
            insp = inspect(sync_conn)
            return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()
                    if t != "alembic_version" and not search.is_index_table(t)}

        migrated = await conn.run_sync(shape)
    declared = {t.name: {c.name for c in t.columns} for t in Base.metadata.sorted_tables}
    assert migrated == declared


async def test_migrate_twice_is_a_no_op(db: Database) -> None:
    await db.migrate()
    assert await db.ping()


async def test_concurrent_appends_get_gapless_unique_seqs(db: Database) -> None:
    async with db.write() as s:
        thread = await repo.create_thread(s, "u", "t")

    async def writer(n: int) -> None:
        for i in range(10):
            events = [NewEvent("agent_thinking", {"n": n, "i": i})] * (1 + i % 3)
            await db.transaction(lambda c, ev=events: eventlog.append(c, "u", thread.id, ev))

    await asyncio.gather(*(writer(n) for n in range(5)))
    async with db.read() as s:
        seqs = list(await s.scalars(select(Event.seq).where(Event.thread_id == thread.id).order_by(Event.seq)))
    bounds = await db.query(lambda c: eventlog.bounds(c, thread.id))
    assert seqs == list(range(1, len(seqs) + 1))
    assert bounds.last == len(seqs) == 5 * sum(1 + i % 3 for i in range(10))


async def test_one_allocation_for_many_threads_is_gapless_and_skips_a_deleted_thread(
        db: Database) -> None:
    """The node's writer reserves seqs for every thread of a batch at once, while other
    transactions append to the same threads."""
    async with db.write() as s:
        threads = [(await repo.create_thread(s, "u", f"t{i}")).id for i in range(6)]
    gone = "no-such-thread"

    async def batch(k: int) -> dict[str, int]:
        counts = {t: 1 + (i + k) % 3 for i, t in enumerate(threads)} | {gone: 2}
        return await db.transaction(lambda c: eventlog.allocate_many(c, counts, utc_now()))

    async def single(k: int) -> int:
        events = [NewEvent("agent_thinking", {"k": k})]
        envelopes = await db.transaction(
            lambda c: eventlog.append(c, "u", threads[k % 6], events))
        return envelopes[0].seq

    answers, singles = await asyncio.gather(asyncio.gather(*(batch(k) for k in range(8))),
                                            asyncio.gather(*(single(k) for k in range(12))))
    assert all(set(a) == set(threads) for a in answers)  # the deleted thread is left out
    for i, thread in enumerate(threads):
        seqs = [seq for k, seq in enumerate(singles) if k % 6 == i]
        for k, answer in enumerate(answers):
            n = 1 + (i + k) % 3
            seqs += range(answer[thread] - n + 1, answer[thread] + 1)
        bounds = await db.query(lambda c, t=thread: eventlog.bounds(c, t))
        assert sorted(seqs) == list(range(1, bounds.last + 1))  # no seq twice, none skipped


async def test_a_failed_transaction_leaves_no_message_run_or_seq(db: Database) -> None:
    async with db.write() as s:
        thread = await repo.create_thread(s, "u", "t")
        await repo.add_message(s, user_id="u", thread_id=thread.id, message_id="m1", role="user",
                               content="first", run_id=None)
    def message_run_and_event_with_a_duplicate_id(c: Connection) -> None:
        eventlog.append(c, "u", thread.id, [NewEvent("message_created", {})])
        runqueue.enqueue(c, user_id="u", thread_id=thread.id, message_id="m1", resend=False,
                         content="dup", agent="supervisor", request={}, reject_if_busy=False)

    with pytest.raises(IntegrityError):
        await db.transaction(message_run_and_event_with_a_duplicate_id)
    async with db.read() as s:
        assert len(list(await s.scalars(select(Run)))) == 0
        assert len(list(await s.scalars(select(Message)))) == 1
    assert (await db.query(lambda c: eventlog.bounds(c, thread.id))).last == 0


async def test_owner_scoping_hides_other_users_threads(db: Database) -> None:
    async with db.write() as s:
        thread = await repo.create_thread(s, "alice", "secret")
    async with db.read() as s:
        with pytest.raises(NotFound):
            await repo.get_thread(s, "bob", thread.id)
        assert await repo.list_threads(s, "bob", limit=10, cursor=None) == []


async def test_search_sees_only_the_callers_messages(db: Database) -> None:
    async with db.write() as s:
        for user in ("alice", "bob"):
            t = await repo.create_thread(s, user, "t")
            await repo.add_message(s, user_id=user, thread_id=t.id, message_id=f"{user}-1",
                                   role="user", content=f"the blue whale of {user}", run_id=None)
    async with db.read() as s:
        hits = await repo.search_messages(s, "alice", "BLUE whale", limit=10)
    assert [m.message_id for m, _ in hits] == ["alice-1"]


async def add(s: AsyncSession, user: str, thread_id: str, mid: str, content: str,
              role: str = "user") -> None:
    await repo.add_message(s, user_id=user, thread_id=thread_id, message_id=mid, role=role,
                           content=content, run_id=None)


async def test_full_text_search_stems_ranks_and_answers_snippets(db: Database) -> None:
    async with db.write() as s:
        t = await repo.create_thread(s, "alice", "Ocean trip")
        await add(s, "alice", t.id, "m1", "We talked about the budget once.")
        await add(s, "alice", t.id, "m2", "Blue whales: the budget for whale watching, the "
                  "budget for boats and the budget for food", role="assistant")
        await add(s, "alice", t.id, "m3", "nothing relevant here")
    async with db.read() as s:
        hits = await search.search_messages(s, "alice", "whale budgets", limit=10)
        assert [h.message_id for h in hits] == ["m2"]  # both words, stemmed
        assert hits[0].role == "assistant" and hits[0].thread_title == "Ocean trip"
        assert "whale" in hits[0].snippet.lower() and hits[0].created_at.tzinfo is not None
        ranked = await search.search_messages(s, "alice", "budget", limit=10)
        assert [h.message_id for h in ranked] == ["m2", "m1"]  # best match first
        second = await search.search_messages(s, "alice", "budget", limit=1, offset=1)
        assert [h.message_id for h in second] == ["m1"]
        for odd in ('" OR content:', "NEAR(", "*", "  ", "-budget", "a AND"):
            await search.search_messages(s, "alice", odd, limit=5)  # words, never syntax
        assert await search.search_messages(s, "bob", "budget", limit=10) == []


async def test_the_index_follows_updates_and_thread_deletes_in_the_same_transaction(
    db: Database,
) -> None:
    async with db.write() as s:
        t = await repo.create_thread(s, "alice", "t")
        await add(s, "alice", t.id, "m1", "a zebra crossing")
        # visible inside the transaction that wrote it
        assert [h.message_id for h in await search.search_messages(
            s, "alice", "zebra", limit=5)] == ["m1"]
        await s.execute(text("UPDATE messages SET content = 'a giraffe' WHERE message_id = 'm1'"))
        assert await search.search_messages(s, "alice", "zebra", limit=5) == []
        assert len(await search.search_messages(s, "alice", "giraffe", limit=5)) == 1
    async with db.write() as s:
        await repo.delete_thread(s, "alice", t.id)
    async with db.read() as s:
        assert await search.search_messages(s, "alice", "giraffe", limit=5) == []


async def test_migration_0004_indexes_existing_messages_and_goes_back(
    empty_db: Database,
) -> None:
    await alembic(empty_db, "upgrade", "0003")
    async with empty_db.write() as s:
        t = await repo.create_thread(s, "u", "t")
        await add(s, "u", t.id, "old", "an old message about penguins")
    await empty_db.migrate()
    async with empty_db.read() as s:
        assert [h.message_id for h in await search.search_messages(
            s, "u", "penguin", limit=5)] == ["old"]
    await alembic(empty_db, "downgrade", "0003")
    await alembic(empty_db, "upgrade", "0004")
    async with empty_db.read() as s:
        assert len(await search.search_messages(s, "u", "penguins", limit=5)) == 1


async def test_prune_keeps_a_contiguous_suffix_and_active_runs(db: Database) -> None:
    async with db.write() as s:
        thread = await repo.create_thread(s, "u", "t")
        done = await repo.create_run(s, user_id="u", thread_id=thread.id, message_id="a",
                                     agent="x", request={})
        active = await repo.create_run(s, user_id="u", thread_id=thread.id, message_id="b",
                                       agent="x", request={})

    def events(c: Connection) -> None:
        assert runqueue.end(c, done.id, "completed", node_id=None)
        eventlog.append(c, "u", thread.id, [NewEvent("agent_thinking", {}, done.id)] * 10)
        eventlog.append(c, "u", thread.id, [NewEvent("agent_thinking", {}, active.id)] * 5)

    await db.transaction(events)
    async with db.write() as s:
        deleted = await eventlog.prune(s, keep_events=3, max_age=timedelta(hours=24))
    b = await db.query(lambda c: eventlog.bounds(c, thread.id))
    assert deleted == 10 and (b.first, b.last) == (11, 15)  # the active run's 5 stay
    await db.transaction(lambda c: runqueue.end(c, active.id, "completed", node_id=None))
    async with db.write() as s:
        assert await eventlog.prune(s, keep_events=100, max_age=timedelta(0),
                                    now=utc_now() + timedelta(seconds=1)) == 5


async def test_unreachable_database_is_storage_unavailable(tmp_path: Path) -> None:
    database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none", timeout=2)
    with pytest.raises(StorageUnavailable):
        async with database.read() as s:
            await s.execute(select(1))
    assert await database.ping() is False
    await database.aclose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database without any migration applied, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'rw.db'}")
        yield database
        await database.aclose()
        return
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    async with fresh_database() as url:
        database = Database(url)
        yield database
        await database.aclose()


async def alembic(db: Database, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from runwire.store.db import MIGRATIONS_DIR

    def run(sync_conn: object) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = sync_conn
        getattr(command, action)(cfg, revision)

    async with db.engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


async def test_migration_0003_adds_model_messages_to_existing_runs_and_goes_back(
    empty_db: Database,
) -> None:
    await alembic(empty_db, "upgrade", "0002")
    now = utc_now()
    async with empty_db.write() as s:
        thread = await repo.create_thread(s, "u", "t")
        await s.execute(text(
            "INSERT INTO runs (id, thread_id, user_id, message_id, agent, status, attempt, "
            "created_at) VALUES ('r-old', :t, 'u', 'm', 'x', 'completed', 0, :now)"),
            {"t": thread.id, "now": now})
    await empty_db.migrate()
    assert await empty_db.query(lambda c: runqueue.model_messages(c, "u", ["r-old"])) == {}
    async with empty_db.read() as s:
        assert (await s.execute(text("SELECT model_messages FROM runs"))).scalar_one() is None
    await alembic(empty_db, "downgrade", "0002")
    async with empty_db.engine.connect() as conn:
        columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("runs")})
    assert "model_messages" not in columns and "cancel_requested" in columns


async def test_a_runs_model_messages_are_stored_with_its_end_and_read_by_its_owner_only(
    db: Database,
) -> None:
    big = json.dumps([{"kind": "request", "parts": [
        {"part_kind": "user-prompt", "content": "x" * 200_000}]}])
    async with db.write() as s:
        thread = await repo.create_thread(s, "alice", "t")
        run = await repo.create_run(s, user_id="alice", thread_id=thread.id, message_id="q1",
                                    agent="x", request={})
        await repo.add_message(s, user_id="alice", thread_id=thread.id, message_id="q1",
                               role="user", content="question", run_id=run.id)
        assert await s.run_sync(lambda ss: runqueue.end(
            ss.connection(), run.id, "completed", node_id=None, model_messages=big))
        # Rows of another user under the same thread id (runwire never writes them): the
        # history query must not trust the thread id alone.
        other = await repo.create_run(s, user_id="bob", thread_id=thread.id, message_id="b1",
                                      agent="x", request={})
        await repo.add_message(s, user_id="bob", thread_id=thread.id, message_id="b1",
                               role="user", content="bob's secret", run_id=other.id)
        assert await s.run_sync(lambda ss: runqueue.end(
            ss.connection(), other.id, "completed", node_id=None, model_messages="[]"))
        current = await repo.add_message(s, user_id="alice", thread_id=thread.id,
                                         message_id="q2", role="user", content="now",
                                         run_id=None)
    rows = await db.query(lambda c: runqueue.history(c, "alice", thread.id,
                                                    before_id=current.id, limit=10))
    stored = await db.query(
        lambda c: runqueue.model_messages(c, "alice", [run.id, other.id, "missing"]))
    async with db.read() as s:
        loaded = await s.get(Run, run.id)
        assert loaded is not None and "model_messages" in inspect(loaded).unloaded
    assert [(m.role, m.content, m.run_id) for m in rows] == [("user", "question", run.id)]
    assert stored == {run.id: big}
