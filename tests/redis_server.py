"""Redis for tests: the machine's server, or a private one on a free port for fault tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

REDIS_URL = os.environ.get("RUNWIRE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_available(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def unique_prefix() -> str:
    return f"runwire-test-{uuid.uuid4().hex[:10]}:"


class PrivateRedis:
    """A `redis-server` on a free loopback port that a test may stop and start."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_available(self.url):
            assert time.monotonic() < deadline, "private redis did not start"
            time.sleep(0.02)  # ok-sleep: waiting for another process to listen
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing is ever answered (a
        black-holed or hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
