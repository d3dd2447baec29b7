"""The database handle: engine, sessions, timeouts, failure mapping, migrations.

Every unit of work is one short transaction opened with :meth:`Database.write` or
:meth:`Database.read`; it never spans an await on a model or a tool. Failures of the
database (connection refused or lost, timeouts, pool exhausted, server shutting down or out
of resources: :func:`classify_failure`) count toward the database breaker and surface as
:class:`~runwire.errors.StorageUnavailable`. Anything else (a bad statement, data the
database refuses, a Python error) is a bug: raised as it is and never counted, so one
user's crafted input cannot open the breaker for everyone. Constraint violations stay
:class:`sqlalchemy.exc.IntegrityError` so callers can treat them as "already there".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from runwire.breaker import CircuitBreaker, CircuitOpen
from runwire.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x72756E77  # "runw": pg advisory lock so N nodes migrate once


# SQLSTATE classes of a database that is unreachable or unwell rather than of a bad
# statement: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (shutdown, statement timeout), 58 system error. Class 40 (serialization failure,
# deadlock) is worth a retry but says nothing about the database's health.
_DOWN_SQLSTATES = ("08", "53", "57", "58")
_TRANSIENT_SQLSTATES = ("40",)
_DOWN = (TimeoutError, OSError, PoolTimeout, OperationalError, InterfaceError,
         DisconnectionError)

Failure = Literal["down", "transient", "bug"]


def classify_failure(exc: BaseException) -> Failure:
    """What an exception raised in a unit of work means.

    ``down``: the database cannot serve (connection refused or lost, timeout, pool
    exhausted, shutting down): counted by the breaker, raised as StorageUnavailable.
    ``transient``: a conflict worth retrying (deadlock): StorageUnavailable, not counted.
    ``bug``: anything else (a bad statement, data the database refuses, a Python error):
    raised as it is, never counted.
    """
    if isinstance(exc, _DOWN):
        return "down"
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return "down"
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(state, str) and state.startswith(_DOWN_SQLSTATES):
            return "down"
        if isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATES):
            return "transient"
    return "bug"


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The sqlite3 connection under `conn` (same transaction), when it is one (the
    synchronous engines of :class:`Database`; not aiosqlite's). The hottest statements run
    on it directly: SQLAlchemy's execution context per statement cost more than the
    statement itself (profiles of the streaming benchmark row)."""
    driver = conn.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


