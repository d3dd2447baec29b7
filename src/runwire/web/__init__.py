"""The chat page: built by Vite from ``clients/js/web`` into ``static/`` (committed).

:class:`PageFiles` serves it with the headers a page that renders model output needs: a
strict Content-Security-Policy (no inline or foreign scripts; the WebSocket and REST only to
this origin), hashed assets cached for good, and ``index.html`` revalidated on every load
so a new build is picked up at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
# Swagger UI's assets, copied from npm's swagger-ui-dist by the page's build (vite.config.ts).
SWAGGER_UI = "/swagger-ui"
FAVICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
           "%3Ccircle cx='8' cy='8' r='7' fill='%235b8cff'/%3E%3C/svg%3E")

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class PageFiles(StaticFiles):
    """StaticFiles for the page, with caching and security headers."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR, html=True)

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        hashed = Path(full_path).parent.name == "assets"  # Vite names them by content hash
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if hashed else "no-cache")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
