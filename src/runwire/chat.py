"""``runwire chat``: a terminal chat on :class:`runwire.client.RunwireClient` (rich).

Answers stream as they come and are shown as Markdown (rich's ``Live`` on a terminal; the
final rendering when the output is a pipe). The thread id is printed, so ``--thread``
continues it later. Ctrl-C during an answer stops the run on the server (``stop_agent``
with its run id), waits for the run's end, then exits; a second Ctrl-C exits at once.
A tool call that needs approval (SPEC 7) is put to the user: ``y`` approves it, ``n`` denies
it (with an optional reason), ``e`` approves it with edited JSON arguments (asked again
when the server finds them invalid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from typing import Any, Final

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from websockets.exceptions import WebSocketException

from runwire.client import RunwireClient, RunwireClosed
from runwire.protocol.codes import TERMINAL_EVENTS, CloseCode

EXIT_INTERRUPTED: Final = 130
STOP_WAIT: Final = 10.0  # seconds to wait for the stopped run's end after Ctrl-C


def _read_line(console: Console, prompt: str) -> asyncio.Future[str]:
    """`console.input` in a daemon thread (one blocked on stdin must not keep the process
    alive after Ctrl-C, as the default executor's thread would)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()

    def settle(value: str | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value or "")

    def read() -> None:
        try:
            line = console.input(prompt)
        except BaseException as exc:  # EOFError, KeyboardInterrupt: handed to the loop
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, line, None)

    threading.Thread(target=read, name="runwire-chat-input", daemon=True).start()
    return fut


class _Answer:
    """The answer being streamed: Markdown re-rendered as deltas arrive."""

    def __init__(self, console: Console) -> None:
        self.text = ""
        self.live: Live | None = None
        self.console = console

    def add(self, delta: str) -> None:
        self.text += delta
        if self.live is None:
            self.live = Live(Markdown(self.text), console=self.console, refresh_per_second=8,
                             vertical_overflow="visible")
            self.live.start()
        else:
            self.live.update(Markdown(self.text))

    def finish(self, content: str | None = None) -> None:
        if content is not None and content != self.text:
            if self.live is None:
                self.console.print(Markdown(content))
            else:
                self.live.update(Markdown(content))
        if self.live is not None:
            self.live.stop()
        self.live = None
        self.text = ""


def _render(console: Console, answer: _Answer, frame: dict[str, Any]) -> None:
    kind, p = frame["type"], frame.get("payload", {})
    if kind != "partial_result" and kind != "agent_response":
        answer.finish()
    if kind == "agent_thinking":
        console.print(f"[dim italic]· {p.get('thought', '')}[/]", highlight=False)
    elif kind == "tool_executing":
        console.print(f"[cyan]⚙ {p['tool_name']}[/] {p.get('tool_args')}", highlight=False)
    elif kind == "tool_completed":
        outcome = p.get("error") or p.get("result")
        console.print(f"[cyan]  ↳ {outcome}[/] [dim]({p.get('duration_ms')} ms)[/]",
                      highlight=False)
    elif kind == "partial_result":
        answer.add(p.get("delta", ""))
    elif kind == "agent_response":
        answer.finish(p.get("content", ""))
    elif kind == "agent_progress":
        console.print(f"[yellow]{p.get('message')}[/]")
    elif kind == "agent_error":
        console.print(f"[red]error {p['code']}: {p['message']}[/]")
    elif kind == "agent_completed" and p.get("status") == "cancelled":
        console.print("[yellow]stopped[/]")


