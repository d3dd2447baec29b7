"""Settings: environment variables with prefix ``RUNWIRE_`` (or a ``.env`` file).

A bad value stops start-up with one line naming the setting (:func:`load_settings`).
Every duration is a float in seconds so tests can use fractions of a second.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runwire.errors import ConfigError
from runwire.protocol.codes import MultitaskStrategy

JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"]
PositiveFloat = Annotated[float, Field(gt=0)]


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """All runwire settings (SPEC 5.1). Field names map to ``RUNWIRE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="RUNWIRE_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Path(".runwire")
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = Field(default="runwire:", min_length=1, max_length=64)
    # every Redis call on a hot path (rate limits, presence, publish, history cache) waits
    # at most this long; a ping must be answered within 2 s even while Redis hangs
    redis_timeout: float = Field(default=0.5, gt=0, le=2.0)

    jwt_secret: str | None = Field(default=None, repr=False)
    jwt_public_key: str | None = Field(default=None, repr=False)
    jwt_jwks_file: Path | None = None
    jwt_algorithms: Annotated[tuple[JwtAlgorithm, ...], NoDecode] = ("HS256",)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()

    model: str = "builtin"
    agents: str | None = None
    builtin_delta_delay: float = Field(default=0.02, ge=0)

    max_connections_per_user: int = Field(default=3, ge=1)
    max_message_size: int = Field(default=65536, ge=1024)
    outbound_chunk_size: int = Field(default=65536, ge=256)
    outbound_queue_size: int = Field(default=1000, ge=10)
    send_timeout: PositiveFloat = 10.0
    ws_compression: bool = True  # permessage-deflate: ~38 KiB more per connection
    heartbeat_interval: PositiveFloat = 30.0
    sse_keepalive: PositiveFloat = 15.0  # comment line on idle SSE streams (proxies)
    connection_timeout: PositiveFloat = 600.0

    # Edges (docs/security.md): slowloris, socket count, request bodies.
    http_header_timeout: PositiveFloat = 10.0
    http_keepalive_timeout: PositiveFloat = 5.0
    max_open_connections: int = Field(default=10_000, ge=1)
    http_backlog: int = Field(default=2048, ge=1)
    max_request_body: int = Field(default=1_048_576, ge=1024)

    rate_limit_messages: str = "30/minute"
    rate_limit_frames: str = "1000/minute"
    rate_limit_abuse_close: int = Field(default=20, ge=1)

    max_concurrent_agents: int = Field(default=10, ge=1)
    multitask_strategy: MultitaskStrategy = "enqueue"
    agent_execution_timeout: PositiveFloat = 30.0
    tool_timeout: PositiveFloat = 10.0
    max_history_size: int = Field(default=100, ge=0)
    approval_tools: Annotated[tuple[str, ...], NoDecode] = ()
    approval_timeout: PositiveFloat = 86400.0

    webhook_urls: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_timeout: PositiveFloat = 10.0
    webhook_retry_hours: PositiveFloat = 24.0

    event_retention_events: int = Field(default=1000, ge=1)
    event_retention_hours: PositiveFloat = 24.0

    run_lease_seconds: PositiveFloat = 15.0
    shutdown_grace: float = Field(default=30.0, ge=0)
    retry_lost_runs: bool = False

    node_id: str = Field(default_factory=_default_node_id)
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout: PositiveFloat = 5.0
    metrics_token: str | None = Field(default=None, repr=False)
    otel_endpoint: str | None = None
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("jwt_algorithms", "allowed_origins", "approval_tools", "webhook_urls",
                     mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _valid_webhook_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from urllib.parse import urlsplit

        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _valid_webhook_secret(cls, value: str | None) -> str | None:
        import base64
        import binascii

        if value is None:
            return None
        if not value.startswith("whsec_"):
            raise ValueError("must look like whsec_<base64> (Standard Webhooks)")
        try:
            key = base64.b64decode(value[len("whsec_"):] + "==", validate=False)
        except (binascii.Error, ValueError):
            raise ValueError("must look like whsec_<base64> (Standard Webhooks)") from None
        if len(key) < 24:
            raise ValueError("the key is shorter than 24 bytes")
        return value

    @field_validator("rate_limit_messages", "rate_limit_frames")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '30/minute': {value!r}") from exc
        return value

    @field_validator("approval_tools")
    @classmethod
    def _tool_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Names only here; that each is a registered tool is checked when the registry is
        # built (the user's AGENTS module may add tools).
        bad = [name for name in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", name)]
        if bad:
            raise ValueError(f"not a tool name: {bad[0]!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_db_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _check_webhooks(self) -> Settings:
        if self.webhook_urls and self.webhook_secret is None:
            raise ValueError("webhook_secret: required when webhook_urls are set")
        return self

    @model_validator(mode="after")
    def _check_jwt(self) -> Settings:
        if not self.jwt_algorithms:
            raise ValueError("jwt_algorithms: at least one algorithm is required")
        asymmetric = [a for a in self.jwt_algorithms if not a.startswith("HS")]
        if asymmetric and not (self.jwt_public_key or self.jwt_jwks_file):
            raise ValueError(
                "jwt_public_key: required (or jwt_jwks_file) for algorithms "
                + ",".join(asymmetric)
            )
        shared = self.redis_url is not None or self.resolved_database_url.startswith("postgresql")
        if shared and not (self.jwt_secret or self.jwt_public_key or self.jwt_jwks_file):
            raise ValueError(
                "jwt_secret: must be set when PostgreSQL or Redis is configured (nodes must agree)"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'runwire.db').resolve()}"

    @property
    def embedded(self) -> bool:
        """True on the single-node default (SQLite, in-process bus)."""
        return self.redis_url is None and self.resolved_database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides).

    Raises:
        ConfigError: one line naming the bad setting, e.g.
            ``RUNWIRE_MAX_MESSAGE_SIZE: Input should be a valid integer``.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        name = str(loc[0]) if loc else ""
        message = str(first["msg"])
        if not name and ":" in message:  # model-level check: "field: reason"
            name, _, message = message.removeprefix("Value error, ").partition(":")
        var = f"RUNWIRE_{name.upper()}" if name else "settings"
        raise ConfigError(f"{var}: {message.removeprefix('Value error, ').strip()}") from None
