"""RFC 9457 problem details for every REST error."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from runwire.errors import (
    AuthError,
    Conflict,
    InvalidArguments,
    NotFound,
    RateLimited,
    StorageUnavailable,
    ThreadBusy,
)

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, as every REST error answers them."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str


_DESCRIPTIONS = {400: "Bad request", 401: "Missing, invalid or expired token",
                 404: "Not found (or another user's)",
                 409: "Conflict (thread busy; a tool call decided already)",
                 413: "Request body too large", 422: "Invalid input",
                 429: "Rate limited (`Retry-After`)", 503: "Storage unavailable"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem-details answers with these statuses."""
    schema = Problem.model_json_schema()
    return {status: {"description": _DESCRIPTIONS.get(status, "Error"),
                     "content": {PROBLEM: {"schema": schema}}} for status in statuses}


def problem(status: int, title: str, detail: str, *, code: str,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"https://runwire.dev/problems/{code}", "title": title, "status": status,
            "detail": detail, "code": code, **extra}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class BodyTooLarge(StarletteHTTPException):
    """The request body passed ``max_request_body`` (413). An HTTPException so that
    FastAPI's body parsing passes it on instead of calling it a parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    return problem(413, "Payload too large", f"the request body is larger than {limit} bytes",
                   code="payload_too_large", max_bytes=limit)


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """The methods the app routes for this request's path (for a 405's `Allow`), found by
    asking each route whether it would take the request with that method (the page's
    catch-all mount aside)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes
               if not isinstance(route, Mount)):
            allowed.append(method)
    return ", ".join(allowed)


def install_problem_handlers(app: FastAPI) -> None:
    async def auth(_: Request, exc: Exception) -> JSONResponse:
        return problem(401, "Unauthorized", str(exc), code="unauthorized")

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return problem(404, "Not Found", str(exc), code="not_found")

    async def busy(_: Request, exc: Exception) -> JSONResponse:
        return problem(409, "Thread busy", str(exc), code="thread_busy")

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return problem(409, "Conflict", str(exc), code="conflict")

    async def bad_args(_: Request, exc: Exception) -> JSONResponse:
        return problem(422, "Validation error", str(exc), code="validation_error",
                       errors=[{"loc": ["body", "args"], "msg": str(exc)}])

    async def storage(_: Request, exc: Exception) -> JSONResponse:
        return problem(503, "Storage unavailable", "the database is unavailable; retry later",
                       code="storage_unavailable")

    async def limited(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimited)
        response = problem(429, "Too Many Requests", str(exc), code="rate_limited",
                           retry_after_ms=exc.retry_after_ms)
        response.headers["Retry-After"] = str(max(1, -(-exc.retry_after_ms // 1000)))
        return response

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return problem(422, "Validation error", detail, code="validation_error", errors=errors)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status, detail, headers = exc.status_code, str(exc.detail), dict(exc.headers or {})
        if status in (404, 405):
            # RFC 9110: a path routed for other methods answers 405 with `Allow` listing
            # them all. Starlette names only the first route that matched the path, and a
            # method no route takes falls through to the page's catch-all mount (404).
            allow = allowed_methods(app, request.scope)
            if allow and request.method not in allow.split(", "):
                status, detail, headers["Allow"] = 405, "Method Not Allowed", allow
        return problem(status, detail, detail, code=f"http_{status}", headers=headers)

    async def body_too_large(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BodyTooLarge)
        return too_large(exc.limit)

    app.add_exception_handler(AuthError, auth)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(ThreadBusy, busy)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(InvalidArguments, bad_args)
    app.add_exception_handler(StorageUnavailable, storage)
    app.add_exception_handler(RateLimited, limited)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
