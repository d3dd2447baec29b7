"""The application object: ``create_app(settings)`` builds everything in its lifespan.

:class:`Services` owns every long-lived part (database, bus, token service, agent
runtime, run service, connection registry, gateway) and hands each its dependencies
through its constructor. Nothing is global; two apps in one process share nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypedDict

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from limits.aio.storage import RedisStorage, Storage
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.websockets import WebSocket

from runwire.agents.registry import AgentRegistry, default_registry, load_user_registry
from runwire.agents.runtime import AgentRuntime
from runwire.api.agui import router as agui_router
from runwire.api.approvals import router as approvals_router
from runwire.api.deps import ApiContext
from runwire.api.errors import install_problem_handlers
from runwire.api.guard import EdgeGuard
from runwire.api.openapi import install_openapi
from runwire.api.routes import router as api_router
from runwire.api.runs import router as runs_router
from runwire.api.search import router as search_router
from runwire.auth import TokenService
from runwire.breaker import CircuitBreaker
from runwire.bus.base import Bus
from runwire.bus.memory import InMemoryBus
from runwire.bus.redis import RedisBus
from runwire.gateway import upkeep
from runwire.gateway.endpoint import Gateway
from runwire.gateway.presence import RedisPresence
from runwire.gateway.registry import ConnectionRegistry
from runwire.metrics import Metrics
from runwire.protocol.codes import CloseCode
from runwire.ratelimit import RateLimiter
from runwire.redisguard import RedisGuard, client_options
from runwire.runs.service import RunService
from runwire.settings import Settings
from runwire.store import eventlog
from runwire.store.cache import HistoryCache, NoCache, RedisHistoryCache
from runwire.store.db import Database
from runwire.store.reader import ThreadReader
from runwire.store.search import MessageSearcher
from runwire.tasks import Supervisor
from runwire.threads import ThreadService
from runwire.tracing import Tracing
from runwire.web import FAVICON, SWAGGER_UI, PageFiles
from runwire.webhooks.dispatcher import WebhookDispatcher

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 60.0
HEALTH_INTERVAL = 5.0


@dataclass
class Services:
    """Everything one runwire node runs, built once per application."""

    settings: Settings
    db: Database
    bus: Bus
    tokens: TokenService
    registry: AgentRegistry
    runtime: AgentRuntime
    runs: RunService
    reader: ThreadReader
    threads: ThreadService
    connections: ConnectionRegistry
    gateway: Gateway
    limiter: RateLimiter
    metrics: Metrics
    tasks: Supervisor
    _drained: bool = False
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    db_ok: bool = True
    presence: RedisPresence | None = None
    redis_guard: RedisGuard | None = None
    tracing: Tracing | None = None
    history_cache: HistoryCache = field(default_factory=NoCache)
    webhooks: WebhookDispatcher | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        """Open the database (and migrate), build the parts, recover unfinished runs."""
        tokens = TokenService(settings)
        metrics = Metrics(settings.node_id)
        tracing = Tracing(settings.otel_endpoint, node_id=settings.node_id)
        db = Database(settings.resolved_database_url, pool_size=settings.db_pool_size,
                      timeout=settings.db_timeout,
                      breaker=CircuitBreaker("database", threshold=5, cooldown=2.0,
                                             on_change=metrics.breaker_changed))
        await db.migrate()
        for engine in db.engines():
            tracing.instrument_engine(engine)
        bus: Bus
        limit_storage: Storage | None = None
        presence: RedisPresence | None = None
        history_cache: HistoryCache = NoCache()
        redis_guard: RedisGuard | None = None
        if settings.redis_url is not None:
            # one timeout + breaker for every Redis call on a hot path (SPEC 5 degraded modes)
            redis_guard = RedisGuard(settings.redis_url, timeout=settings.redis_timeout,
                                     on_change=metrics.breaker_changed)
            presence = RedisPresence(settings.redis_url, prefix=settings.redis_prefix,
                                     guard=redis_guard)
            tracing.instrument_redis(presence.client)
            bus = RedisBus(settings.redis_url, node_id=settings.node_id,
                           prefix=settings.redis_prefix, guard=redis_guard)
            tracing.instrument_redis(bus.client)
            history_cache = RedisHistoryCache(bus.client, prefix=settings.redis_prefix,
                                              guard=redis_guard)
            limit_storage = RedisStorage(f"async+{settings.redis_url}", implementation="redispy",
                                         key_prefix=f"{settings.redis_prefix}limits",
                                         **client_options(settings.redis_timeout))
        else:
            bus = InMemoryBus()
        registry = default_registry()
        if settings.agents:
            load_user_registry(settings.agents, registry)
        registry.require_approval(settings.approval_tools)
        limiter = RateLimiter({"frame": settings.rate_limit_frames,
                               "user_message": settings.rate_limit_messages,
                               "rest_write": settings.rate_limit_frames}, limit_storage,
                              redis_guard)

        async def tool_limit(user_id: str, op: str, limit: str) -> bool:
            return (await limiter.hit(user_id, op, limit)).allowed

        runtime = AgentRuntime(model=settings.model, registry=registry,
                               builtin_delta_delay=settings.builtin_delta_delay,
                               tool_timeout=settings.tool_timeout, rate_limit=tool_limit,
                               on_breaker_change=metrics.breaker_changed,
                               instrument=tracing.pydantic_ai_settings(),
                               on_model_turn=lambda model, seconds: metrics.model_latency.labels(
                                   settings.node_id, model).observe(seconds))
        runs = RunService(settings=settings, db=db, bus=bus, runtime=runtime, metrics=metrics,
                          tracing=tracing)
        reader = ThreadReader(db)

        async def cancel_thread_runs(user_id: str, thread_id: str) -> int:
            return await runs.cancel_thread(user_id, thread_id, reason="deleted")

        threads = ThreadService(db=db, bus=bus, cancel_runs=cancel_thread_runs,
                                history_cache=history_cache)
        connections = ConnectionRegistry(max_per_user=settings.max_connections_per_user)
        failures = metrics.task_failures
        tasks = Supervisor(
            on_failure=lambda kind: failures.labels(settings.node_id, kind).inc())
        gateway = Gateway(settings=settings, tokens=tokens, registry=connections, bus=bus,
                          runs=runs, reader=reader, limiter=limiter, metrics=metrics,
                          model_info=dict(runtime.model_info()), presence=presence,
                          tasks=tasks)
        services = cls(settings=settings, db=db, bus=bus, tokens=tokens, registry=registry,
                       runtime=runtime, runs=runs, reader=reader, threads=threads,
                       connections=connections,
                       gateway=gateway, limiter=limiter, metrics=metrics, tasks=tasks)
        metrics.watch(services.gauges)
        bus.on_control = runs.on_control
        if isinstance(bus, RedisBus):
            bus.on_reconnect = tasks.guarded(
                "bus-catch-up", lambda: upkeep.catch_up(connections, reader))
            bus.on_lag = metrics.bus_lag.labels(settings.node_id).observe
            await bus.start()
        await runtime.prepare()
        await runs.start()
        tasks.keep_running("event-retention", services._prune_forever)
        tasks.keep_running("idle-connections", lambda: upkeep.sweep_idle(
            connections, settings.connection_timeout, runs.scheduler.has_user))
        tasks.keep_running("health-monitor", services._watch_health)
        if presence is not None:
            tasks.keep_running("presence", lambda: upkeep.refresh_presence(presence, connections))
        if settings.webhook_urls and settings.webhook_secret is not None:
            services.webhooks = WebhookDispatcher(
                db=db, node_id=settings.node_id, secret=settings.webhook_secret,
                timeout=settings.webhook_timeout, metrics=metrics,
                retry_for=timedelta(hours=settings.webhook_retry_hours))
            tasks.keep_running("webhooks", services.webhooks.run)
        services.presence = presence
        services.redis_guard = redis_guard
        services.tracing = tracing
        services.history_cache = history_cache
        return services

    def gauges(self) -> dict[str, float]:
        """Current state, read at every scrape of /metrics."""
        queued = [c.queued for c in self.connections]
        pool = self.db.pool_status()
        return {
            "connections_open": len(self.connections),
            "connected_users": self.connections.users(),
            "outbound_queue_frames_max": max(queued, default=0),
            "outbound_queue_frames_total": sum(queued),
            "runs_running": self.runs.scheduler.running,
            "runs_queued": self.runs.queue_depth,
            "runs_waiting": self.runs.approvals.waiting,
            "db_pool_in_use": pool["in_use"],
            "db_pool_overflow": pool["overflow"],
            "bus_up": 1.0 if self.bus.health() == "ok" else 0.0,
            "readiness_database": 1.0 if self.db_ok else 0.0,
            "bus_subscriptions": self.bus.subscriber_count(),
            "background_tasks": len(self.tasks),
        }

    async def prune_once(self) -> int:
        """Apply the event retention policy once; returns how many events were deleted."""
        async with self.db.write() as session:
            return await eventlog.prune(
                session, keep_events=self.settings.event_retention_events,
                max_age=timedelta(hours=self.settings.event_retention_hours))

    async def _prune_forever(self) -> None:
        """Forever: apply retention; a failure propagates to the supervisor (logged,
        counted, restarted)."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            deleted = await self.prune_once()
            if deleted:
                log.info("pruned %d events", deleted)

    async def _watch_health(self) -> None:
        """Keep `db_ok` current for metrics (readiness pings on its own)."""
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            self.db_ok = await self.db.ping()

    async def drain(self) -> None:
        """Graceful shutdown, in order: stop accepting → let runs finish (grace) → end the
        rest with stored terminal events → end SSE streams, close sockets with 1001."""
        if self._drained:
            return
        self._drained = True
        self.gateway.stop_accepting()
        await self.runs.drain(self.settings.shutdown_grace)
        self.closing.set()  # SSE streams end with the WebSockets
        await self.gateway.close_all(CloseCode.GOING_AWAY, "server shutting down")

    async def aclose(self) -> None:
        await self.drain()
        await self.tasks.aclose()
        await self.runtime.aclose()
        await self.limiter.aclose()
        await self.bus.aclose()
        if self.presence is not None:
            await self.presence.aclose()
        if self.redis_guard is not None:
            await self.redis_guard.aclose()
        await self.db.aclose()
        if self.tracing is not None:
            self.tracing.shutdown()

    def api_context(self) -> ApiContext:
        """What the HTTP routes may use (handed to them as lifespan state)."""
        return ApiContext(settings=self.settings, tokens=self.tokens, limiter=self.limiter,
                          threads=self.threads, runs=self.runs, reader=self.reader,
                          search=MessageSearcher(self.db),
                          history_cache=self.history_cache, bus=self.bus,
                          metrics=self.metrics, closing=self.closing)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """`/readyz`: ready when the database answers; each component's state."""
        db_ok = self.db_ok = await self.db.ping()
        bus = self.bus.health()
        components: dict[str, Any] = {"database": "ok" if db_ok else "down", "bus": bus,
                      "redis": "not_configured" if self.settings.redis_url is None else bus,
                      "runs": {"running": self.runs.scheduler.running,
                               "queued": self.runs.queue_depth,
                               "claimer": "ok" if self.runs.scheduler.claimer_ok else "down"},
                      "connections": len(self.connections)}
        ready = db_ok and bus != "down" and not self._drained
        return ready, {"status": "ready" if ready else "unavailable", "node_id":
                       self.settings.node_id, "components": components}


