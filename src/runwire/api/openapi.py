"""The OpenAPI document, made to say exactly what the server accepts.

FastAPI builds it from the models; one pydantic quirk is corrected here: in a discriminated
union whose members give the discriminator a default (AG-UI's messages: ``role`` defaults
to ``"user"``, ``"activity"`` ...), the JSON schema marks the discriminator optional while
validation needs it to pick the member. The document makes it required (what validation
does), so a client built from the document never sends a message without ``role``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def require_discriminators(doc: dict[str, Any]) -> dict[str, Any]:
    """Add each discriminator property to the `required` of the schemas it maps to."""
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            disc = node.get("discriminator")
            if isinstance(disc, dict) and isinstance(disc.get("mapping"), dict):
                prop = disc["propertyName"]
                for ref in disc["mapping"].values():
                    target = schemas.get(str(ref).rsplit("/", 1)[-1])
                    if target is not None and prop in target.get("properties", {}):
                        required = target.setdefault("required", [])
                        if prop not in required:
                            required.append(prop)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = require_discriminators(get_openapi(
                title=app.title, version=app.version, summary=app.summary,
                description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
