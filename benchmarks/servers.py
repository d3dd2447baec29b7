"""Processes under test: runwire nodes, the plain-uvicorn baseline, the LangGraph dev server.

Every process is started in its own process group, pinned to the server core with
``taskset`` when available, waited for by polling a readiness URL (never a sleep), and
stopped with SIGTERM then SIGKILL of the whole group when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RUNWIRE = ROOT / ".venv" / "bin" / "runwire"
PYTHON = ROOT / ".venv" / "bin" / "python"
LANGGRAPH = BENCH / ".venv-langgraph" / "bin" / "langgraph"
SERVER_CORE = "0"
CLIENT_CORE = "1"
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
STARTUP_TIMEOUT = 60.0


def taskset_available() -> bool:
    if os.environ.get("BENCH_NO_PIN"):
        return False
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(argv: list[str], core: str | None = SERVER_CORE) -> list[str]:
    """`argv` run on `core` (None: on every core, unpinned)."""
    return ["taskset", "-c", core, *argv] if core is not None and taskset_available() \
        else argv


@contextlib.contextmanager
def unpinned_self() -> Iterator[None]:
    """Let this load generator use every core for a while (the `--workers` row)."""
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_self() -> bool:
    """Pin this (load generator) process to the client core; False when impossible."""
    if not taskset_available() or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (a ``--workers``
    supervisor and its workers), from /proc/<pid>/stat (clock-tick resolution)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            todo += _children(current)
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Server:
    """A started server process: its pid (the Python process), port and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        """The pid of the server's Python process (taskset execs in place)."""
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _wait_ready(server: Server, path: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n"
                                   f"{server.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.base + path).status_code == 200:
                    return
            time.sleep(0.05)  # polling interval of the readiness probe, not a wait for it
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f}s:\n{server.tail()}")


def _wait_workers(server: Server, workers: int, timeout: float = STARTUP_TIMEOUT) -> None:
    """Wait until `workers` distinct node ids answer ``/readyz`` (each worker listens once
    it has started; a new TCP connection per probe, so the kernel spreads them)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise RuntimeError(f"{server.name}: only workers {sorted(seen)} ready:\n"
                               f"{server.tail()}")
        with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=2.0) as client:
            resp = client.get(server.base + "/readyz")
            if resp.status_code == 200:
                seen.add(resp.json()["node_id"])


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def process(name: str, argv: list[str], env: Mapping[str, str], ready_path: str, port: int,
            *, cwd: Path = ROOT, logdir: Path, core: str | None = SERVER_CORE
            ) -> Iterator[Server]:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(pinned(argv, core), env={**os.environ, **env}, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, proc, port, log)
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        _stop(proc)


def runwire_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "RUNWIRE_DATA_DIR": str(data_dir),
        "RUNWIRE_JWT_SECRET": SECRET,
        "RUNWIRE_BUILTIN_DELTA_DELAY": "0",
        "RUNWIRE_MAX_CONNECTIONS_PER_USER": "20000",
        "RUNWIRE_RATE_LIMIT_MESSAGES": "1000000/minute",
        "RUNWIRE_RATE_LIMIT_FRAMES": "1000000/minute",
        "RUNWIRE_MAX_CONCURRENT_AGENTS": "50",
        "RUNWIRE_OUTBOUND_QUEUE_SIZE": "10000",
        "RUNWIRE_LOG_LEVEL": "WARNING",
        "RUNWIRE_LOG_FORMAT": "json",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def runwire(name: str, logdir: Path, *, workers: int = 1, core: str | None = SERVER_CORE,
            **settings: str) -> Iterator[Server]:
    """One ``runwire serve`` node with a fresh data dir (SQLite unless a URL is given);
    `workers` > 1 starts ``--workers N`` (its pid is the supervisor's)."""
    with tempfile.TemporaryDirectory(prefix=f"runwire-bench-{name}-") as data:
        port = free_port()
        argv = [str(RUNWIRE), "serve", "--host", "127.0.0.1", "--port", str(port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        with process(name, argv, runwire_env(Path(data), **settings), "/readyz", port,
                     logdir=logdir, core=core) as server:
            if workers > 1:
                _wait_workers(server, workers)
            yield server


@contextlib.contextmanager
def baseline(name: str, logdir: Path, *, ping_interval: float = 30.0) -> Iterator[Server]:
    """The plain uvicorn + websockets app (:mod:`benchmarks.baseline_app`)."""
    port = free_port()
    argv = [str(PYTHON), "-m", "benchmarks.baseline_app", "--port", str(port),
            "--ping-interval", str(ping_interval)]
    with process(name, argv, {}, "/ready", port, logdir=logdir) as server:
        yield server


LANGGRAPH_ENV = {
    # Looked up in langgraph_cli/analytics.py, langgraph_api/cli.py and config: no
    # analytics, no version check, no LangSmith tracing; without a license key the
    # metadata beacon loop does not start.
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "DO_NOT_TRACK": "1",
    "LOG_LEVEL": "WARNING",
}


def langgraph_missing() -> str | None:
    """Why the LangGraph peer can't run, or None."""
    if not LANGGRAPH.exists():
        return f"{LANGGRAPH.relative_to(ROOT)} missing (make bench installs it)"
    return None


@contextlib.contextmanager
def langgraph(logdir: Path, *, jobs: int = 10, **env: str) -> Iterator[Server]:
    """``langgraph dev`` running at most `jobs` runs at once; `env` adds variables (the
    streaming peer's ``OPENAI_BASE_URL``)."""
    port = free_port()
    argv = [str(LANGGRAPH), "dev", "--no-browser", "--port", str(port), "--no-reload",
            "--host", "127.0.0.1", "--n-jobs-per-worker", str(jobs)]
    # Run from a temp copy: the dev server persists its state in ./.langgraph_api.
    with tempfile.TemporaryDirectory(prefix="runwire-bench-langgraph-") as tmp:
        for name in ("graph.py", "chat.py", "langgraph.json"):
            shutil.copy(BENCH / "langgraph" / name, tmp)
        with process("langgraph", argv, {**LANGGRAPH_ENV, **env}, "/ok", port,
                     cwd=Path(tmp), logdir=logdir) as server:
            yield server


@contextlib.contextmanager
def provider(logdir: Path, *, tokens: int, rate: float,
             core: str | None = CLIENT_CORE) -> Iterator[Server]:
    """The paced fake OpenAI-compatible provider (``tests/fake_openai.py``), on the load
    generator's core: every unscripted prompt streams `tokens` tokens at `rate`/s."""
    port = free_port()
    argv = [str(PYTHON), "-m", "tests.fake_openai", "--port", str(port),
            "--tokens", str(tokens), "--rate", str(rate)]
    with process("provider", argv, {}, "/ready", port, logdir=logdir, core=core) as server:
        yield server


def postgres_database(name: str) -> contextlib.AbstractContextManager[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""

    @contextlib.contextmanager
    def manage() -> Iterator[str]:
        psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
        subprocess.run([*psql, f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            subprocess.run([*psql, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                           check=False, capture_output=True)

    return manage()


def service_up(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def python_version() -> str:
    return sys.version.split()[0]
