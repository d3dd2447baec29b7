"""The prose of docs/performance.md: what limits each number (from the profiles)."""

from __future__ import annotations

from typing import Any


def section(res: dict[str, Any]) -> list[str]:
    return ["## What limits each number", "", "(to be written)", ""]


def how_to_run() -> list[str]:
    return [
        "## How to run",
        "",
        "```sh",
        "make bench            # installs .venv + benchmarks/.venv + benchmarks/.venv-langgraph",
        ".venv/bin/python -m benchmarks.run --quick   # a smaller smoke run",
        "```",
        "",
    ]
