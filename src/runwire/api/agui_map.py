"""runwire events → AG-UI events (SPEC 8), a pure mapping without I/O.

One :class:`AgUiMapper` per AG-UI run: it is fed runwire's envelopes of that run in seq
order and returns the AG-UI events (the official ``ag-ui-protocol`` models) to send.

Mapping:
    - ``partial_result`` → ``TEXT_MESSAGE_START`` (first delta of a message) +
      ``TEXT_MESSAGE_CONTENT``; ``agent_response`` → ``TEXT_MESSAGE_END`` (or the whole
      START/CONTENT/END when the answer was not streamed).
    - ``tool_executing`` → ``TOOL_CALL_START`` / ``TOOL_CALL_ARGS`` (the arguments as JSON) /
      ``TOOL_CALL_END``; ``tool_completed`` → ``TOOL_CALL_RESULT`` (the result as JSON, or
      ``"error: …"``).
    - ``agent_thinking`` → one reasoning block (``REASONING_START``, message start, content,
      end, ``REASONING_END``).
    - Events of a sub-agent (``agent_name`` other than the run's supervisor) are wrapped in
      ``STEP_STARTED`` / ``STEP_FINISHED`` named after the sub-agent; nested sub-agents
      nest steps.
    - ``approval_required`` → ``RUN_FINISHED`` with an ``interrupt`` outcome (one interrupt
      per pending call, ``reason: "tool_approval"``, id ``<run_id>/<tool_call_id>``); the
      run waits for the decision (an AG-UI ``resume`` entry, or runwire's own ways).
    - ``agent_completed`` → ``RUN_FINISHED`` (outcome ``success`` or ``cancelled``, the
      answer as ``result``, token usage); ``agent_error`` → ``RUN_ERROR`` with its code.
    - ``message_created``, ``agent_started`` and ``agent_progress`` have no AG-UI
      counterpart and are left out.
    Before every event that is not a text delta, an open text message is closed first, so
    the client never sees interleaved messages.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

SUPERVISOR = "supervisor"


def interrupt_id(run_id: str, tool_call_id: str) -> str:
    """An AG-UI interrupt id names runwire's run and the waiting call (a ``resume``
    entry answers it)."""
    return f"{run_id}/{tool_call_id}"


def parse_interrupt_id(value: str) -> tuple[str, str] | None:
    run_id, sep, call_id = value.rpartition("/")
    return (run_id, call_id) if sep and run_id and call_id else None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class AgUiMapper:
    """Stateful translation of one run's events (module docstring).

    Args:
        thread_id, run_id: the AG-UI ids of the run (echoed in RUN_STARTED/FINISHED).
        supervisor: the agent whose events are not a step (updated by ``agent_started``).
    """

    def __init__(self, thread_id: str, run_id: str, *, supervisor: str = SUPERVISOR) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.supervisor = supervisor
        self.finished = False
        self._open_text: str | None = None
        self._streamed: set[str] = set()
        self._steps: list[str] = []
        self._reasoning = 0

    # ---- start and end -----------------------------------------------------------------

    def started(self) -> list[BaseEvent]:
        return [RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id,
                                timestamp=_now_ms())]

    def error(self, code: str, message: str) -> list[BaseEvent]:
        """End the run with RUN_ERROR (closing what is open)."""
        if self.finished:
            return []
        out = self._close_all()
        self.finished = True
        return [*out, RunErrorEvent(message=message, code=code, timestamp=_now_ms())]

    # ---- runwire events ----------------------------------------------------------------

    def feed(self, frame: dict[str, Any]) -> list[BaseEvent]:
        """The AG-UI events for one runwire envelope (a decoded frame of this run)."""
        if self.finished:
            return []
        kind: str = frame["type"]
        p: dict[str, Any] = frame.get("payload") or {}
        if kind == "agent_started":
            self.supervisor = str(p.get("agent_name") or self.supervisor)
            return []
        if kind in ("message_created", "agent_progress"):
            return []
        if kind == "partial_result":
            return self._delta(p)
        out = self._close_text()
        if kind == "agent_completed":
            return [*out, *self._completed(p)]
        if kind == "agent_error":
            return [*out, *self.error(str(p.get("code") or "internal"),
                                      str(p.get("message") or "the run failed"))]
        out += self._step_for(p.get("agent_name"))
        if kind == "agent_response":
            return [*out, *self._response(p)]
        if kind == "tool_executing":
            call_id = str(p["tool_call_id"])
            return [*out,
                    ToolCallStartEvent(tool_call_id=call_id, tool_call_name=str(p["tool_name"])),
                    ToolCallArgsEvent(tool_call_id=call_id, delta=_json(p.get("tool_args") or {})),
                    ToolCallEndEvent(tool_call_id=call_id)]
        if kind == "tool_completed":
            call_id = str(p["tool_call_id"])
            error = p.get("error")
            content = f"error: {error}" if error is not None else _json(p.get("result"))
            return [*out, ToolCallResultEvent(message_id=f"{call_id}-result",
                                              tool_call_id=call_id, content=content,
                                              role="tool")]
        if kind == "agent_thinking":
            return [*out, *self._thinking(str(p.get("thought") or ""))]
        if kind == "approval_required":
            return [*out, *self._interrupt(p, str(frame.get("run_id") or ""))]
        return out

    # ---- parts -------------------------------------------------------------------------

    def _delta(self, p: dict[str, Any]) -> list[BaseEvent]:
        message_id = str(p["message_id"])
        delta = str(p.get("delta") or "")
        out: list[BaseEvent] = []
        if self._open_text != message_id:
            out += self._close_text()
            out += self._step_for(p.get("agent_name"))
            out.append(TextMessageStartEvent(message_id=message_id, role="assistant"))
            self._open_text = message_id
            self._streamed.add(message_id)
        if delta:
            out.append(TextMessageContentEvent(message_id=message_id, delta=delta))
        return out

    def _response(self, p: dict[str, Any]) -> list[BaseEvent]:
        message_id = str(p["message_id"])
        if message_id in self._streamed:
            return []  # streamed and closed already (closing came first)
        content = str(p.get("content") or "")
        out: list[BaseEvent] = [TextMessageStartEvent(message_id=message_id, role="assistant")]
        if content:
            out.append(TextMessageContentEvent(message_id=message_id, delta=content))
        out.append(TextMessageEndEvent(message_id=message_id))
        self._streamed.add(message_id)
        return out

    def _thinking(self, thought: str) -> list[BaseEvent]:
        if not thought:
            return []
        self._reasoning += 1
        rid = f"{self.run_id}-reasoning-{self._reasoning}"
        return [ReasoningStartEvent(message_id=rid),
                ReasoningMessageStartEvent(message_id=rid, role="reasoning"),
                ReasoningMessageContentEvent(message_id=rid, delta=thought),
                ReasoningMessageEndEvent(message_id=rid),
                ReasoningEndEvent(message_id=rid)]

    def _completed(self, p: dict[str, Any]) -> list[BaseEvent]:
        out = self._close_steps()
        self.finished = True
        outcome: RunFinishedSuccessOutcome | RunFinishedCancelledOutcome = (
            RunFinishedCancelledOutcome() if p.get("status") == "cancelled"
            else RunFinishedSuccessOutcome())
        usage = p.get("usage") or {}
        tokens = [TokenUsage(input_tokens=usage.get("input_tokens"),
                             output_tokens=usage.get("output_tokens"),
                             total_tokens=usage.get("total_tokens"))] if usage else None
        return [*out, RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id,
                                       result=p.get("result"), outcome=outcome, usage=tokens,
                                       timestamp=_now_ms())]

    def _interrupt(self, p: dict[str, Any], run_id: str) -> list[BaseEvent]:
        out = self._close_steps()
        self.finished = True
        call_id = str(p.get("tool_call_id"))
        interrupt = Interrupt(id=interrupt_id(run_id, call_id), reason="tool_approval",
                              tool_call_id=call_id,
                              message=f"{p.get('tool_name')} needs approval",
                              expires_at=p.get("expires_at"))
        return [*out, RunFinishedEvent(
            thread_id=self.thread_id, run_id=self.run_id, timestamp=_now_ms(),
            outcome=RunFinishedInterruptOutcome(interrupts=[interrupt]))]

    # ---- open things -------------------------------------------------------------------

    def _step_for(self, agent: Any) -> list[BaseEvent]:
        """Open/close steps so that `agent`'s events sit in its own step."""
        name = str(agent) if agent else self.supervisor
        if name == self.supervisor:
            return self._close_steps()
        out: list[BaseEvent] = []
        if name in self._steps:
            while self._steps[-1] != name:
                out.append(StepFinishedEvent(step_name=self._steps.pop()))
            return out
        self._steps.append(name)
        return [StepStartedEvent(step_name=name)]

    def _close_text(self) -> list[BaseEvent]:
        if self._open_text is None:
            return []
        message_id, self._open_text = self._open_text, None
        return [TextMessageEndEvent(message_id=message_id)]

    def _close_steps(self) -> list[BaseEvent]:
        out: list[BaseEvent] = []
        while self._steps:
            out.append(StepFinishedEvent(step_name=self._steps.pop()))
        return out

    def _close_all(self) -> list[BaseEvent]:
        return [*self._close_text(), *self._close_steps()]
