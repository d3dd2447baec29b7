"""Shared fixtures: a real runwire server on a loopback port, tokens, clients.

The server runs in its own thread and event loop (uvicorn, the same server class as
``runwire serve``), so sync tests (Playwright) and async tests both talk to it over a
real socket.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runwire.app import Services, create_app
from runwire.auth import TokenService
from runwire.server import RunwireServer, server_config
from runwire.settings import Settings, load_settings

T = TypeVar("T")
IN_CI = os.environ.get("CI") == "true"


def missing_service(reason: str) -> None:
    """A required external service is missing: fail under CI, skip loudly elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(f"SKIPPED — {reason}")  # ok-skip: fails under CI=true (above)


class _Server(RunwireServer):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class ServerHandle:
    """A running server: its URLs, settings, tokens and (for assertions) its services."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        self.settings = settings
        self.tokens = TokenService(settings)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.app = create_app(settings)
        self._server = _Server(server_config(self.app, settings, host="127.0.0.1", port=self.port))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="runwire-test-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()/stop()
            self.error = exc
        finally:
            self._server.ready.set()
            loop.close()

    def start(self) -> ServerHandle:
        self._thread.start()
        if not self._server.ready.wait(30) or self.error is not None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        if not self._server.started:
            raise RuntimeError("server failed during start-up")
        return self

    def stop(self, timeout: float = 60) -> None:
        """Graceful shutdown (the same path as SIGTERM)."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("server did not stop")

    @property
    def services(self) -> Services:
        services = self.app.state.services
        assert isinstance(services, Services)
        return services

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30) -> T:
        """Run a coroutine on the server's loop (for setup and inspection)."""
        assert self._loop is not None
        fut: Future[T] = asyncio.run_coroutine_threadsafe(fn(), self._loop)
        return fut.result(timeout)

    def token(self, user: str, scope: str = "", ttl: float = 3600) -> str:
        return self.tokens.issue(user, scopes=scope, ttl=ttl)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test server: own data dir, no delta pacing, generous limits."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "builtin_delta_delay": 0.0,
            "rate_limit_messages": "1000/minute",
            "rate_limit_frames": "10000/minute",
            "shutdown_grace": 5.0,
        }
        base.update(overrides)
        return load_settings(**base)

    return make


@pytest.fixture
def server_factory(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., ServerHandle]]:
    started: list[ServerHandle] = []

    def make(*, replacing: ServerHandle | None = None, **overrides: Any) -> ServerHandle:
        """A new server; ``replacing=old`` stops ``old`` (gracefully, as SIGTERM does)
        and starts its successor on the same port, data and settings: a restart."""
        if replacing is not None:
            replacing.stop()
            handle = ServerHandle(replacing.settings, port=replacing.port).start()
        else:
            handle = ServerHandle(settings_factory(**overrides)).start()
        started.append(handle)
        return handle

    yield make
    for handle in started:
        if handle._thread.is_alive():
            handle.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerHandle]) -> ServerHandle:
    """A running server on the embedded default (SQLite, in-process bus, builtin model)."""
    return server_factory()
