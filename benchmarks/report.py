"""The table on the terminal (rich) and ``docs/performance.md``."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import analysis
from benchmarks.common import Row
from benchmarks.profile import RATE, Profile
from benchmarks.servers import BENCH, python_version, taskset_available

COMMAND = "make bench"


NOTES = Path(__file__).with_name("pipeline_notes.md")


def print_table(rows: list[Row]) -> None:
    table = Table(title="runwire benchmarks", show_lines=True)
    for name in ("measurement", "runwire", "baseline (same run)", "target", ""):
        table.add_column(name, overflow="fold")
    for row in rows:
        style = {True: "green", False: "red", None: "yellow"}[row.met]
        table.add_row(row.measurement, row.runwire, row.baseline, row.target,
                      f"[{style}]{row.verdict}[/{style}]")
    Console(width=160).print(table)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {python_version()}; shared with other work (noisy)")


def _lg_version() -> str:
    lock = BENCH / "langgraph" / "requirements.lock"
    if not lock.exists():
        return "not installed"
    pins = [line.split(" ")[0] for line in lock.read_text().splitlines()
            if line.startswith(("langgraph-api==", "langgraph==", "langgraph-runtime-inmem=="))]
    return ", ".join(pins)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _profile_md(profiles: list[Profile]) -> list[str]:
    out: list[str] = []
    for prof in profiles:
        out.append(f"#### {prof.name}")
        out.append("")
        if prof.error:
            out += [f"No profile: {prof.error}", ""]
            continue
        out += [f"{prof.samples:,} samples (py-spy --gil, {RATE} Hz): the server held the GIL "
                f"{prof.busy:.0%} of the time.", "",
                "| self (leaf) | share | | on the stack (runwire/uvicorn/websockets) | share |",
                "|---|---:|---|---|---:|"]
        for i in range(max(len(prof.self_top), len(prof.total_top))):
            own = prof.self_top[i] if i < len(prof.self_top) else ("", 0.0)
            tot = prof.total_top[i] if i < len(prof.total_top) else ("", 0.0)
            out.append(f"| `{_cell(own[0])}` | {own[1]:.1%} | | `{_cell(tot[0])}` | "
                       f"{tot[1]:.1%} |" if own[0] else f"| | | | `{_cell(tot[0])}` | "
                       f"{tot[1]:.1%} |")
        out.append("")
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=BENCH.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_markdown(path: Path, rows: list[Row], profiles: list[Profile], res: dict[str, Any],
                   *, pinned: bool, elapsed: float, quick: bool, plotted: bool) -> None:
    met = [r for r in rows if r.met is True]
    missed = [r for r in rows if r.met is False]
    lines = [
        "# Performance",
        "",
        f"Measured by `{COMMAND}`{' --quick' if quick else ''} on "
        f"{time.strftime('%Y-%m-%d')} (commit `{_commit()}`), {elapsed:.0f} s. Every figure "
        "comes with a baseline measured in the same run on the same machine, because the "
        "machine is shared and absolute numbers move between runs.",
        "",
        "| measurement | runwire | baseline (same run) | target | |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {_cell(r.measurement)} | {_cell(r.runwire)} | {_cell(r.baseline)} | "
              f"{_cell(r.target)} | {r.verdict} |" for r in rows]
    lines += ["", "Details per row:", ""]
    lines += [f"* **{r.measurement}** — {r.detail}" for r in rows if r.detail]
    lines += ["", f"Targets met: {len(met)} of {len(rows)}"
              + (f"; not met: {', '.join(r.measurement for r in missed)}." if missed else "."),
              ""]
    if plotted:
        lines += ["![latency percentiles](performance.png)", ""]
    lines += [
        "## Setup",
        "",
        f"* Machine: {machine()}.",
        "* Servers pinned to core 0 with `taskset -c 0`, the load generator to core 1"
        if pinned and taskset_available() else "* No CPU pinning (taskset or a 2nd core missing)",
        "  (one process each; the load generator uses a bare asyncio WebSocket client so it "
        "costs far less than the server).",
        "* runwire: real `runwire serve` processes, builtin model with "
        "`RUNWIRE_BUILTIN_DELTA_DELAY=0`, SQLite in a temp dir (cross-node row: PostgreSQL "
        "15 + Redis on loopback, a fresh database dropped afterwards).",
        f"* LangGraph peer: `langgraph dev --no-reload --n-jobs-per-worker 10` "
        f"(in-memory runtime; {_lg_version()}), one-node graph in "
        "`benchmarks/langgraph/graph.py`, analytics, version check and tracing off.",
        "* Streaming rows: the paced fake provider (`tests/fake_openai.py`, 100 tokens at "
        "20/s per request, each stamped with its send time) on core 1 with the load "
        "generator; runwire with `RUNWIRE_MODEL=openai-chat:fake-model` and "
        "`OPENAI_BASE_URL` at it; the floor is `benchmarks/floor.py` (pydantic-ai's "
        "`Agent.run` + `event_stream_handler`, no storage or delivery) on core 0; the "
        "LangGraph peer runs `benchmarks/langgraph/chat.py` (`ChatOpenAI`, "
        "`stream_mode: messages-tuple`). `--workers 2` rows: PostgreSQL + Redis, nothing "
        "pinned.",
        "* Baseline for fan-out and memory: `benchmarks/baseline_app.py`, a bare ASGI app on "
        "uvicorn with the same `websockets-sansio` protocol, no permessage-deflate.",
        "",
    ]
    lines += analysis.section(res, profiles)
    if NOTES.exists():  # kept by hand: what changed and why (see the file)
        lines += [*NOTES.read_text().splitlines(), ""]
    lines += ["## Profiles", "", "Sampled while the row's workload ran again (not during the "
              "measured pass). py-spy's GIL mode over-charges tiny functions called very "
              "often: `asyncio.current_task` shows 20–25% self here, timed directly it is "
              "~0.8 µs a call, ~4% of the CPU (third round above).", ""]
    lines += _profile_md(profiles)
    lines += analysis.how_to_run()
    path.write_text("\n".join(lines) + "\n")
