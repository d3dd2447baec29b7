"""A small circuit breaker: after N consecutive failures calls fail fast for a cool-down,
then one trial call decides whether to close again.

Used around the database, the model provider and each tool. State changes are reported
to an optional callback (metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitOpen(Exception):
    """The breaker is open: the call was not attempted."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"{name} is failing; retry in {retry_in:.1f} s")
        self.name = name
        self.retry_in = retry_in


class CircuitBreaker:
    """Consecutive-failure breaker.

    Args:
        name: what it guards (a metric label: keep it low-cardinality).
        threshold: consecutive failures that open it.
        cooldown: seconds it stays open before one trial call is let through.
        on_change: called with (name, new_state).
    """

    def __init__(self, name: str, *, threshold: int = 5, cooldown: float = 10.0,
                 on_change: Callable[[str, BreakerState], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self.state: BreakerState = "closed"

    def _set(self, state: BreakerState) -> None:
        if state != self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(self.name, state)

    def check(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go ahead."""
        if self.state == "open":
            waited = self._clock() - self._opened_at
            if waited < self.cooldown:
                raise CircuitOpen(self.name, self.cooldown - waited)
            self._set("half_open")

    def success(self) -> None:
        self._failures = 0
        self._set("closed")

    def failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._set("open")
