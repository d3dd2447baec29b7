"""``runwire chat``: a terminal chat on :class:`runwire.client.RunwireClient` (rich)."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console

from runwire.client import RunwireClient, RunwireClosed
from runwire.protocol.codes import TERMINAL_EVENTS


def _render(console: Console, frame: dict[str, Any]) -> None:
    kind, p = frame["type"], frame.get("payload", {})
    if kind == "agent_thinking":
        console.print(f"[dim italic]· {p.get('thought', '')}[/]")
    elif kind == "tool_executing":
        console.print(f"[cyan]⚙ {p['tool_name']}[/] {p.get('tool_args')}")
    elif kind == "tool_completed":
        outcome = p.get("error") or p.get("result")
        console.print(f"[cyan]  ↳ {outcome}[/] [dim]({p.get('duration_ms')} ms)[/]")
    elif kind == "partial_result":
        console.print(p["delta"], end="", soft_wrap=True, highlight=False)
    elif kind == "agent_response":
        console.print()  # the answer was streamed above; end its line
    elif kind == "agent_progress":
        console.print(f"[yellow]{p.get('message')}[/]")
    elif kind == "agent_error":
        console.print(f"[red]error {p['code']}: {p['message']}[/]")
    elif kind == "agent_completed" and p.get("status") == "cancelled":
        console.print("[yellow]cancelled[/]")


async def run_chat(url: str, token: str, thread_id: str | None) -> int:
    console = Console()
    try:
        async with RunwireClient.connect(url, token) as client:
            model = client.established["payload"]["model"]
            demo = " (offline demo model)" if model.get("demo") else ""
            console.print(f"[green]connected as {client.user_id} · model {model['name']}{demo}[/]"
                          " — empty line or Ctrl-D to quit")
            while True:
                try:
                    text = await asyncio.to_thread(console.input, "[bold]you> [/]")
                except EOFError:
                    return 0
                if not text.strip():
                    return 0
                message_id = await client.send_message(text, thread_id=thread_id)
                run_id: str | None = None
                while True:
                    frame = await client.recv(timeout=300)
                    payload = frame.get("payload", {})
                    if frame["type"] == "message_ack" and payload["message_id"] == message_id:
                        run_id = frame["payload"]["run_id"]
                        thread_id = frame["payload"]["thread_id"]
                    elif frame["type"] == "error":
                        console.print(f"[red]{frame['payload']['message']}[/]")
                        break
                    elif frame.get("run_id") == run_id:
                        _render(console, frame)
                        if frame["type"] in TERMINAL_EVENTS:
                            break
    except RunwireClosed as exc:
        console.print(f"[red]disconnected: {exc}[/]")
        return 1
    except OSError as exc:
        console.print(f"[red]cannot connect to {url}: {exc}[/]")
        return 1
