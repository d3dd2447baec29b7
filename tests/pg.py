"""PostgreSQL for tests: a fresh database on the machine's server, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

PG_HOST = os.environ.get("RUNWIRE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def pg_available() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_HOST, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create an empty database; yields its SQLAlchemy URL; drops it afterwards."""
    import asyncpg

    name = f"runwire_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_HOST, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_HOST.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_HOST, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port (initdb + pg_ctl as the postgres
    user — initdb refuses root), for tests that stop and start the database."""

    def __init__(self) -> None:
        import glob
        import shutil
        import socket
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins or shutil.which("runuser") is None:
            raise FileNotFoundError("pg_ctl/runuser")
        self.bin = bins[-1].rsplit("/", 1)[0]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="runwire-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        self._run(f"{self.bin}/initdb", "-D", self.dir, "-A", "trust", "-U", "postgres")
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        import subprocess

        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> PrivatePostgres:
        self._run(f"{self.bin}/pg_ctl", "-D", self.dir, "-w", "-l", f"{self.dir}/log",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        return self

    def stop(self) -> None:
        self._run(f"{self.bin}/pg_ctl", "-D", self.dir, "-w", "-m", "immediate", "stop")

    def _pids(self) -> list[int]:
        """The postmaster of this cluster and its children (never another cluster's)."""
        import subprocess

        with open(f"{self.dir}/postmaster.pid") as f:
            postmaster = int(f.readline())
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(postmaster)],
                                  capture_output=True, text=True, check=False).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """SIGSTOP the whole cluster: connections are accepted (the kernel's backlog) but no
        query is ever answered — a hung or black-holed database."""
        import signal

        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        import signal

        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        import contextlib
        import shutil
        import subprocess

        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
