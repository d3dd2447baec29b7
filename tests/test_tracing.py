"""OpenTelemetry: off by default; with an endpoint, a run's spans reach an OTLP/HTTP
collector (a fake one on loopback that decodes the protobuf export requests)."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .fake_openai import ThreadServer
from .helpers import client


class Collector:
    def __init__(self) -> None:
        self.spans: list[Any] = []

    async def traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return Response(b"", media_type="application/x-protobuf")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])


async def test_a_run_exports_its_span_tree_to_the_collector(server_factory: Any) -> None:
    collector = Collector()
    peer = ThreadServer(collector.app()).start()
    try:
        server = server_factory(otel_endpoint=peer.url)
        async with client(server) as c:
            ack, _ = await c.ask("what is 12*(3+4)?")
        server.stop()  # flushes the batch processor
    finally:
        peer.stop()
    names = [s.name for s in collector.spans]
    runs = [s for s in collector.spans if s.name == "runwire.run"]
    assert len(runs) == 1
    attrs = {a.key: a.value.string_value for a in runs[0].attributes}
    assert attrs["runwire.run_id"] == ack["payload"]["run_id"]
    run_trace = runs[0].trace_id
    inside = [s for s in collector.spans if s.trace_id == run_trace and s.name != "runwire.run"]
    assert any(s.name.split()[0] in ("INSERT", "UPDATE", "SELECT") for s in inside), names
    assert len(inside) >= 5, names
    assert any("builtin" in s.name for s in inside), names  # the model request
    assert any("calculator" in s.name for s in inside), names  # the tool call
