"""py-spy evidence: sample a server while a row's workload runs, keep the top frames.

``py-spy record --gil --format raw`` samples only the thread holding the GIL, i.e. where
the server spends CPU in Python; it writes collapsed stacks (``frame;frame;… count``).
The summary is each function's share of those samples, as leaf ("self") and anywhere on
the stack ("total"), and `busy`: GIL-holding samples / (seconds × rate).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import BENCH

PY_SPY = BENCH / ".venv" / "bin" / "py-spy"
RATE = 250
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+?)(?::\d+)?\)$")


@dataclass
class Profile:
    name: str
    samples: int = 0
    busy: float = 0.0
    self_top: list[tuple[str, float]] = field(default_factory=list)
    total_top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise(name: str, raw: str, top: int = 12, seconds: float = 0.0) -> Profile:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for f in set(frames):
            total[f] += count
    if not samples:
        return Profile(name, error="no samples")
    return Profile(name, samples, samples / (seconds * RATE) if seconds else 0.0,
                   [(f, n / samples) for f, n in own.most_common(top)],
                   [(f, n / samples) for f, n in total.most_common(top * 3)
                    if "runwire" in f or "uvicorn" in f or "websockets" in f][:top])


class Recorder:
    """py-spy sampling `pid` from :meth:`start` to :meth:`stop` (which summarises)."""

    def __init__(self, name: str, pid: int, out: Path) -> None:
        self.name, self.pid, self.raw = name, pid, out.with_suffix(".txt")
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def start(self) -> None:
        if self._proc is not None or not PY_SPY.exists():
            return
        self._proc = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(self.pid), "--rate", str(RATE), "--format",
             "raw", "--gil", "-o", str(self.raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._started = time.monotonic()

    def stop(self) -> Profile:
        proc = self._proc
        if proc is None:
            return Profile(self.name, error="py-spy not installed" if not PY_SPY.exists()
                           else "not started")
        seconds = time.monotonic() - self._started
        proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if self.raw.exists():
            return summarise(self.name, self.raw.read_text(), seconds=seconds)
        return Profile(self.name, error=err.decode(errors="replace")[-300:])


@contextlib.contextmanager
def recording(name: str, pid: int, out: Path) -> Iterator[list[Profile]]:
    """Sample `pid` for the duration of the block; the summary is appended on exit."""
    result: list[Profile] = []
    recorder = Recorder(name, pid, out)
    recorder.start()
    try:
        yield result
    finally:
        result.append(recorder.stop())