def _manual_transactions(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_conn.isolation_level = None  # the driver begins nothing; `_begin_immediate` does


def _begin_immediate(conn: Connection) -> None:
    # On the driver's connection: one statement, no SQLAlchemy execution context (a
    # tenth of a one-event commit).
    driver = sqlite_driver(conn)
    if driver is None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        driver.execute("BEGIN IMMEDIATE")


class Database:
    """Owns the engine and hands out short transactions.

    Args:
        url: SQLAlchemy async URL (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).
        pool_size: connections in the pool (PostgreSQL).
        timeout: seconds one unit of work may take before it fails as storage_unavailable.
    """

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0,
                 breaker: CircuitBreaker | None = None) -> None:
        self.url = url
        self.breaker = breaker or CircuitBreaker("database", threshold=5, cooldown=2.0)
        self.timeout = timeout
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 5}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=timeout)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer: serialising write transactions in-process avoids
        # SQLITE_BUSY on lock upgrades; PostgreSQL uses row locks instead.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # Hot paths on SQLite (see `transaction`) use synchronous engines instead of
        # aiosqlite's hop per statement. Writes run on the event loop itself: a unit of work
        # is a few hundred microseconds of SQLite (WAL, synchronous=NORMAL: no fsync per
        # commit), while a hop to a thread costs several milliseconds whenever the loop is
        # busy (the thread waits for the GIL at every statement: measured 14-18 ms per
        # transaction through a thread vs 1.5 ms inline, with ten runs streaming). Reads
        # (replays of up to 1,000 events) run in one reader thread so they never stall the
        # loop. One process owns a SQLite file; several workers need PostgreSQL.
        self._sync: dict[str, Engine] = {}
        # The one connection writes go through on SQLite, kept open between transactions
        # (a connection per transaction cost a pool checkout and SQLAlchemy's set-up of a
        # Connection: a quarter of an idle commit).
        self._writer: Connection | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runwire-sqlite")
        if self.is_sqlite:
            for role in ("write", "read"):
                engine = self._sync[role] = create_engine(
                    url.replace("+aiosqlite", "+pysqlite", 1),
                    connect_args={"timeout": 5, "check_same_thread": False})
                event.listen(engine, "connect", _sqlite_pragmas)
            # The writer takes SQLite's write lock when it begins (BEGIN IMMEDIATE): its
            # checks and writes are one atomic unit, even against other processes.
            event.listen(self._sync["write"], "connect", _manual_transactions)
            event.listen(self._sync["write"], "begin", _begin_immediate)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commits on success, rolls back on any error."""
        self._check_breaker()
        try:
            async with asyncio.timeout(self.timeout):
                if self._write_lock is not None:
                    async with self._write_lock, self._sessions() as session, session.begin():
                        yield session
                else:
                    async with self._sessions() as session, session.begin():
                        yield session
        except IntegrityError:
            self.breaker.success()  # the database answered
            raise
        except Exception as exc:
            self._failed(exc, "write")
        self.breaker.success()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """One read-only unit of work."""
        self._check_breaker()
        try:
            async with asyncio.timeout(self.timeout), self._sessions() as session:
                yield session
        except Exception as exc:
            self._failed(exc, "read")
        self.breaker.success()

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` (SQLAlchemy Core on a synchronous connection) as one write
        transaction: committed when it returns, rolled back when it raises.

        On SQLite the whole transaction runs synchronously on the event loop (no hop, see
        ``__init__``); on PostgreSQL on an asyncpg connection through ``run_sync``. `work`
        must not block on anything but the database.

        Raises:
            StorageUnavailable: the database failed or timed out; nothing was written.
            IntegrityError: a constraint was violated (nothing was written).
        """
        return await self._unit(work, write=True)

    async def query(self, work: Callable[[Connection], T], *, small: bool = False) -> T:
        """Like :meth:`transaction` for reads: nothing is committed; on SQLite it runs in
        the reader thread (one hop), so a long read never stalls the event loop — unless
        it is `small` (bounded, a few rows: a run's inputs), which runs on the loop: the hop
        and the GIL hand-offs cost more than such a read."""
        return await self._unit(work, write=False, inline=small)

    async def _unit(self, work: Callable[[Connection], T], *, write: bool,
                    inline: bool = False) -> T:
        self._check_breaker()
        kind = "write" if write else "read"
        try:
            async with asyncio.timeout(self.timeout):
                if not self._sync:
                    async with (self.engine.begin() if write else self.engine.connect()) as conn:
                        result = await conn.run_sync(work)
                elif write:
                    assert self._write_lock is not None
                    async with self._write_lock:
                        result = self._run_write(work)  # on the loop: see __init__
                elif inline:
                    result = self._run_read(work)
                else:
                    # in the caller's context: its trace span is the parent of the query's
                    context = contextvars.copy_context()
                    result = await asyncio.get_running_loop().run_in_executor(
                        self._reader, context.run, self._run_read, work)
        except IntegrityError:
            self.breaker.success()  # the database answered
            raise
        except Exception as exc:
            self._failed(exc, kind)
        self.breaker.success()
        return result

    def _failed(self, exc: Exception, kind: str) -> NoReturn:
        """Raise what a failed unit of work means (see :func:`classify_failure`): a bug as
        it is, an unavailable database as StorageUnavailable (counted by the breaker when
        it is down, not when it was a transient conflict)."""
        failure = classify_failure(exc)
        if failure == "bug":
            raise exc
        if failure == "down":
            self.breaker.failure()
        log.warning("database %s failed: %s", kind, type(exc).__name__)
        raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    def engines(self) -> list[AsyncEngine | Engine]:
        """Every engine this database runs statements on (tracing instruments each)."""
        return [self.engine, *self._sync.values()]

    def _run_write(self, work: Callable[[Connection], T]) -> T:
        conn = self._writer
        if conn is None or conn.invalidated:
            conn = self._writer = self._sync["write"].connect()
        try:
            with conn.begin():
                return work(conn)
        except IntegrityError:
            raise
        except BaseException:
            # whatever failed may have left the connection unusable: a fresh one next time
            self._writer = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    def _run_read(self, work: Callable[[Connection], T]) -> T:
        with self._sync["read"].connect() as conn:
            return work(conn)

    def _check_breaker(self) -> None:
        try:
            self.breaker.check()
        except CircuitOpen as exc:
            raise StorageUnavailable(str(exc)) from None

    async def ping(self) -> bool:
        """True when a trivial query succeeds within the timeout (bypasses the breaker,
        so a recovered database is noticed)."""
        try:
            async with asyncio.timeout(self.timeout), self._sessions() as session:
                await session.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError, TimeoutError, SQLAlchemyError):
            return False
        self.breaker.success()
        return True

    def pool_status(self) -> dict[str, int]:
        """Connections checked out and overflow (for metrics)."""
        pool = self.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        overflow = getattr(pool, "overflow", None)
        return {
            "in_use": int(checked_out()) if callable(checked_out) else 0,
            "overflow": max(0, int(overflow())) if callable(overflow) else 0,
        }

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic), once across nodes."""
        from alembic import command
        from alembic.config import Config

        def upgrade(sync_conn: Any) -> None:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                await conn.run_sync(upgrade)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        await self.engine.dispose()
        self._reader.shutdown(wait=True)
        for engine in self._sync.values():
            engine.dispose()
