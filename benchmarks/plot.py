"""The latency plot (run by the bench venv, which has matplotlib).

Usage: ``python -m benchmarks.plot results.json out.png``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PERCENTILES = (50, 90, 99, 99.9)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1] * 1000


def series(res: dict[str, Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    rw = res.get("runwire_runs", {}).get("latency", {})
    if rw.get("started"):
        out["runwire: user_message → agent_started"] = rw["started"]
    lg = res.get("langgraph_times", {})
    if lg.get("first_event"):
        out["LangGraph: first SSE event"] = lg["first_event"]
    if lg.get("first_values"):
        out["LangGraph: first values event"] = lg["first_values"]
    cross = res.get("cross_node", {})
    if cross.get("cross"):
        out["runwire: cross-node, arrival B − arrival A"] = [max(v, 1e-5) for v in cross["cross"]]
    if cross.get("stamp_b"):
        out["runwire: event timestamp → arrival on B (incl. commit)"] = [
            max(v, 1e-5) for v in cross["stamp_b"]]
    resume = res.get("resume", {})
    if resume.get("times"):
        out["runwire: resume 1,000 events"] = resume["times"]
    return out


def main() -> None:
    res = json.loads(Path(sys.argv[1]).read_text())
    data = series(res)
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    width = 0.8 / max(1, len(data))
    for i, (label, values) in enumerate(data.items()):
        ys = [_pct(values, p) for p in PERCENTILES]
        xs = [j + (i - (len(data) - 1) / 2) * width for j in range(len(PERCENTILES))]
        ax.bar(xs, ys, width, label=f"{label} (n={len(values)})")
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:,.0f}" if y >= 100 else f"{y:.3g}", (x, y), ha="center",
                        va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(PERCENTILES)), [f"p{p:g}" for p in PERCENTILES])
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("runwire latency percentiles (make bench, loopback, server on core 0)")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2,
              frameon=False)
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
