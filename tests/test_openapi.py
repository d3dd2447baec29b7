"""The OpenAPI document, checked by property-based tests (schemathesis): every documented
operation, called with generated inputs on a real server, answers no 5xx, no status the
document does not list, and bodies and content types that match it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from runwire.app import create_app
from runwire.settings import load_settings

from .conftest import ServerHandle

# The document is the app's own (built without starting anything); the calls go to a
# real server on loopback.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(load_settings(data_dir=Path("unused-openapi-only"))).openapi())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    server = ServerHandle(load_settings(
        data_dir=tmp_path_factory.mktemp("openapi"), builtin_delta_delay=0.0,
        rate_limit_messages="100000/minute", rate_limit_frames="100000/minute",
        # generated cases reuse thread ids ("0"): a new message interrupts the thread's
        # run instead of queueing behind every earlier one (a streamed case waits for its run)
        multitask_strategy="interrupt", shutdown_grace=2.0)).start()
    yield server
    server.stop()


SETTINGS = {"deadline": None, "suppress_health_check": [
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]}
# Operations that start runs (each valid case executes an agent run) get fewer cases, so
# the whole file stays under a minute on a loaded machine.
STARTS_RUNS = {"path": ["/ag-ui", "/api/runs"], "method": "POST"}


def check(case: schemathesis.Case, live: ServerHandle) -> None:
    # A cursor is opaque: any string is schema-valid, and one this API did not make is
    # refused (422). Cases carrying one are checked for everything but acceptance.
    opaque = bool(case.query and "cursor" in case.query)
    case.call_and_validate(
        base_url=live.base_url, timeout=30,
        headers={"Authorization": f"Bearer {live.token('prop')}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance] if opaque else [])


@SCHEMA.exclude(**STARTS_RUNS).parametrize()
@settings(max_examples=8, **SETTINGS)  # type: ignore[arg-type]
def test_every_operation_keeps_its_documented_contract(
    case: schemathesis.Case, live: ServerHandle,
) -> None:
    check(case, live)


@SCHEMA.include(**STARTS_RUNS).parametrize()
@settings(max_examples=4, **SETTINGS)  # type: ignore[arg-type]
def test_operations_starting_runs_keep_their_documented_contract(
    case: schemathesis.Case, live: ServerHandle,
) -> None:
    check(case, live)


async def test_a_path_answers_405_with_every_method_it_routes(live: ServerHandle) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=live.base_url, headers={
            "Authorization": f"Bearer {live.token('prop')}"}) as http:
        for method, path, allow in (("OPTIONS", "/api/threads", "GET, POST"),
                                    ("GET", "/api/runs", "POST"),
                                    ("PUT", "/api/threads/x", "GET, PATCH, DELETE"),
                                    ("GET", "/ag-ui", "POST")):
            resp = await http.request(method, path)
            assert (resp.status_code, resp.headers.get("allow")) == (405, allow), path
            assert resp.headers["content-type"].startswith("application/problem+json")
        assert (await http.get("/no-such-page")).status_code == 404


def test_the_document_requires_every_discriminator() -> None:
    schemas = SCHEMA.raw_schema["components"]["schemas"]
    assert "role" in schemas["ActivityMessage"]["required"]
    assert "role" in schemas["UserMessage"]["required"]
