"""OpenTelemetry traces: off by default; exported by OTLP/HTTP when configured.

With ``RUNWIRE_OTEL_ENDPOINT`` (e.g. ``http://collector:4318``) every run is a
``runwire.run`` span; inside it pydantic-ai's instrumentation records model requests and
tool calls, and the database (SQLAlchemy) and Redis calls of the run are child spans. The
tracer provider belongs to the application (not the process-global one), so two apps in
one process don't share it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic_ai.models.instrumented import InstrumentationSettings
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from runwire import __version__


class Tracing:
    """The app's tracer provider, or no-ops when tracing is off."""

    def __init__(self, endpoint: str | None, *, node_id: str) -> None:
        self.enabled = endpoint is not None
        self.provider: TracerProvider | None = None
        if endpoint is not None:
            resource = Resource.create({"service.name": "runwire", "service.version": __version__,
                                        "service.instance.id": node_id})
            self.provider = TracerProvider(resource=resource)
            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
            self.tracer: trace.Tracer = self.provider.get_tracer("runwire", __version__)
        else:
            self.tracer = trace.NoOpTracer()

    @contextlib.contextmanager
    def run_span(self, run_id: str, thread_id: str, agent: str) -> Iterator[None]:
        """The span around one run (current for everything the run task does inside)."""
        if not self.enabled:
            yield
            return
        with self.tracer.start_as_current_span(
                "runwire.run", kind=trace.SpanKind.INTERNAL,
                attributes={"runwire.run_id": run_id, "runwire.thread_id": thread_id,
                            "gen_ai.agent.name": agent}):
            yield

    def instrument_engine(self, engine: AsyncEngine | Engine) -> None:
        """Spans for this engine's queries only (no global patching)."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        meter = NoOpMeterProvider().get_meter("runwire")
        usage = meter.create_up_down_counter("db.client.connections.usage")
        sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        EngineTracer(self.provider.get_tracer("runwire.db"), sync,  # type: ignore[no-untyped-call]
                     usage)

    def instrument_redis(self, client: Any) -> None:
        """Spans for one redis-py client's commands."""
        if self.provider is None:
            return
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def pydantic_ai_settings(self) -> InstrumentationSettings | None:
        """InstrumentationSettings for pydantic-ai agents, or None when off."""
        if self.provider is None:
            return None
        # Message contents stay out of traces, as they stay out of logs.
        return InstrumentationSettings(tracer_provider=self.provider, include_content=False)

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        if self.provider is not None:
            self.provider.shutdown()
