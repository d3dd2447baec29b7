"""The `runwire` command: settings errors, token issuing, migrate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runwire.auth import TokenService
from runwire.settings import load_settings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runwire", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_bad_setting_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_cli("token", "--user", "a", env={"RUNWIRE_DATA_DIR": str(tmp_path),
                                                  "RUNWIRE_MAX_MESSAGE_SIZE": "lots"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RUNWIRE_MAX_MESSAGE_SIZE" in lines[0]


def test_postgres_without_a_jwt_secret_refuses_to_start(tmp_path: Path) -> None:
    result = run_cli("token", "--user", "a", env={
        "RUNWIRE_DATA_DIR": str(tmp_path),
        "RUNWIRE_DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1/test"})
    assert result.returncode == 2 and "RUNWIRE_JWT_SECRET" in result.stderr


def test_token_is_accepted_by_a_server_with_the_same_data_dir(tmp_path: Path) -> None:
    env = {"RUNWIRE_DATA_DIR": str(tmp_path)}
    first = run_cli("token", "--user", "alice", "--scope", "tools:admin", env=env)
    second = run_cli("token", "--user", "alice", env=env)
    assert first.returncode == 0 and second.returncode == 0
    verifier = TokenService(load_settings(data_dir=tmp_path))  # what `serve` builds
    principal = verifier.verify(first.stdout.strip())
    assert principal.user_id == "alice" and principal.scopes == {"tools:admin"}
    assert verifier.verify(second.stdout.strip()).user_id == "alice"
    secret = (tmp_path / "jwt_secret")
    assert oct(secret.stat().st_mode & 0o777) == "0o600"


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    result = run_cli("migrate", env={"RUNWIRE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runwire.db").exists()