class AppState(TypedDict):
    """The lifespan's state: each request sees these as ``request.state.<key>``."""

    services: Services
    api: ApiContext


def services_of(app: Any) -> Services:
    services = getattr(app.state, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("runwire services are not running")
    return services


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI application; its lifespan starts and stops :class:`Services`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        services = await Services.start(settings)
        # The server's /ws fast path and drain (server.py) and tests reach the services
        # through the app; routes get theirs as typed lifespan state (request.state).
        app.state.services = services
        try:
            yield {"services": services, "api": services.api_context()}
        finally:
            await services.aclose()

    # /docs is served below with Swagger UI from the package (no CDN: works offline);
    # ReDoc would need a CDN, so it is off.
    app = FastAPI(title="runwire", version="0.1.0", lifespan=lifespan,
                  summary="A real-time gateway for AI agents", docs_url=None, redoc_url=None)
    install_problem_handlers(app)
    app.add_middleware(EdgeGuard, verify=lambda token: services_of(app).tokens.verify(token),
                       max_body=settings.max_request_body)
    app.include_router(api_router)
    app.include_router(search_router)
    app.include_router(approvals_router)
    app.include_router(runs_router)
    app.include_router(agui_router)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await services_of(ws.app).gateway.serve(ws)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="runwire API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css", swagger_favicon_url=FAVICON)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={
        200: {"description": "Ready: the database answers"},
        503: {"description": "Not ready (database down or draining); the same body",
              "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def readyz(request: Request) -> JSONResponse:
        ready, body = await services_of(request.app).readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics(request: Request) -> Response:
        services = services_of(request.app)
        token = settings.metrics_token
        # Bytes, not text: compare_digest refuses non-ASCII str (a 500 for anyone who
        # sends one); Starlette decodes headers as latin-1, so this is the wire's bytes.
        if token is not None and not hmac.compare_digest(
                request.headers.get("authorization", "").encode("latin-1"),
                f"Bearer {token}".encode()):
            return Response("metrics token required\n", status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
        return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/", PageFiles(), name="web")
    install_openapi(app)
    return app
