"""``make bench``: every row of the benchmark table, against its baseline, in one run.

Usage: ``.venv/bin/python -m benchmarks.run [--quick] [--skip-langgraph] [--rows a,b]
[--levels 20,50]`` (``make bench BENCH_ARGS="--rows streaming --levels 20,50"``). Servers
run on core 0 (``taskset -c 0``), this load generator on core 1. A full run writes
``docs/performance.md`` and ``docs/performance.png`` (plot drawn by the bench venv's
matplotlib); a run of selected rows writes them to its log directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    report,
    rows_capacity,
    rows_fanout,
    rows_log,
    rows_memory,
    rows_runs,
    rows_stream,
    servers,
)
from benchmarks.common import Row, failed_row, ms, pct
from benchmarks.profile import Profile, Recorder, recording

Results = dict[str, Any]


def _row(measurement: str, target: str, build: Callable[[], Row]) -> Row:
    started = time.monotonic()
    print(f"… {measurement}", flush=True)
    try:
        row = build()
    except Exception as exc:  # a failed row is reported as failed, never dropped
        row = failed_row(measurement, target, exc)
    print(f"  {row.runwire} | {row.baseline} | {row.verdict} "
          f"({time.monotonic() - started:.0f}s)", flush=True)
    return row


def latency_rows(res: Results, logdir: Path, profiles: list[Profile], quick: bool,
                 skip_langgraph: bool) -> list[Row]:
    runs = 100 if quick else rows_runs.LATENCY_RUNS
    rw: Results = {}

    def runwire_part() -> None:
        with servers.runwire("embedded", logdir) as node:
            rw["latency"] = asyncio.run(rows_runs.runwire_latency(node.ws_url, runs))
            with recording("user_message → agent_started (sequential runs)", node.pid,
                           logdir / "profile-latency") as prof:
                asyncio.run(rows_runs.runwire_latency(node.ws_url, 100))
            profiles.extend(prof)
            rw["throughput"] = asyncio.run(rows_runs.runwire_throughput(
                node.ws_url, seconds=4.0 if quick else rows_runs.THROUGHPUT_SECONDS,
                pid=node.pid))

    runwire_part()
    try:
        floor: Results = rows_stream.floor_builtin(runs, rows_runs.THROUGHPUT_CLIENTS)
    except Exception as exc:
        floor = {"error": f"{type(exc).__name__}: {exc}"[:160]}
    lg_missing = "skipped (--skip-langgraph)" if skip_langgraph else servers.langgraph_missing()
    lg: Results = {}
    if lg_missing is None:
        try:
            with servers.langgraph(logdir) as peer:
                lg["latency"] = asyncio.run(rows_runs.langgraph_latency(
                    peer.base, 30 if quick else 100))
                lg["throughput"] = asyncio.run(rows_runs.langgraph_throughput(
                    peer.base, seconds=4.0 if quick else rows_runs.THROUGHPUT_SECONDS))
        except Exception as exc:
            lg_missing = f"failed: {type(exc).__name__}: {exc}"[:160]
    res["runwire_runs"], res["langgraph"] = rw, lg
    res["floor_builtin"] = {k: v for k, v in floor.items() if k != "first_text"}

    started, first = rw["latency"]["started"], rw["latency"]["first_partial"]
    p50, p99 = pct(started, 50), pct(started, 99)
    f50, f99 = pct(first, 50), pct(first, 99)
    if lg_missing is None:
        lt = lg["latency"]
        lg50, lg99 = pct(lt.first_event, 50), pct(lt.first_event, 99)
        base1 = (f"LangGraph first event p50 {ms(lg50)} / p99 {ms(lg99)} "
                 f"(first `values` p50 {ms(pct(lt.first_values, 50))})")
        res["langgraph_times"] = {"first_event": lt.first_event,
                                  "first_values": lt.first_values, "completed": lt.completed}
        lg_tp = lg["throughput"]
        base3 = f"LangGraph {lg_tp['rate']:,.0f} runs/s"
    else:
        base1 = base3 = f"LangGraph not installed: {lg_missing}"
    if "error" in floor:
        base2 = f"pydantic-ai alone: failed: {floor['error']}"
        floor_run = math.nan
    else:
        floor_run = floor["cpu"] / max(1, floor["runs"])
        base2 = (f"pydantic-ai alone (same model and tool, first text delta): p50 "
                 f"{ms(pct(floor['first_text'], 50))} / p99 {ms(pct(floor['first_text'], 99))}")
        base3 += (f"; pydantic-ai alone {floor_run * 1000:.1f} ms CPU per run "
                  f"({floor['runs']} runs, {rows_runs.THROUGHPUT_CLIENTS} concurrent)")
    tp = rw["throughput"]
    cpu_run = tp["cpu"] / max(1, tp["runs"])
    return [
        Row("`user_message` → `agent_started` (idle) p50 / p99 (builtin, embedded)",
            f"p50 {ms(p50)} / p99 {ms(p99)}", base1, "p50 ≤ 2 ms, p99 ≤ 10 ms",
            p50 <= 0.002 and p99 <= 0.010,
            f"{len(started)} sequential runs, each a new thread; run completed p50 "
            f"{ms(pct(rw['latency']['completed'], 50))}"),
        Row("`user_message` → first `partial_result` (idle) p50 / p99",
            f"p50 {ms(f50)} / p99 {ms(f99)}", base2, "p50 ≤ 5 ms", f50 <= 0.005,
            "same runs as the row above (the builtin model thinks, calls the calculator, "
            "then streams its answer)"),
        Row(f"builtin runs, {rows_runs.THROUGHPUT_CLIENTS} clients (closed loop, one core)",
            f"{tp['rate']:,.0f} runs/s, {cpu_run * 1000:.1f} ms server CPU per run",
            base3, "server CPU per run ≤ 10 ms; ≥ 80 runs/s on one core",
            cpu_run <= 0.010 and tp["rate"] >= 80,
            f"{tp['runs']:,} runs in {tp['seconds']:.1f} s; server at "
            f"{tp['cpu'] / tp['seconds']:.0%} of a core; runwire's own CPU per run (server "
            f"− pydantic-ai alone) {(cpu_run - floor_run) * 1000:.1f} ms"),
    ]


def fanout_row(res: Results, logdir: Path, profiles: list[Profile], quick: bool) -> Row:
    runs = 40 if quick else rows_fanout.RUNS
    with servers.runwire("fanout", logdir, RUNWIRE_BUILTIN_DELTA_DELAY=rows_fanout.DELTA_DELAY,
                         RUNWIRE_WS_COMPRESSION="false") as node:
        cpu0 = servers.cpu_seconds(node.pid)
        rw = asyncio.run(rows_fanout.runwire_fanout(node.ws_url, runs))
        rw["cpu"] = servers.cpu_seconds(node.pid) - cpu0
        recorder = Recorder("fan-out to 100 connections (after they connected)", node.pid,
                            logdir / "profile-fanout")
        try:
            asyncio.run(rows_fanout.runwire_fanout(node.ws_url, 20, recorder.start))
        finally:
            profiles.append(recorder.stop())
    with servers.baseline("baseline-fanout", logdir) as base:
        cpu0 = servers.cpu_seconds(base.pid)
        bl = asyncio.run(rows_fanout.baseline_fanout(base.base, base.ws_url, rw["sizes"]))
        bl["cpu"] = servers.cpu_seconds(base.pid) - cpu0
    share = rw["rate"] / bl["rate"]
    busy = {name: r["cpu"] / r["seconds"] for name, r in (("runwire", rw), ("baseline", bl))}
    ceiling = ("; neither server used its core: the rate is the load generator's ceiling, "
               "compare the CPU per frame" if max(busy.values()) < 0.9 else "")
    res["fanout"] = {"runwire": {k: v for k, v in rw.items() if k != "sizes"}, "baseline": bl}
    return Row("events/s delivered to 100 clients of one node",
               f"{rw['rate']:,.0f} events/s ({share:.0%} of baseline)",
               f"plain uvicorn + websockets {bl['rate']:,.0f} events/s", "≥ 50% of baseline",
               share >= 0.5,
               f"{rw['frames']:,} frames ({rw['events_per_client']:,} per connection, mean "
               f"{rw['mean_size']:.0f} B) in {rw['seconds']:.2f} s; baseline sends the same; "
               f"server CPU per frame: runwire {rw['cpu'] / rw['frames'] * 1e6:.1f} µs "
               f"(producing the events included: runs, log) at {busy['runwire']:.0%} of a "
               f"core, baseline {bl['cpu'] / bl['frames'] * 1e6:.1f} µs at "
               f"{busy['baseline']:.0%}{ceiling}")


def memory_row(res: Results, logdir: Path, quick: bool) -> Row:
    n = 1000 if quick else rows_memory.CONNECTIONS
    hb = str(rows_memory.HEARTBEAT)
    with servers.runwire("memory", logdir, RUNWIRE_WS_COMPRESSION="false",
                         RUNWIRE_HEARTBEAT_INTERVAL=hb) as node:
        rw = asyncio.run(rows_memory.idle_memory(node.ws_url, node.pid, authenticated=True, n=n))
    with servers.baseline("baseline-idle", logdir, ping_interval=rows_memory.HEARTBEAT) as base:
        bl = asyncio.run(rows_memory.idle_memory(base.ws_url, base.pid, authenticated=False, n=n))
    res["memory"] = {"runwire": rw, "baseline": bl}
    kb = rw["per_conn_kib"] * 1.024
    return Row(f"memory per idle connection ({n:,} connections, heartbeats every {hb} s)",
               f"{rw['per_conn_kib']:.1f} KiB ({kb:.1f} KB)",
               f"plain uvicorn + websockets {bl['per_conn_kib']:.1f} KiB", "≤ 40 KB", kb <= 40,
               f"permessage-deflate off (`RUNWIRE_WS_COMPRESSION=false`); RSS "
               f"{rw['before_kib'] / 1024:.0f} → {rw['after_kib'] / 1024:.0f} MiB; "
               f"{rw['pinged']:,} connections pinged")


def resume_row(res: Results, logdir: Path, profiles: list[Profile], quick: bool) -> Row:
    with servers.runwire("resume", logdir, RUNWIRE_EVENT_RETENTION_EVENTS="5000") as node:
        thread, stored = asyncio.run(rows_log.build_thread(node.ws_url))
        rw = asyncio.run(rows_log.time_resumes(node.ws_url, thread, 5 if quick else 20))
        with recording(f"resume: replay of {rw['replayed']:,} events", node.pid,
                       logdir / "profile-resume") as prof:
            asyncio.run(rows_log.time_resumes(node.ws_url, thread, 10))
        profiles.extend(prof)
    with servers.baseline("baseline-replay", logdir) as base:
        bl = asyncio.run(rows_log.baseline_replay(base.base, base.ws_url, rw.pop("sizes"),
                                                  5 if quick else 20))
    rw["stored"] = stored
    rw["baseline"] = bl
    res["resume"] = rw
    p50, worst = pct(rw["times"], 50), max(rw["times"])
    return Row(f"resume: replay of {rw['replayed']:,} stored events",
               f"p50 {ms(p50)} (max {ms(worst)})",
               f"plain uvicorn + websockets sending the same frames: p50 {ms(pct(bl, 50))}",
               "≤ 20 ms", p50 <= 0.020,
               f"`resume after_seq=0` → `replay_complete` on a fresh connection, "
               f"{len(rw['times'])} times")


def cross_node_row(res: Results, logdir: Path, quick: bool) -> Row:
    measurement = "cross-node delivery p50 / p99 (Redis bus, 2 nodes)"
    if not (servers.service_up("127.0.0.1", 5432) and servers.service_up("127.0.0.1", 6379)):
        return Row(measurement, "not run: PostgreSQL 127.0.0.1:5432 or Redis :6379 down",
                   "—", "p99 ≤ 10 ms", None)
    name = f"runwire_bench_{os.getpid()}"
    shared = {"RUNWIRE_REDIS_URL": "redis://127.0.0.1:6379/0",
              "RUNWIRE_REDIS_PREFIX": f"{name}:"}
    with servers.postgres_database(name) as url:
        shared["RUNWIRE_DATABASE_URL"] = url
        with servers.runwire("node-a", logdir, RUNWIRE_NODE_ID="bench-a", **shared) as a, \
                servers.runwire("node-b", logdir, RUNWIRE_NODE_ID="bench-b", **shared) as b:
            rw = asyncio.run(rows_log.cross_node(a.ws_url, b.ws_url, 40 if quick else
                                                 rows_log.CROSS_RUNS))
    res["cross_node"] = rw
    c50, c99 = pct(rw["cross"], 50), pct(rw["cross"], 99)
    return Row(measurement, f"p50 {ms(c50)} / p99 {ms(c99)}",
               f"in-process (2nd connection, same node) p50 {ms(pct(rw['local'], 50))} / "
               f"p99 {ms(pct(rw['local'], 99))}", "p99 ≤ 10 ms", c99 <= 0.010,
               f"{len(rw['cross']):,} events, arrival on node B − arrival on node A; from the "
               f"event's `timestamp` (set before its commit, ms resolution): on A p50 "
               f"{ms(pct(rw['stamp_a'], 50))}, on B p50 {ms(pct(rw['stamp_b'], 50))} — the "
               "PostgreSQL commit, not delivery, is most of it")


ROWS = ("latency", "fanout", "memory", "resume", "cross-node", "streaming", "workers")


def _rows(args: argparse.Namespace, res: Results, logdir: Path, profiles: list[Profile]
          ) -> list[Row]:
    chosen = set(args.rows)
    rows: list[Row] = []
    if "latency" in chosen:
        try:
            rows += latency_rows(res, logdir, profiles, args.quick, args.skip_langgraph)
        except Exception as exc:
            rows += [failed_row("`user_message` → `agent_started`", "p50 ≤ 2 ms, p99 ≤ 10 ms",
                                exc),
                     failed_row("`user_message` → first `partial_result`", "p50 ≤ 5 ms", exc),
                     failed_row("builtin runs", "≤ 10 ms CPU per run; ≥ 80 runs/s", exc)]
        for row in rows:
            print(f"  {row.runwire} | {row.baseline} | {row.verdict}", flush=True)
    if "streaming" in chosen:
        rows += _rows_of("streaming capacity (one core)", lambda: rows_capacity.stream_rows(
            res, logdir, profiles, args.levels, args.skip_langgraph))
    if "fanout" in chosen:
        rows.append(_row("events/s to 100 clients", "≥ 50% of baseline",
                         lambda: fanout_row(res, logdir, profiles, args.quick)))
    if "memory" in chosen:
        rows.append(_row("memory per idle connection", "≤ 40 KB",
                         lambda: memory_row(res, logdir, args.quick)))
    if "resume" in chosen:
        rows.append(_row("resume replay", "≤ 20 ms",
                         lambda: resume_row(res, logdir, profiles, args.quick)))
    if "cross-node" in chosen:
        rows.append(_row("cross-node delivery", "p99 ≤ 10 ms",
                         lambda: cross_node_row(res, logdir, args.quick)))
    if "workers" in chosen:
        rows += _rows_of("streaming capacity, --workers 2", lambda: rows_capacity.workers_rows(
            res, logdir, res.get("streaming", {}), tuple(args.worker_levels)))
    return rows


def _rows_of(what: str, build: Callable[[], list[Row]]) -> list[Row]:
    """Several rows from one builder; a failure is one failed row."""
    started = time.monotonic()
    print(f"… {what}", flush=True)
    try:
        rows = build()
    except Exception as exc:
        rows = [failed_row(what, "see issue 13", exc)]
    for row in rows:
        print(f"  {row.measurement}: {row.runwire} | {row.baseline} | {row.verdict}",
              flush=True)
    print(f"  ({time.monotonic() - started:.0f}s)", flush=True)
    return rows


def _csv(kind: Callable[[str], Any], allowed: tuple[Any, ...] | None = None
         ) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(map(str, allowed or ()))}")
        return values
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--skip-langgraph", action="store_true")
    parser.add_argument("--rows", type=_csv(str, ROWS), default=list(ROWS),
                        help=f"comma-separated rows to run (default all): {', '.join(ROWS)}")
    parser.add_argument("--levels", type=_csv(int), default=list(rows_stream.LEVELS),
                        help="streaming row: concurrent streams (default 20,50,100,200)")
    parser.add_argument("--worker-levels", type=_csv(int),
                        default=list(rows_capacity.WORKER_LEVELS),
                        help="--workers 2 rows: concurrent streams (default 100,200)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="where performance.md/png go (default docs/ for a full run, "
                        "the log dir when --rows selects a subset)")
    args = parser.parse_args()
    wall = time.monotonic()
    pinned = servers.pin_self()
    res: Results = {}
    profiles: list[Profile] = []
    logdir = Path(tempfile.mkdtemp(prefix="runwire-bench-logs-"))
    full = set(args.rows) == set(ROWS) and args.levels == list(rows_stream.LEVELS) and \
        args.worker_levels == list(rows_capacity.WORKER_LEVELS)
    docs: Path = args.docs or (servers.ROOT / "docs" if full else logdir)
    rows = _rows(args, res, logdir, profiles)
    elapsed = time.monotonic() - wall
    report.print_table(rows)
    data = docs / "performance.json.tmp"
    data.write_text(json.dumps(res, default=str))
    plot = servers.BENCH / ".venv" / "bin" / "python"
    png = docs / "performance.png"
    try:
        subprocess.run([str(plot), "-m", "benchmarks.plot", str(data), str(png)], check=True,
                       cwd=servers.ROOT, timeout=120)
        plotted = True
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"plot failed: {exc}")
        plotted = False
    finally:
        (logdir / "results.json").write_text(data.read_text())
        data.unlink(missing_ok=True)
    report.write_markdown(docs / "performance.md", rows, profiles, res,
                          pinned=pinned, elapsed=elapsed, quick=args.quick, plotted=plotted)
    print(f"wrote {docs / 'performance.md'} and {png} in {elapsed:.0f} s; "
          f"server logs and results.json in {logdir}")


if __name__ == "__main__":
    main()