class _Interrupts:
    """SIGINT while an answer runs: first stops the run, second exits; at the prompt: exits."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.stop_requested = asyncio.Event()
        self.answering = False

    def __call__(self) -> None:
        if self.answering and not self.stop_requested.is_set():
            self.stop_requested.set()
        else:
            self.task.cancel()


async def _answer(console: Console, client: RunwireClient, text: str, thread_id: str | None,
                  interrupts: _Interrupts) -> tuple[str | None, bool]:
    """Sends `text`, shows the run until its end; (thread id, whether Ctrl-C stopped it)."""
    interrupts.answering = True
    message_id = await client.send_message(text, thread_id=thread_id)
    run_id: str | None = None
    answer = _Answer(console)
    asked: dict[str, dict[str, Any]] = {}  # tool_call_id → its approval_required payload
    stopped_at: float | None = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            if interrupts.stop_requested.is_set() and stopped_at is None and run_id is not None:
                stopped_at = loop.time()
                answer.finish()
                console.print("[yellow]stopping the run on the server…[/]")
                await client.send("stop_agent", {"run_id": run_id})
            timeout = 300.0 if stopped_at is None else STOP_WAIT - (loop.time() - stopped_at)
            if timeout <= 0:
                console.print("[red]the server did not confirm the stop[/]")
                return thread_id, True
            recv = asyncio.ensure_future(client.recv())
            waiting: set[asyncio.Future[Any]] = {recv}
            if not interrupts.stop_requested.is_set():  # else: handled once run_id is known
                waiting.add(asyncio.ensure_future(interrupts.stop_requested.wait()))
            done, _ = await asyncio.wait(waiting, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            for other in waiting - {recv}:
                other.cancel()
            if recv not in done:
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, RunwireClosed):
                    await recv
                if not done:
                    raise TimeoutError("no answer from the server")
                continue
            frame = recv.result()
            payload = frame.get("payload", {})
            if frame["type"] == "message_ack" and payload.get("message_id") == message_id:
                run_id = payload["run_id"]
                if thread_id is None:
                    thread_id = payload["thread_id"]
                    console.print(f"[dim]thread {thread_id} — continue it later with "
                                  f"`runwire chat --thread {thread_id}`[/]", highlight=False,
                                  soft_wrap=True)
            elif (frame["type"] == "approval_required" and run_id is not None
                  and frame.get("run_id") == run_id):
                answer.finish()
                asked[payload["tool_call_id"]] = payload
                await _decide(console, client, run_id, payload, interrupts)
            elif (frame["type"] == "error" and run_id is not None
                  and str(payload.get("request_id")).startswith("approve:")):
                console.print(f"[red]{payload.get('message')}[/]", highlight=False)
                call = asked.get(str(payload["request_id"]).removeprefix("approve:"))
                if call is not None and payload.get("code") == "validation_error":
                    await _decide(console, client, run_id, call, interrupts)
            elif frame["type"] == "error" and payload.get("request_id") in (None, message_id):
                console.print(f"[red]{payload.get('message')}[/]")
                return thread_id, False
            elif run_id is not None and frame.get("run_id") == run_id:
                _render(console, answer, frame)
                if frame["type"] in TERMINAL_EVENTS:
                    return thread_id, stopped_at is not None
    finally:
        answer.finish()
        interrupts.answering = False


async def _decide(console: Console, client: RunwireClient, run_id: str, call: dict[str, Any],
                  interrupts: _Interrupts) -> None:
    """Ask the user about one call waiting for approval and send the decision (nothing is
    sent when Ctrl-C comes first: the run is being stopped)."""
    console.print(f"[magenta]? {call['agent_name']} wants to call {call['tool_name']} with "
                  f"{json.dumps(call['tool_args'], ensure_ascii=False)}[/]", highlight=False)
    decision: dict[str, Any] | None = None
    while decision is None:
        choice = await _ask(console, "[bold]approve? [y]es / [n]o / [e]dit: [/]", interrupts)
        if choice is None:
            return
        choice = choice.strip().lower()
        if choice in ("y", "yes"):
            decision = {"approved": True}
        elif choice in ("n", "no"):
            reason = await _ask(console, "[bold]reason (optional): [/]", interrupts)
            if reason is None:
                return
            decision = {"approved": False, **({"reason": reason.strip()} if reason.strip()
                                              else {})}
        elif choice in ("e", "edit"):
            raw = await _ask(console, "[bold]arguments (JSON): [/]", interrupts)
            if raw is None:
                return
            try:
                args = json.loads(raw)
            except ValueError:
                args = None
            if not isinstance(args, dict):
                console.print("[red]the arguments must be a JSON object[/]")
                continue
            decision = {"approved": True, "args": args}
    await client.send("approve_tool", {"run_id": run_id, "tool_call_id": call["tool_call_id"],
                                       **decision}, request_id=f"approve:{call['tool_call_id']}")


async def _ask(console: Console, prompt: str, interrupts: _Interrupts) -> str | None:
    """A line from the user, or None when Ctrl-C (stop) came first."""
    line = _read_line(console, prompt)
    stop = asyncio.ensure_future(interrupts.stop_requested.wait())
    waiting: set[asyncio.Future[Any]] = {line, stop}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not line.done():
        return None
    try:
        return line.result()
    except EOFError:
        interrupts.stop_requested.set()
        return None


async def run_chat(url: str, token: str, thread_id: str | None) -> int:
    """The chat loop; returns the exit status (0 done, 1 connection problem, 130 Ctrl-C)."""
    console = Console()
    task = asyncio.current_task()
    assert task is not None
    interrupts = _Interrupts(task)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
        loop.add_signal_handler(signal.SIGINT, interrupts)
    try:
        async with RunwireClient.connect(url, token) as client:
            model = client.established["payload"]["model"]
            demo = " (offline demo model)" if model.get("demo") else ""
            console.print(f"[green]connected to {url} as {client.user_id} · model "
                          f"{model['name']}{demo}[/] — empty line or Ctrl-D to quit",
                          highlight=False)
            if thread_id:
                console.print(f"[dim]continuing thread {thread_id}[/]", highlight=False,
                              soft_wrap=True)
            while True:
                try:
                    text = await _read_line(console, "[bold]you> [/]")
                except (EOFError, KeyboardInterrupt):
                    return 0
                if not text.strip():
                    return 0
                thread_id, stopped = await _answer(console, client, text, thread_id, interrupts)
                if stopped:
                    return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        console.print("\n[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except RunwireClosed as exc:
        if exc.code == CloseCode.UNAUTHORIZED:
            console.print(f"[red]the server refused the token ({exc.code}: {exc.reason}). Was "
                          "the token made with another RUNWIRE_DATA_DIR (or RUNWIRE_JWT_SECRET) "
                          "than the server's? Run `runwire chat` with the server's settings, "
                          "or pass --token.[/]", highlight=False, soft_wrap=True)
        else:
            console.print(f"[red]disconnected: {exc}[/]", highlight=False)
        return 1
    except (OSError, TimeoutError, WebSocketException) as exc:
        console.print(f"[red]cannot connect to {url}: {exc or type(exc).__name__}[/]",
                      highlight=False)
        return 1
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
