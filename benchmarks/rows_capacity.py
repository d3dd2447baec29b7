"""The streaming-capacity rows of the table (issue 13's bar), from :mod:`rows_stream`.

One core: for each level C, pydantic-ai alone (the floor), a fresh ``runwire serve``
(SQLite, ``openai-chat`` on the paced provider) and the LangGraph peer, each alone on the
server core, the provider and the load generator on the other core.

``--workers 2``: ``runwire serve --workers 2`` on PostgreSQL + Redis, nothing pinned
(server, provider and load generator share both cores), at 100 and 200 streams.
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.common import Row, ms
from benchmarks.profile import Profile, recording
from benchmarks.rows_stream import (
    RATE,
    TOKENS,
    StreamResult,
    floor_streams,
    langgraph_streams,
    runwire_streams,
)

Results = dict[str, Any]
OWN_CPU_TARGET_MS = 0.1
LAG_P99_TARGET = 0.100
WORKER_LEVELS = (100, 200)


def _provider_env(provider: servers.Server) -> dict[str, str]:
    return {"RUNWIRE_MODEL": "openai-chat:fake-model",
            "OPENAI_BASE_URL": f"{provider.base}/v1",
            "OPENAI_API_KEY": "sk-bench-not-a-real-key"}


def _cell(res: StreamResult | None) -> str:
    if res is None:
        return "n/a"
    s = res.summary()
    cpu = "CPU/token n/a (streams did not end)" if math.isnan(s["cpu_ms_per_token"]) else \
        f"{s['cpu_ms_per_token']:.2f} ms CPU/token"
    text = (f"lag p50 {ms(s['p50'])} / p99 {ms(s['p99'])}, {res.lost:,} lost, "
            f"{cpu} ({s['core']:.0%} of a core)")
    if res.errors:
        text += f"; {len(res.errors)} errors, e.g. {res.errors[0][:80]}"
    return text


def _runwire_at(level: int, logdir: Path, provider: servers.Server, profiles: list[Profile],
                profile: bool) -> StreamResult:
    with servers.runwire(f"stream-{level}", logdir, RUNWIRE_WS_COMPRESSION="false",
                         RUNWIRE_MAX_CONCURRENT_AGENTS=str(max(level, 50)),
                         **_provider_env(provider)) as node:
        result = asyncio.run(runwire_streams(node.ws_url, node.pid, level))
        if profile:  # the same workload again, sampled; its failure keeps the result
            name = f"streaming: {level} streams × {RATE:g} tokens/s (one core)"
            prof: list[Profile] = []
            try:
                with recording(name, node.pid, logdir / f"profile-stream-{level}") as prof:
                    asyncio.run(runwire_streams(node.ws_url, node.pid, level))
            except Exception as exc:
                prof.append(Profile(name, error=f"the profiled pass failed: "
                                    f"{type(exc).__name__}: {exc}"[:200]))
            profiles.extend(prof)
    return result


def stream_rows(res: Results, logdir: Path, profiles: list[Profile], levels: list[int],
                skip_langgraph: bool) -> list[Row]:
    """One row per level C; the floor, runwire, then LangGraph, each alone on core 0."""
    floor: dict[int, StreamResult | Exception] = {}
    rw: dict[int, StreamResult | Exception] = {}
    lg: dict[int, StreamResult | Exception] = {}
    lg_missing = "skipped (--skip-langgraph)" if skip_langgraph else servers.langgraph_missing()
    profile_level = next((c for c in levels if c >= 50), levels[-1])
    load: dict[int, float] = {}  # the machine's 1-minute load average as each level starts
    with servers.provider(logdir, tokens=TOKENS, rate=RATE) as provider:
        for level in levels:
            print(f"    {level} streams: pydantic-ai alone, runwire", flush=True)
            load[level] = os.getloadavg()[0]
            try:
                floor[level] = floor_streams(provider.base, level)
            except Exception as exc:
                floor[level] = exc
            try:
                rw[level] = _runwire_at(level, logdir, provider, profiles,
                                        level == profile_level)
            except Exception as exc:
                rw[level] = exc
        if lg_missing is None:
            try:
                with servers.langgraph(logdir, jobs=max(levels) + 10,
                                       **_provider_env(provider)) as peer:
                    for level in levels:
                        print(f"    {level} streams: LangGraph", flush=True)
                        try:
                            lg[level] = asyncio.run(langgraph_streams(peer.base, peer.pid,
                                                                      level))
                        except Exception as exc:
                            lg[level] = exc
            except Exception as exc:
                lg_missing = f"failed: {type(exc).__name__}: {exc}"[:160]
    res["streaming"] = {str(c): {name: (v[c].summary() if isinstance(v.get(c), StreamResult)
                                        else repr(v.get(c)))
                                 for name, v in (("floor", floor), ("runwire", rw),
                                                 ("langgraph", lg))} for c in levels}
    return [_stream_row(c, rw[c], floor[c], lg.get(c), lg_missing, load[c]) for c in levels]


def _ok(value: StreamResult | Exception | None) -> StreamResult | None:
    return value if isinstance(value, StreamResult) else None


def _why(value: StreamResult | Exception | None, missing: str | None = None) -> str:
    if isinstance(value, Exception):
        return f"failed: {type(value).__name__}: {value}"[:160]
    return missing or "not run"


def _above_floor(server: StreamResult | None, floor: StreamResult | None) -> float:
    """A server's CPU per token minus pydantic-ai's alone (its own share); nan without both."""
    return server.cpu_per_token_ms() - floor.cpu_per_token_ms() if server and floor else math.nan


def _stream_row(level: int, rw_v: StreamResult | Exception, floor_v: StreamResult | Exception,
                lg_v: StreamResult | Exception | None, lg_missing: str | None,
                load: float) -> Row:
    rw, floor, lg = _ok(rw_v), _ok(floor_v), _ok(lg_v)
    own = _above_floor(rw, floor)
    target = "0 lost; runwire's own CPU/token (server − floor) ≤ 0.1 ms"
    if level == 50:
        target = "0 lost; lag p99 ≤ 100 ms (LangGraph: 130–164 ms); own CPU/token ≤ 0.1 ms"
    elif level >= 100:
        target += "; measured beside LangGraph"
    met: bool | None = None
    if rw is not None:
        met = rw.lost == 0 and not math.isnan(own) and own <= OWN_CPU_TARGET_MS
        if level == 50:
            met = met and rw.summary()["p99"] <= LAG_P99_TARGET
    else:
        met = False
    runwire = _cell(rw) if rw else _why(rw_v)
    if not math.isnan(own):
        runwire += f"; own {own:.2f} ms CPU/token"
    peer = _cell(lg) if lg else _why(lg_v, lg_missing)
    peer_own = _above_floor(lg, floor)
    if not math.isnan(peer_own):
        peer += f"; above the floor {peer_own:.2f} ms (stores no token)"
    baseline = f"pydantic-ai alone: {_cell(floor) if floor else _why(floor_v)}; LangGraph: {peer}"
    return Row(f"streaming capacity, one core: {level} streams × {RATE:g} tokens/s "
               f"({level * RATE:,.0f} tokens/s)", runwire, baseline, target, met,
               f"{level} streams of {TOKENS} tokens started over 1 s; lag = arrival − the "
               "provider's send stamp; lost = expected − distinct tokens received; complete "
               f"streams (exact text): runwire {rw.complete if rw else 'n/a'}, LangGraph "
               f"{lg.complete if lg else 'n/a'}, pydantic-ai {floor.complete if floor else 'n/a'}"
               f" of {level}; machine load average {load:.1f} (2 cores) when the level "
               "started")


def workers_rows(res: Results, logdir: Path, one_core: Results,
                 levels: tuple[int, ...] = WORKER_LEVELS) -> list[Row]:
    """``--workers 2`` on PostgreSQL + Redis at `levels` streams (100 and 200), both cores."""
    measurement = "streaming capacity, `--workers 2` (PostgreSQL + Redis, both cores): {} streams"
    targets = {c: "0 lost, lag p99 ≤ 100 ms" if c == 100 else "measured" for c in levels}
    if not (servers.service_up("127.0.0.1", 5432) and servers.service_up("127.0.0.1", 6379)):
        return [Row(measurement.format(c), "not run: PostgreSQL :5432 or Redis :6379 down", "—",
                    targets[c], None) for c in levels]
    results: dict[int, StreamResult | Exception] = {}
    name = f"runwire_bench_w_{os.getpid()}"
    with servers.unpinned_self(), \
            servers.provider(logdir, tokens=TOKENS, rate=RATE, core=None) as provider:
        for level in levels:
            print(f"    {level} streams: --workers 2", flush=True)
            try:
                with servers.postgres_database(f"{name}_{level}") as url, \
                        servers.runwire(f"workers-{level}", logdir, workers=2, core=None,
                                        RUNWIRE_DATABASE_URL=url,
                                        RUNWIRE_REDIS_URL="redis://127.0.0.1:6379/0",
                                        RUNWIRE_REDIS_PREFIX=f"{name}_{level}:",
                                        RUNWIRE_WS_COMPRESSION="false",
                                        RUNWIRE_MAX_CONCURRENT_AGENTS=str(level),
                                        **_provider_env(provider)) as node:
                    results[level] = asyncio.run(runwire_streams(node.ws_url, node.pid, level))
            except Exception as exc:
                results[level] = exc
    res["workers"] = {str(c): (v.summary() if isinstance(v, StreamResult) else repr(v))
                      for c, v in results.items()}
    rows = []
    for level, value in results.items():
        result = _ok(value)
        met: bool | None = None
        if level == 100:
            met = result is not None and result.lost == 0 and \
                result.summary()["p99"] <= LAG_P99_TARGET
        one = one_core.get(str(level), {}).get("runwire")
        base = (f"one worker on one core (SQLite), same run: lag p50 {ms(one['p50'])} / p99 "
                f"{ms(one['p99'])}, {one['lost']:,} lost" if isinstance(one, dict)
                else "one-core row not run")
        cell = _cell(result) if result else _why(value)
        rows.append(Row(measurement.format(level), cell.replace("of a core", "of one core"),
                        base, targets[level], met, "CPU: supervisor + both workers; provider "
                        "and load generator on the same two cores"))
    return rows
