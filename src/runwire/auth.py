"""Tokens: verification (every /ws and /api request) and issuing (``runwire token``).

JWTs are checked with PyJWT against an algorithm allow-list (never ``none``); ``exp`` is
required, ``nbf``/``iat`` honoured, ``iss``/``aud`` checked when configured. ``sub`` is the
user id, ``scope`` (space separated) grants tool permissions. In the embedded default the
HS256 secret is generated once into ``DATA_DIR/jwt_secret`` — tokens are always checked.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from runwire.errors import AuthError, ConfigError
from runwire.settings import Settings

MAX_TOKEN_LENGTH = 8192
SECRET_FILE = "jwt_secret"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject and granted scopes."""

    user_id: str
    scopes: frozenset[str]
    expires_at: float


def load_or_create_secret(data_dir: Path) -> str:
    """The embedded default's HS256 secret, created once (mode 0600) and reused."""
    path = data_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


class TokenService:
    """Verifies (and, with a shared secret, issues) tokens for one settings object."""

    def __init__(self, settings: Settings) -> None:
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._secret: str | None = settings.jwt_secret
        self._public_key: str | None = settings.jwt_public_key
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwt_jwks_file is not None:
            try:
                self._jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ConfigError(f"RUNWIRE_JWT_JWKS_FILE: cannot load: {exc}") from None
        uses_hs = any(a.startswith("HS") for a in self._algorithms)
        if uses_hs and self._secret is None:
            self._secret = load_or_create_secret(settings.data_dir)

    def _key_for(self, token: str, header: dict[str, Any]) -> Any:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("token algorithm not allowed")
        if alg.startswith("HS"):
            return self._secret
        if self._jwks is not None:
            kid = header.get("kid")
            for key in self._jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key
            raise AuthError("no key for token")
        return self._public_key

    def verify(self, token: str | None) -> Principal:
        """Check a token.

        Raises:
            AuthError: missing, malformed, expired, not yet valid, wrong issuer/audience,
                wrong signature or a disallowed algorithm.
        """
        if not token:
            raise AuthError("missing token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token too long")
        try:
            header = jwt.get_unverified_header(token)
            key = self._key_for(token, header)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise AuthError("invalid token subject")
        scope = claims.get("scope", "")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Principal(user_id=sub, scopes=scopes, expires_at=float(claims["exp"]))

    def issue(self, user_id: str, *, scopes: str = "", ttl: float = 86400.0) -> str:
        """A signed token (shared-secret algorithms only; for the CLI and tests)."""
        alg = next((a for a in self._algorithms if a.startswith("HS")), None)
        if alg is None or self._secret is None:
            raise ConfigError("runwire token needs an HS* algorithm and a secret")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + int(ttl)}
        if scopes:
            claims["scope"] = scopes
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secret, algorithm=alg)

