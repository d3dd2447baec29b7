"""Shared pieces of the rows: percentiles, the row record, bounded waiting."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def pct(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (nearest rank) of `values`; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    value = seconds * 1000
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else \
        f"{value:,.0f} ms"


@dataclass
class Row:
    """One line of the table."""

    measurement: str
    runwire: str
    baseline: str
    target: str
    met: bool | None  # None: no target, or not measurable
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "—"}[self.met]


def failed_row(measurement: str, target: str, exc: BaseException) -> Row:
    return Row(measurement, f"failed: {type(exc).__name__}: {exc}"[:200], "—", target, False)


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Wait (bounded) for `predicate()`; the load generator's only polling loop, used
    where the condition is spread over many connections' counters."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)
