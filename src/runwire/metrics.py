"""Prometheus metrics: one registry per application, passed in; low-cardinality labels.

Every metric carries a ``node`` label so several nodes can be told apart when scraped
through one service discovery; user, thread and run ids never appear in labels.
Gauges that describe current state (connections, queues, pool) are read at scrape time
by :class:`StateCollector`, so nothing has to keep them in sync.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
APPROVAL_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class StateCollector(Collector):
    """Reads current state from the application at scrape time."""

    def __init__(self, node: str, read: Callable[[], dict[str, float]]) -> None:
        self._node = node
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            family = GaugeMetricFamily(f"runwire_{name}", name.replace("_", " "),
                                       labels=["node"])
            family.add_metric([self._node], value)
            yield family


class SentFrames(Collector):
    """Frames written to sockets, by type, and the commit → send latency of events.

    Counted in plain ints on the send path (one dict increment and one bisect per event,
    no lock: everything runs on the event loop) and turned into
    ``runwire_frames_out_total{type}`` and the ``runwire_event_delivery_seconds``
    histogram at scrape time. A prometheus_client counter and histogram took a mutex
    per frame and connection.
    """

    def __init__(self, node: str, buckets: tuple[float, ...]) -> None:
        self._node = node
        self._bounds = buckets
        self._le = [floatToGoString(b) for b in (*buckets, float("inf"))]  # type: ignore[no-untyped-call]
        self.by_type: dict[str, int] = {}
        self.latency_counts = [0] * (len(buckets) + 1)  # the last one: above every bound
        self.latency_sum = 0.0

    def sent(self, type: str, count: int = 1) -> None:
        self.by_type[type] = self.by_type.get(type, 0) + count

    def delivered(self, seconds: float) -> None:
        self.latency_counts[bisect_left(self._bounds, seconds)] += 1
        self.latency_sum += seconds

    def collect(self) -> Iterable[Metric]:
        frames = CounterMetricFamily("runwire_frames_out", "Outbound frames sent by type",
                                     labels=["node", "type"])
        for type, count in sorted(self.by_type.items()):
            frames.add_metric([self._node, type], count)
        yield frames
        latency = HistogramMetricFamily("runwire_event_delivery_seconds",
                                        "event committed → sent on a socket", labels=["node"])
        cumulative, buckets = 0, []
        for le, count in zip(self._le, self.latency_counts, strict=True):
            cumulative += count
            buckets.append((le, cumulative))
        latency.add_metric([self._node], buckets, self.latency_sum)
        yield latency


class Metrics:
    """All of runwire's metrics for one node."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["node", *labels], registry=r)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, ["node", *labels], buckets=buckets, registry=r)

        self.connects = counter("runwire_connections_total",
                                "WebSocket connection attempts by outcome", "outcome")
        self.disconnects = counter("runwire_disconnects_total",
                                   "Closed connections by close code", "code")
        self.frames_in = counter("runwire_frames_in_total", "Inbound frames by type", "type")
        self.frames_out = SentFrames(node, LATENCY_BUCKETS)
        r.register(self.frames_out)
        self.rate_limited = counter("runwire_rate_limited_total",
                                    "Frames or requests refused by a rate limit", "op")
        self.resumes = counter("runwire_resumes_total", "resume requests (reconnections)")
        self.replayed = counter("runwire_replayed_events_total", "Events sent by replays")
        self.task_failures = counter(
            "runwire_background_task_failures_total",
            "Background tasks (loops, frame handlers, gap repairs) that raised, by kind", "task")
        self.slow_consumers = counter("runwire_slow_consumer_closes_total",
                                      "Connections closed with 4009")
        self.runs = counter("runwire_runs_total", "Finished runs by status and error code",
                            "status", "code")
        self.tool_calls = counter("runwire_tool_calls_total", "Tool calls by tool and outcome",
                                  "tool", "outcome")
        self.model_errors = counter("runwire_model_errors_total", "Provider errors",
                                    "retryable")
        self.start_latency = histogram(
            "runwire_message_to_started_seconds",
            "user_message received → agent_started published", LATENCY_BUCKETS)
        self.append_latency = histogram("runwire_event_append_seconds",
                                        "event-log append transaction", LATENCY_BUCKETS)
        self.queue_wait = histogram("runwire_run_queue_wait_seconds",
                                    "time a run waited in the queue", RUN_BUCKETS)
        self.model_latency = histogram("runwire_model_turn_seconds",
                                       "one agent turn on the model provider (incl. tools)",
                                       RUN_BUCKETS, "model")
        self.bus_lag = histogram("runwire_bus_lag_seconds",
                                 "Redis bus: published on one node → received on another",
                                 LATENCY_BUCKETS)
        self.approval_decisions = counter(
            "runwire_approval_decisions_total",
            "Decisions on tool calls waiting for approval by outcome "
            "(approved, denied, timed_out)", "outcome")
        self.approval_latency = histogram(
            "runwire_approval_latency_seconds",
            "approval_required → the decision, by outcome", APPROVAL_BUCKETS, "outcome")
        self.run_duration = histogram("runwire_run_duration_seconds", "run duration by status",
                                      RUN_BUCKETS, "status")

        self.webhook_deliveries = counter(
            "runwire_webhook_deliveries_total",
            "Webhook delivery attempts by outcome (delivered, retry, failed, lost_claim)",
            "outcome")
        self.webhook_depth = Gauge("runwire_webhook_outbox_depth",
                                   "Webhook deliveries waiting to be delivered (all nodes)",
                                   ["node"], registry=r)
        self.webhook_oldest = Gauge("runwire_webhook_oldest_pending_seconds",
                                    "Age of the oldest webhook delivery still pending",
                                    ["node"], registry=r)

        self.breaker_open = Gauge("runwire_breaker_open",
                                  "1 while a circuit breaker is open (or half open)",
                                  ["node", "breaker"], registry=r)

    def breaker_changed(self, name: str, state: str) -> None:
        """Callback for :class:`runwire.breaker.CircuitBreaker` state changes."""
        self.breaker_open.labels(self.node, name).set(0 if state == "closed" else 1)

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Export the gauges `read()` returns at every scrape."""
        self.registry.register(StateCollector(self.node, read))

    def render(self) -> bytes:
        return generate_latest(self.registry)

