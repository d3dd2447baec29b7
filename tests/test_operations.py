"""The operations kit in deploy/: alert rules pass promtool, every query names a real metric."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from runwire.metrics import Metrics

from .conftest import missing_service

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NAME = re.compile(r"\brunwire_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported_names() -> set[str]:
    """Every metric family runwire exports (from the HELP lines, samples or not)."""
    metrics = Metrics("test-node")
    metrics.watch(lambda: {"connections_open": 0, "connected_users": 0,
                           "outbound_queue_frames_max": 0, "outbound_queue_frames_total": 0,
                           "runs_running": 0, "runs_queued": 0, "db_pool_in_use": 0,
                           "db_pool_overflow": 0, "bus_up": 1, "readiness_database": 1})
    text = metrics.render().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_service("promtool (Debian package prometheus) is not installed")
        return
    result = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yml")],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_and_panel_query_names_an_exported_metric() -> None:
    exported = {base(n) for n in exported_names()}
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries.append((DEPLOY / "alerts.yml").read_text())
    assert len(dashboard["panels"]) >= 12
    for query in queries:
        used = {base(n) for n in NAME.findall(query)}
        assert used, query
        assert used <= exported, f"unknown metrics {used - exported} in {query[:80]}"
