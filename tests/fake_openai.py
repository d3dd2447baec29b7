"""A local fake OpenAI-compatible Chat Completions server (real HTTP, streaming SSE).

Scripted by the last user message:
    "tool: <expression>"  → streams a `calculator` tool call (argument deltas), then after
                            the tool result (one after the last user message) streams
                            "The answer is <result>."
    "slow"                → streams a word every 0.1 s for a long time (stop/timeouts)
    "stall"               → sends one chunk, then nothing
    "fail <status>"       → answers HTTP <status> (500, 429, 400)
    "fail once"           → HTTP 503 the first time, then a normal answer
    "paced <n> <rate>"    → paced mode: <n> tokens at <rate> tokens/s (see below)
    "multi"               → one response with three tool calls: send_notification to ann
                            and to bob (they need approval) and calculator 2+3; after the
                            results streams "Results: " + each tool message's content
                            joined by " | "
    anything else         → streams "Hello from the fake model." in small deltas, or the
                            paced answer when the server was made with ``paced=(n, rate)``
It records every request and when a streaming client went away.

Paced mode (the streaming-capacity benchmark): token ``i`` of a request is due at
``start + i / rate`` (an absolute schedule: a late wake-up does not slow the rest) and its
text is ``"<i>@<send time> "``, the send time being ``time.time()`` in integer microseconds
taken just before the chunk is handed to the server. A client on the same machine parses
each token (:data:`PACED_TOKEN`) and computes its lag as receive time − send time; the
concatenated answer of a complete stream is exactly :func:`paced_text_ok`'s shape.

Standalone (benchmarks): ``python -m tests.fake_openai --port P --tokens 100 --rate 20``
serves until SIGTERM/SIGINT, every unscripted prompt answered in paced mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

PACED_TOKEN = re.compile(r"(\d+)@(\d+) ")
"""One paced token: (index, send time in µs since the epoch), followed by a space."""


def paced_tokens(text: str) -> list[tuple[int, float]]:
    """The (index, send time in seconds) of every paced token in `text`."""
    return [(int(i), int(t) / 1e6) for i, t in PACED_TOKEN.findall(text)]


def paced_text_ok(text: str, n: int) -> bool:
    """True when `text` is exactly tokens 0…n-1 in order, each once, nothing else."""
    tokens = PACED_TOKEN.findall(text)
    return [int(i) for i, _ in tokens] == list(range(n)) and \
        PACED_TOKEN.sub("", text) == ""


@dataclass
class FakeOpenAI:
    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnected_at: list[float] = field(default_factory=list)
    port: int = 0
    paced: tuple[int, float] | None = None  # (tokens, rate): the default answer is paced
    record: bool = True  # False: keep no per-request history (a long benchmark run)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None,
               usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                "created": int(time.time()), "model": "fake-model",
                                "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    async def _stream(self, parts: list[dict[str, Any]], finish: str,
                      delay: float = 0.0) -> AsyncIterator[str]:
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            for part in parts:
                if delay:
                    await asyncio.sleep(delay)  # ok-sleep: a deliberately slow fake provider
                yield self._chunk(part)
            yield self._chunk({}, finish, usage={"prompt_tokens": 11, "completion_tokens": 7,
                                                 "total_tokens": 18})
            yield "data: [DONE]\n\n"
        finally:
            self.disconnected_at.append(time.monotonic())

    async def _paced(self, n: int, rate: float) -> AsyncIterator[str]:
        """`n` tokens at `rate` per second, each stamped with its send time."""
        head = self._chunk({"role": "assistant", "content": ""})
        prefix, _, suffix = self._chunk({"content": "\x00"}).partition("\\u0000")
        try:
            yield head
            start = time.monotonic()
            for i in range(n):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # ok-sleep: the pacing itself
                yield f"{prefix}{i}@{time.time_ns() // 1000} {suffix}"
            yield self._chunk({}, "stop", usage={"prompt_tokens": 5, "completion_tokens": n,
                                                 "total_tokens": 5 + n})
            yield "data: [DONE]\n\n"
        finally:
            if self.record:
                self.disconnected_at.append(time.monotonic())

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        if self.record:
            self.requests.append(body)
        messages = body.get("messages", [])
        last_user_at = max((i for i, m in enumerate(messages) if m.get("role") == "user"),
                           default=-1)
        last_user = messages[last_user_at] if last_user_at >= 0 else {}
        content = last_user.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = str(content or "")
        # Only this turn's results: earlier turns' tool calls come along as history.
        tool_results = [m for m in messages[last_user_at + 1:] if m.get("role") == "tool"]
        if text == "fail once":
            self.failed_once = getattr(self, "failed_once", 0) + 1
            if self.failed_once == 1:
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}},
                                    status_code=503)
        elif text.startswith("fail "):
            status = int(text.split()[1])
            return JSONResponse({"error": {"message": f"fake failure {status}",
                                           "type": "server_error", "code": str(status)}},
                                status_code=status)
        headers = {"content-type": "text/event-stream"}
        paced = _paced_request(text) or (self.paced if not tool_results and
                                         not text.startswith(("tool:", "slow", "stall"))
                                         else None)
        if paced is not None:
            return StreamingResponse(self._paced(*paced), headers=headers)
        if text == "multi":
            if not tool_results:
                calls = [("send_notification", {"to": "ann", "text": "one"}),
                         ("send_notification", {"to": "bob", "text": "two"}),
                         ("calculator", {"expression": "2+3"})]
                deltas = [{"tool_calls": [{"index": i, "id": f"call_m{len(self.requests)}_{i}",
                                           "type": "function", "function": {
                                               "name": name, "arguments": json.dumps(args)}}]}
                          for i, (name, args) in enumerate(calls)]
                return StreamingResponse(self._stream(deltas, "tool_calls"), headers=headers)
            joined = " | ".join(str(m["content"]) for m in tool_results)
            return StreamingResponse(self._stream([{"content": f"Results: {joined}"}], "stop"),
                                     headers=headers)
        if text.startswith("tool:") and not tool_results:
            expr = text.split(":", 1)[1].strip()
            args = json.dumps({"expression": expr})
            call_id = f"call_{len(self.requests)}"  # unique: earlier calls come as history
            parts = [{"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                      "function": {"name": "calculator", "arguments": ""}}]}]
            parts += [{"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 5]}}]}
                      for i in range(0, len(args), 5)]
            return StreamingResponse(self._stream(parts, "tool_calls"), headers=headers)
        if tool_results:
            result = json.loads(tool_results[-1]["content"]) if tool_results[-1]["content"].startswith("{") else tool_results[-1]["content"]
            value = result.get("result") if isinstance(result, dict) else result
            words = f"The answer is {value}.".split(" ")
            return StreamingResponse(self._stream(
                [{"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)],
                "stop"), headers=headers)
        if text == "slow":
            return StreamingResponse(self._stream([{"content": f"w{i} "} for i in range(1000)],
                                                  "stop", delay=0.1), headers=headers)
        if text == "stall":
            return StreamingResponse(self._stream([{"content": "…"}] + [{"content": ""}] * 1,
                                                  "stop", delay=3600), headers=headers)
        words = ["Hello", "from", "the", "fake", "model."]
        return StreamingResponse(self._stream(
            [{"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)],
            "stop"), headers=headers)

    def app(self) -> Starlette:
        async def ready(_: Request) -> Response:
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/v1/chat/completions", self.completions,
                                       methods=["POST"]),
                                 Route("/ready", ready, methods=["GET"])])


def _paced_request(text: str) -> tuple[int, float] | None:
    """(tokens, rate) of a ``paced <n> <rate>`` prompt, else None."""
    parts = text.split()
    if len(parts) == 3 and parts[0] == "paced":
        with contextlib.suppress(ValueError):
            n, rate = int(parts[1]), float(parts[2])
            if n >= 0 and rate > 0:
                return n, rate
    return None


class ThreadServer:
    """Runs an ASGI app on a loopback port in its own thread (test peers)."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_config=None, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "fake provider did not start"
            time.sleep(0.01)  # ok-sleep: waiting for the server thread to listen
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


class FakeOpenAIServer(ThreadServer):
    """:class:`FakeOpenAI` on a loopback port."""

    def __init__(self) -> None:
        self.fake = FakeOpenAI()
        super().__init__(self.fake.app())
        self.fake.port = self.port
        self.base_url = f"{self.url}/v1"

    def start(self) -> FakeOpenAIServer:
        super().start()
        return self


def main() -> None:
    """Serve the fake provider in this process until SIGTERM/SIGINT (benchmarks)."""
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=100, help="paced tokens per answer")
    parser.add_argument("--rate", type=float, default=20.0, help="paced tokens per second")
    parser.add_argument("--backlog", type=int, default=4096)
    args = parser.parse_args()
    fake = FakeOpenAI(paced=(args.tokens, args.rate), record=False, port=args.port)
    uvicorn.run(fake.app(), host=args.host, port=args.port, log_level="warning", access_log=False,
                lifespan="off", backlog=args.backlog)


if __name__ == "__main__":
    main()
