"""The floor: pydantic-ai alone, no storage, no delivery — what runwire is compared to.

Run by the bench in its own process (runwire's venv, pinned to the server core) and prints
one JSON object on stdout:

``paced``: `streams` concurrent ``Agent.run`` calls with an ``event_stream_handler`` on the
paced fake provider (``openai-chat`` model, as runwire uses), started evenly over `ramp`
seconds; per text delta, lag = now − the token's send stamp. CPU is this process's.

``builtin``: runwire's builtin model and calculator tool (the same turn a builtin run
makes) — `runs` sequential runs (time to the first text delta, as
``user_message → first partial_result`` minus everything runwire adds), then `runs` more
from `clients` concurrent loops for CPU per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import AsyncIterable
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    AgentStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)

_TOKEN = re.compile(r"(\d+)@(\d+) ")


def _text_of(event: AgentStreamEvent) -> str:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""


async def paced(base_url: str, streams: int, tokens: int, rate: float, ramp: float
                ) -> dict[str, Any]:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("fake-model", provider=OpenAIProvider(
        base_url=base_url, api_key="sk-bench-not-a-real-key"))
    agent: Agent[None, str] = Agent(model)
    lags: list[float] = []
    texts: list[str] = ["" for _ in range(streams)]
    errors: list[str] = []

    async def one(i: int) -> None:
        await asyncio.sleep(ramp * i / streams)  # ok-sleep: the ramp (start times) itself
        parts: list[str] = []

        async def handler(_: RunContext[None], events: AsyncIterable[AgentStreamEvent]
                          ) -> None:
            async for event in events:
                text = _text_of(event)
                if text:
                    now = time.time()
                    parts.append(text)
                    lags.extend(now - int(t) / 1e6 for _, t in _TOKEN.findall(text))

        try:
            await agent.run(f"paced {tokens} {rate:g}", event_stream_handler=handler)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        texts[i] = "".join(parts)

    async with agent:
        # warm-up: connection pool, first-use imports
        await agent.run("paced 2 1000", event_stream_handler=drained)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(streams)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ok = sum(1 for t in texts if [int(i) for i, _ in _TOKEN.findall(t)] == list(range(tokens))
             and not _TOKEN.sub("", t))
    received = sum(len({i for i, _ in _TOKEN.findall(t)}) for t in texts)
    return {"lags": lags, "received": received, "complete_streams": ok, "errors": errors[:5],
            "cpu": cpu, "wall": wall}


async def drained(_: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
    async for _event in events:
        pass


async def builtin(runs: int, clients: int) -> dict[str, Any]:
    from pydantic_ai import Tool

    from runwire.agents.builtin import builtin_model
    from runwire.agents.tools import calculator

    agent: Agent[None, str] = Agent(builtin_model(delta_delay=0.0), tools=[Tool(calculator)])
    prompt = "what is 12*(3+4)?"
    first: list[float] = []

    async def timed() -> None:
        t0 = time.perf_counter()
        seen = False

        async def handler(_: RunContext[None], events: AsyncIterable[AgentStreamEvent]
                          ) -> None:
            nonlocal seen
            async for event in events:
                if not seen and _text_of(event):
                    seen = True
                    first.append(time.perf_counter() - t0)

        await agent.run(prompt, event_stream_handler=handler)

    for _ in range(20):  # warm-up
        await timed()
    first.clear()
    for _ in range(runs):
        await timed()
    done = 0

    async def loop() -> None:
        nonlocal done
        while done < runs:
            done += 1
            await agent.run(prompt, event_stream_handler=drained)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"first_text": first, "runs": done, "cpu": cpu, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("paced")
    p.add_argument("--base-url", required=True)
    p.add_argument("--streams", type=int, required=True)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--ramp", type=float, default=1.0)
    b = sub.add_parser("builtin")
    b.add_argument("--runs", type=int, default=200)
    b.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    if args.mode == "paced":
        out = asyncio.run(paced(args.base_url, args.streams, args.tokens, args.rate,
                                args.ramp))
    else:
        out = asyncio.run(builtin(args.runs, args.clients))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
