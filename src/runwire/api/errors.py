"""RFC 9457 problem details for every REST error."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runwire.errors import AuthError, NotFound, RateLimited, StorageUnavailable, ThreadBusy

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, *, code: str, **extra: Any) -> JSONResponse:
    body = {"type": f"https://runwire.dev/problems/{code}", "title": title, "status": status,
            "detail": detail, "code": code, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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


def install_problem_handlers(app: FastAPI) -> None:
    async def auth(_: Request, exc: Exception) -> JSONResponse:
        return problem(401, "Unauthorized", str(exc), code="unauthorized")

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return problem(404, "Not Found", str(exc), code="not_found")

    async def busy(_: Request, exc: Exception) -> JSONResponse:
        return problem(409, "Thread busy", str(exc), code="thread_busy")

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

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem(exc.status_code, str(exc.detail), str(exc.detail),
                       code=f"http_{exc.status_code}")

    async def body_too_large(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BodyTooLarge)
        return too_large(exc.limit)

    app.add_exception_handler(AuthError, auth)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(ThreadBusy, busy)
    app.add_exception_handler(StorageUnavailable, storage)
    app.add_exception_handler(RateLimited, limited)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
