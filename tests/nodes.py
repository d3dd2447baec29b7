"""Real `runwire serve` processes for multi-process tests (drain, crash, several nodes)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt


class Node:
    """A `runwire serve` subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, *, args: tuple[str, ...] = (), **settings: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data_dir = data_dir
        self.args = args  # more `runwire serve` options (e.g. --workers 2)
        self.env = {**os.environ, "RUNWIRE_DATA_DIR": str(data_dir),
                    **{f"RUNWIRE_{k.upper()}": str(v) for k, v in settings.items()}}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.log = data_dir / f"node-{self.port}.log"

    async def start(self) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runwire", "serve", "--port", str(self.port), *self.args],
                env=self.env, stdout=subprocess.DEVNULL, stderr=out)
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                try:
                    if (await http.get(self.base_url + "/readyz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # ok-sleep: waiting for another process to listen
        raise AssertionError(f"node did not become ready:\n{self.log.read_text()[-3000:]}")

    def token(self, user: str = "alice", ttl: int = 3600) -> str:
        secret = self.env.get("RUNWIRE_JWT_SECRET") or (self.data_dir / "jwt_secret").read_text().strip()
        now = int(time.time())
        return jwt.encode({"sub": user, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")

    def api(self, user: str = "alice") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url,
                                 headers={"Authorization": f"Bearer {self.token(user)}"})

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
