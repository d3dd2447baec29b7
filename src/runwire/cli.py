"""The ``runwire`` command: serve, token, migrate, chat."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Annotated

import typer

from runwire.errors import ConfigError
from runwire.settings import Settings, load_settings

app = typer.Typer(help="runwire: a real-time gateway for AI agents.", no_args_is_help=True,
                  add_completion=False)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"runwire: invalid setting: {exc}", err=True)
        raise typer.Exit(2) from None


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    user: Annotated[str, typer.Option(help="User the printed login URL is for.")] = "",
    workers: Annotated[int, typer.Option(
        min=1, help="Server processes on this port (all cores); more than 1 needs "
        "PostgreSQL and RUNWIRE_REDIS_URL.")] = 1,
    reuse_port: Annotated[bool, typer.Option(
        hidden=True, help="Run as one of --workers N (SO_REUSEPORT, no banner).")] = False,
    ready_fd: Annotated[int | None, typer.Option(
        hidden=True, help="With --reuse-port: write one byte here once serving.")] = None,
) -> None:
    """Start the server (migrates the database first)."""
    from runwire.app import create_app
    from runwire.auth import TokenService
    from runwire.logs import configure
    from runwire.server import RunwireServer, server_config
    from runwire.workers import Supervisor, WorkerServer, bind_reuse_port, workers_problem

    settings = _settings()
    problem = workers_problem(settings, workers)
    if problem is not None:
        typer.echo(f"runwire: {problem}", err=True)
        raise typer.Exit(2)
    configure(settings.log_format, settings.log_level, settings.node_id)
    try:
        tokens = TokenService(settings)
    except ConfigError as exc:
        typer.echo(f"runwire: invalid setting: {exc}", err=True)
        raise typer.Exit(2) from None
    if reuse_port:  # one worker of a supervisor: no banner, the shared port
        worker = WorkerServer(server_config(create_app(settings), settings, host=host,
                                            port=port), ready_fd)
        worker.run(sockets=[bind_reuse_port(host, port)])
        return
    holder = None
    if workers > 1:
        # Bound (never listening) for the supervisor's life: resolves --port 0 to one port
        # for every worker and reports a port in use once, here.
        try:
            holder = bind_reuse_port(host, port)
        except OSError as exc:
            typer.echo(f"runwire: cannot bind {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
        port = int(holder.getsockname()[1])
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        token = tokens.issue(user or _default_user(), ttl=7 * 86400)
        login = f"http://{shown}:{port}/#token={token}"
    except ConfigError:
        login = f"http://{shown}:{port}/ (issue tokens with your identity provider)"
    typer.echo(f"\n  runwire is starting on http://{shown}:{port}"
               + (f" ({workers} workers)" if workers > 1 else "") +
               f"\n  open the chat (logs you in):\n\n    {login}\n", err=True)
    if holder is not None:
        argv = [sys.executable, "-m", "runwire", "serve", "--host", host, "--port", str(port),
                "--reuse-port"]
        with holder:
            code = Supervisor(argv, settings.node_id, workers).run()
        raise typer.Exit(code)
    RunwireServer(server_config(create_app(settings), settings, host=host, port=port),
                  freeze_gc=True).run()


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", help="User id (the token's sub).")],
    scope: Annotated[str, typer.Option(help="Space-separated scopes granted.")] = "",
    ttl: Annotated[float, typer.Option(help="Lifetime in seconds.", min=1)] = 86400.0,
    url: Annotated[bool, typer.Option(
        "--url", help="Print a login URL for the chat page instead of the bare token.")] = False,
    base: Annotated[str, typer.Option(
        help="The server's address, for --url.")] = "http://127.0.0.1:8000",
) -> None:
    """Print a token that the server started with the same settings accepts."""
    from runwire.auth import TokenService

    settings = _settings()
    try:
        issued = TokenService(settings).issue(user, scopes=scope, ttl=ttl)
    except ConfigError as exc:
        typer.echo(f"runwire: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{base.rstrip('/')}/#token={issued}" if url else issued)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from runwire.store.db import Database

    settings = _settings()

    async def run() -> None:
        db = Database(settings.resolved_database_url, timeout=60)
        try:
            await db.migrate()
        finally:
            await db.aclose()

    asyncio.run(run())
    typer.echo("database is up to date", err=True)


@app.command()
def chat(
    url: Annotated[str, typer.Option(help="WebSocket URL.")] = "ws://127.0.0.1:8000/ws",
    user: Annotated[str, typer.Option(help="User to chat as (token made locally).")] = "",
    token: Annotated[str, typer.Option(envvar="RUNWIRE_TOKEN", help="Use this token.")] = "",
    thread: Annotated[str, typer.Option(help="Continue this thread id.")] = "",
) -> None:
    """Chat in the terminal, with live streaming of thinking, tools and the answer.

    Without --token, a token is made with the server's secret: RUNWIRE_JWT_SECRET, or the
    jwt_secret file in RUNWIRE_DATA_DIR (run it where `runwire serve` runs). Nothing is
    created when there is none. Exits 1 when it cannot connect or the token is refused,
    130 after Ctrl-C.
    """
    from runwire.auth import SECRET_FILE, TokenService
    from runwire.chat import run_chat

    if not token:
        settings = _settings()
        if settings.jwt_secret is None and not (settings.data_dir / SECRET_FILE).exists():
            typer.echo(
                f"runwire chat: no token, and no server secret to make one with (neither "
                f"RUNWIRE_JWT_SECRET nor {settings.data_dir / SECRET_FILE}). Run it where "
                "`runwire serve` runs (same RUNWIRE_DATA_DIR), or pass --token / "
                "RUNWIRE_TOKEN (`runwire token --user NAME` there).", err=True)
            raise typer.Exit(2)
        try:
            token = TokenService(settings).issue(user or _default_user(), ttl=86400)
        except ConfigError as exc:
            typer.echo(f"runwire chat: {exc}", err=True)
            raise typer.Exit(2) from None
    sys.exit(asyncio.run(run_chat(url, token, thread or None)))


def main() -> None:
    app()
