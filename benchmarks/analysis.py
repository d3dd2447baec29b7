"""The prose of docs/performance.md: what limits each number, with the profile evidence.

The explanations were written from the py-spy profiles this script records (the tables
under "Profiles" are regenerated on every run); the figures quoted in them come from the
same run's results.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import ms, pct
from benchmarks.profile import Profile


def _share(profiles: list[Profile], name_part: str, frame_part: str) -> str:
    """The total share of the first frame containing `frame_part` in the profile whose
    name contains `name_part`, as text ("n/a" when absent)."""
    for prof in profiles:
        if name_part in prof.name:
            for frame, share in prof.total_top:
                if frame_part in frame:
                    return f"{share:.0%}"
    return "n/a"


def _writer(profiles: list[Profile]) -> str:
    share = _share(profiles, "agent_started", "Connection.run_writer")
    return "is not among the top frames" if share == "n/a" else f"holds {share}"


def _get(res: dict[str, Any], *keys: str) -> Any:
    value: Any = res
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return value


def section(res: dict[str, Any], profiles: list[Profile]) -> list[str]:
    started = _get(res, "runwire_runs", "latency", "started")
    done = _get(res, "runwire_runs", "latency", "completed")
    rate = _get(res, "runwire_runs", "throughput", "rate")
    runs_ms = 1000 / rate if isinstance(rate, float) and rate > 0 else math.nan
    fan = _get(res, "fanout", "runwire")
    events_s = fan["rate"] / 100 if isinstance(fan, dict) else math.nan
    mem = _get(res, "memory", "runwire", "per_conn_kib")
    base_mem = _get(res, "memory", "baseline", "per_conn_kib")
    lat50 = pct(started, 50) if isinstance(started, list) else math.nan
    done50 = pct(done, 50) if isinstance(done, list) else math.nan
    lg = _get(res, "langgraph_times", "first_event")
    lg50 = pct(lg, 50) if isinstance(lg, list) else math.nan
    cross, local = _get(res, "cross_node", "cross"), _get(res, "cross_node", "local")
    cross50 = pct(cross, 50) if isinstance(cross, list) else math.nan
    local50 = pct(local, 50) if isinstance(local, list) else math.nan
    lines: list[Any] = [
        "## What limits each number",
        "",
        "The machine is shared: other engineers' test suites (pytest, Chromium) may run on "
        "the same two cores while this is measured (the streaming rows give the load "
        "average when each level started), so the pinned server may not have its core to "
        "itself; the baselines, measured in the same run, are what to compare with.",
        "",
        _Para("runwire_runs"),
        f"* **Latency** (p50 {ms(lat50)} to `agent_started`, {ms(done50)} to "
        "`agent_completed`). Before `agent_started` a message takes one short write "
        "transaction when the node has a free slot (store the message + thread + run, "
        "claim it and append `agent_started`: SQLAlchemy Core statements built once, run "
        "on the event loop, no thread hop on SQLite) and the publisher's turn; the run's "
        "first step waits until `agent_started` is out. In the profile the run pipeline "
        f"(`RunExecutor._execute`) holds {_share(profiles, 'agent_started', 'RunExecutor')} "
        "of the GIL samples, most of it pydantic-ai's agent graph; the gateway's writer "
        f"{_writer(profiles)}. LangGraph's first SSE event only comes "
        "when its background worker has picked the run from the in-memory queue, which it "
        "polls (`langgraph_runtime_inmem` `Runs.next` sleeps 0.5 s after an empty poll) — "
        f"hence its p50 of {ms(lg50)}.",
        _Para("runwire_runs"),
        f"* **Runs/s** ({rate:,.0f} runs/s, ~{runs_ms:,.0f} ms of server time per run). "
        "A builtin run is a full pydantic-ai agent graph (two model turns, a tool call: "
        "pydantic-ai alone costs the figure in the row's baseline) plus runwire's share: "
        "the accept transaction (which also claims it), its events through the node's "
        "writer (one group commit for all runs; a burst of deltas is one commit), its "
        "inputs in one small read on the loop, its end with its last events. "
        "The LangGraph peer's run is one graph node with no durable storage.",
        _Para("fanout"),
        f"* **Fan-out** ({events_s:,.0f} events/s produced, each delivered to 100 "
        "connections). runwire's events come from real runs: the server's time splits "
        "between producing them (the runs, "
        f"{_share(profiles, 'fan-out', 'RunExecutor')} of the samples: pydantic-ai, and the "
        "node's writer committing their events) and delivering them (the connection "
        "writers: one wake-up and one socket write per batch of frames built once for "
        "every connection, where the baseline writes each frame on its own). Both servers "
        "fill their core, so the CPU per frame in the row's details compares the two "
        "delivery paths; with the deltas 35 ms apart (before) the row measured the "
        "model's pace instead.",
        _Para("memory"),
        f"* **Memory** ({mem:.1f} KiB per idle connection, baseline {base_mem:.1f} KiB). "
        "The baseline's cost is uvicorn's protocol object and receive queue, the websockets "
        "state machine and the handshake headers. runwire adds its Connection (two lanes, "
        "two events), a writer task, the bus subscription and the longer handshake (the "
        "token). Measured at 45 KiB before this change; tracemalloc showed FastAPI's "
        "per-request stack (routing scope copy, two exception layers, three exit stacks, "
        "telemetry) suspended under every WebSocket for its whole life, ~8 KiB: `/ws` now "
        "goes from uvicorn straight to the gateway (`runwire.server.WebSocketFastPath`), "
        "and the reader runs in the endpoint's own task instead of a task of its own. What "
        "is left is mostly asyncio objects: every `Event`, `Queue` and `deque` holds an "
        "empty deque block (~0.7 KiB each).",
        _Para("resume"),
        "* **Resume** (1,000 events). Two parts: one query of the stored, already-encoded "
        "envelopes with the owner check (`store/reader.py`, one hop to the reader thread), "
        "and the connection writer sending 1,000 frames in batches (one socket write per "
        "wake-up); per-frame metrics are plain counters folded in at scrape time.",
        _Para("cross_node"),
        "* **Cross-node**. One Redis pub/sub round trip on loopback (`PUBLISH` from the "
        "node that committed, the other node's listener, then the same local delivery); "
        f"p50 {ms(cross50)} after the local delivery (a second local connection: "
        f"{ms(local50)}); from the event's timestamp most of the time is the PostgreSQL "
        "commit before anything is published. The tail is scheduling on a busy machine.",
        "",
        _Para("workers"),
        "* **`--workers 2`**. Two workers, the provider, the load generator, PostgreSQL and "
        "Redis share the two cores. A worker's batch is a few round trips to PostgreSQL "
        "(begin, fence, the seqs of every thread in one `UPDATE … RETURNING`, one INSERT, "
        "commit) and one Redis pipeline; each round trip waits for a turn of a busy loop. "
        "The tail of the 100-stream level is its first second, when each worker starts 50 "
        "runs (accept, claim, the first model request) while the first tokens stream.",
        "",
        "Still open: pydantic-ai runs slower per token inside the server than alone (the "
        "loop shared with the sockets and the writer; a builtin turn through runwire's "
        "`AgentRuntime` alone costs ~1 ms more than a bare `Agent`), pydantic-ai's agent "
        "graph per turn and its per-event generator layers (see the upstream notes below).",
        "",
    ]
    lines[lines.index(_Para("cross_node")) + 3:lines.index(_Para("cross_node")) + 3] = [
        _Para("streaming"), *streaming(res)]
    return _only_measured(lines, res)


class _Para(str):
    """Marks the start of a paragraph that needs `res[key]` (dropped when not measured)."""


def _only_measured(lines: list[Any], res: dict[str, Any]) -> list[str]:
    """`lines` without the paragraphs (each one string) whose results are missing."""
    out: list[str] = []
    drop_next = False
    for line in lines:
        if isinstance(line, _Para):
            drop_next = str(line) not in res
        elif drop_next:
            drop_next = False
        else:
            out.append(line)
    return out


def streaming(res: dict[str, Any]) -> list[str]:
    """The streaming-capacity paragraph, from ``res["streaming"]`` (and ``res["workers"]``)."""
    levels = res.get("streaming", {})
    parts = []
    for level, systems in levels.items():
        rw, floor, lg = (systems.get(k) for k in ("runwire", "floor", "langgraph"))
        if not isinstance(rw, dict):
            continue
        text = (f"{level} streams: runwire {rw['cpu_ms_per_token']:.2f} ms CPU/token "
                f"({rw['core']:.0%} of the core), lag p99 {ms(rw['p99'])}")
        if isinstance(floor, dict):
            text += (f"; pydantic-ai alone {floor['cpu_ms_per_token']:.2f} ms/token, so "
                     f"runwire's own share {rw['cpu_ms_per_token'] - floor['cpu_ms_per_token']:.2f}"
                     " ms")
        if isinstance(lg, dict):
            text += f"; LangGraph {lg['cpu_ms_per_token']:.2f} ms/token"
            if isinstance(floor, dict):
                text += (f" ({lg['cpu_ms_per_token'] - floor['cpu_ms_per_token']:.2f} ms above "
                         "the floor, storing no token)")
            text += f", p99 {ms(lg['p99'])}"
        parts.append(text)
    return [
        "* **Streaming capacity** (" + "; ".join(parts) + "). Per token runwire does what "
        "pydantic-ai alone does (the openai SDK's SSE parsing, pydantic-ai's part manager and "
        "event stream) plus its own share: the relay and emitter, storing the delta before "
        "sending it (the node's writer: one transaction for every run's pending events, "
        "deltas of one answer merged), encoding the envelope and the connection's write. "
        "When the server's core is full, tokens wait in the writer's buffers and lag grows "
        "with the backlog (lost counts tokens that never arrived). The "
        "profile of the streaming row is below.",
    ]


def how_to_run() -> list[str]:
    return [
        "## How to run",
        "",
        "```sh",
        "make bench                       # every row; installs what it needs (stamped)",
        "make bench BENCH_ARGS=--quick    # smaller counts, a smoke run",
        "make bench BENCH_ARGS=--skip-langgraph",
        'make bench BENCH_ARGS="--rows streaming --levels 20,50"   # selected rows only',
        "# rows: latency, fanout, memory, resume, cross-node, streaming, workers; a run of",
        "# selected rows writes its performance.md to the log directory, not docs/",
        "```",
        "",
        "`make bench` depends on `make install` (runwire's `.venv`) and creates two more "
        "venvs from their own hash-pinned locks: `benchmarks/.venv` (matplotlib, py-spy; "
        "`benchmarks/requirements.in` → `requirements.lock`) and "
        "`benchmarks/.venv-langgraph` (`langgraph-cli[inmem]`, "
        "`benchmarks/langgraph/requirements.in` → `requirements.lock`, compiled with "
        "`uv pip compile --generate-hashes --python-version 3.11`). If the LangGraph peer "
        "can't be installed, its rows say so. PostgreSQL (127.0.0.1:5432, trust auth) and "
        "Redis (127.0.0.1:6379) are needed for the cross-node and `--workers 2` rows only; "
        "the rows say so when they are down. The streaming rows start the paced fake "
        "provider (`python -m tests.fake_openai --tokens 100 --rate 20`) on the load "
        "generator's core and measure pydantic-ai alone with `benchmarks/floor.py`. "
        "Server logs and raw py-spy stacks are kept in the temp "
        "directory printed at the end.",
        "",
        "Layout: `benchmarks/run.py` (rows and orchestration), `servers.py` (processes, "
        "pinning, readiness), `rawclient.py` (a bare asyncio WebSocket client that costs "
        "the load generator little), `rows_*.py` (workloads), `baseline_app.py` (plain "
        "uvicorn + websockets), `langgraph/` (the peer graph), `profile.py` (py-spy), "
        "`report.py`/`analysis.py` (this page), `plot.py` (the PNG).",
        "",
    ]
