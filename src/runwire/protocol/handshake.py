"""The WebSocket handshake decisions (SPEC 2.1), as plain functions over headers.

No I/O: the gateway feeds in the offered subprotocols, headers and host, and gets back
the token, the subprotocol to select and whether the origin is allowed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from runwire.protocol.codes import JWT_SUBPROTOCOL_PREFIX, SUBPROTOCOL


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the token came from and which subprotocol to select on accept."""

    token: str | None
    subprotocol: str | None


def b64url_decode(data: str) -> str:
    padded = data + "=" * (-len(data) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


def b64url_encode(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode("ascii").rstrip("=")


def credentials(offered: Sequence[str], authorization: str | None) -> Credentials:
    """Extract the token from `jwt.<b64url>` subprotocol or an `Authorization: Bearer`.

    The selected subprotocol is `runwire.v1` when offered (the token is never echoed);
    a client offering only `jwt.<...>` gets that one echoed (old clients).
    """
    token: str | None = None
    jwt_proto: str | None = None
    for proto in offered:
        if proto.startswith(JWT_SUBPROTOCOL_PREFIX):
            jwt_proto = proto
            try:
                token = b64url_decode(proto[len(JWT_SUBPROTOCOL_PREFIX):])
            except (binascii.Error, UnicodeDecodeError, ValueError):
                token = ""  # present but unreadable: an auth failure, not "missing"
            break
    if token is None and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if SUBPROTOCOL in offered:
        selected: str | None = SUBPROTOCOL
    else:
        selected = jwt_proto
    return Credentials(token=token, subprotocol=selected)


def _origin_key(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url.strip().lower())
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme, parts.netloc


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """A browser's `Origin` must match the request's own `Host` or an allowed origin.

    Requests without `Origin` (non-browser clients) are allowed.
    """
    if origin is None:
        return True
    key = _origin_key(origin)
    if key is None:
        return False
    if host and key[1] == host.strip().lower():
        return True
    return any(_origin_key(a) == key for a in allowed)
