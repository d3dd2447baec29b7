"""``runwire serve --workers N``: N server processes on one port, for all cores of a machine.

Each worker is an ordinary ``runwire serve`` process (its own event loop, database pool
and bus connection) with its own node id, ``<node_id>-w<i>``, listening on the same
port with ``SO_REUSEPORT``: the kernel spreads new connections over the workers. They
share state the way separate nodes do — PostgreSQL for runs and events, Redis for live
delivery — so a user's tabs may land on different workers and still see each other's runs.

Requirements (:func:`workers_problem`): ``RUNWIRE_REDIS_URL`` (without it a worker's
events would reach only its own connections) and PostgreSQL (SQLite's one-writer rule is
enforced by a lock inside one process; several processes would contend on the file).

The supervisor (this module, the ``runwire serve`` process itself) forwards SIGTERM/SIGINT
to every worker once (each drains as a single node does) and waits for them. A worker that
exits on its own is restarted with a new node id (``…-w<i>r<k>``: its predecessor's runs
are recovered like a lost node's) unless it exited before it was ready (it reports
readiness over a pipe once uvicorn listens), in which case all workers are stopped and the
supervisor exits with that worker's code.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import uvicorn

from runwire.server import RunwireServer
from runwire.settings import Settings

_PR_SET_PDEATHSIG = 1


def workers_problem(settings: Settings, workers: int) -> str | None:
    """Why `workers` processes can't serve with `settings` (one line), or None."""
    if workers <= 1:
        return None
    if settings.redis_url is None:
        return (f"--workers {workers} needs RUNWIRE_REDIS_URL: workers deliver each other's "
                "events over Redis")
    if not settings.resolved_database_url.startswith("postgresql"):
        return (f"--workers {workers} needs PostgreSQL (RUNWIRE_DATABASE_URL="
                "postgresql+asyncpg://…): SQLite allows one writing process")
    return None


def worker_node_id(node_id: str, index: int, restarts: int = 0) -> str:
    """The node id of worker `index` (and of its `restarts`-th replacement)."""
    return f"{node_id}-w{index}" + (f"r{restarts}" if restarts else "")


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other workers may also bind.

    Not listening yet: uvicorn calls ``listen`` once the app has started, and until then
    the kernel sends new connections only to workers that listen (a worker starting or
    restarting never holds connections it can't serve yet)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies (even by kill -9), so
    no worker keeps serving without it (Linux; elsewhere a no-op)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerServer(RunwireServer):
    """A worker's server: after start-up (app started, socket served) it writes one byte to
    `ready_fd`, the supervisor's pipe."""

    def __init__(self, config: uvicorn.Config, ready_fd: int | None) -> None:
        super().__init__(config, freeze_gc=True)
        self._ready_fd = ready_fd

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._ready_fd is not None and not self.should_exit:
            with contextlib.suppress(OSError):
                os.write(self._ready_fd, b"r")
                os.close(self._ready_fd)
            self._ready_fd = None


@dataclass
class _Worker:
    index: int
    restarts: int
    proc: subprocess.Popen[bytes]
    ready: int  # read end of the worker's readiness pipe

    def was_ready(self) -> bool:
        try:
            return os.read(self.ready, 1) == b"r"
        except BlockingIOError:
            return False
        finally:
            os.close(self.ready)


class Supervisor:
    """Starts `workers` worker processes of ``runwire serve`` and keeps them running.

    Args:
        argv: the worker command (``python -m runwire serve --host … --port … --reuse-port``);
            ``--ready-fd <fd>`` is appended (the write end of its readiness pipe).
        node_id: the deployment's node id; worker i gets :func:`worker_node_id`.
        workers: how many processes.
    """

    def __init__(self, argv: Sequence[str], node_id: str, workers: int) -> None:
        self._argv = list(argv)
        self._node_id = node_id
        self._count = workers
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._exit_code = 0

    def _spawn(self, index: int, restarts: int) -> _Worker:
        env = {**os.environ, "RUNWIRE_NODE_ID": worker_node_id(self._node_id, index, restarts)}
        read, write = os.pipe()
        os.set_blocking(read, False)
        # Own process group: a terminal's Ctrl-C reaches only the supervisor, which sends
        # each worker one SIGTERM (a second signal would make uvicorn skip the drain).
        try:
            proc = subprocess.Popen([*self._argv, "--ready-fd", str(write)], env=env,
                                    start_new_session=True, pass_fds=(write,),
                                    preexec_fn=_die_with_parent)
        finally:
            os.close(write)
        return _Worker(index, restarts, proc, read)

    def _stop_all(self, *_: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        for worker in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (then 0 once every worker has drained) or a worker's
        start-up failure (then that worker's exit code)."""

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            self._stop_all()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self._count):
                self._workers[i] = self._spawn(i, 0)
            self._reap()
        finally:
            self._stop_all()
            for worker in self._workers.values():
                with contextlib.suppress(ChildProcessError):
                    worker.proc.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._exit_code

    def _reap(self) -> None:
        by_pid = {w.proc.pid: w for w in self._workers.values()}
        while by_pid:
            try:
                pid, status = os.waitpid(-1, 0)  # signals run their handler and resume this
            except ChildProcessError:
                return
            worker = by_pid.pop(pid, None)
            if worker is None:
                continue
            worker.proc.returncode = os.waitstatus_to_exitcode(status)
            code = worker.proc.returncode
            was_ready = worker.was_ready()
            if self._stopping:
                continue
            if not was_ready:
                print(f"runwire: worker {worker.index} failed to start (exit {code}); "
                      "stopping", file=sys.stderr, flush=True)
                self._exit_code = code if code > 0 else 1
                self._stop_all()
                continue
            print(f"runwire: worker {worker.index} exited ({code}); restarting it",
                  file=sys.stderr, flush=True)
            replacement = self._spawn(worker.index, worker.restarts + 1)
            self._workers[worker.index] = replacement
            by_pid[replacement.proc.pid] = replacement
