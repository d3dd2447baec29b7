"""A thread's earlier messages as the model's history (pydantic-ai messages, oldest first).

What a "message" is here: one row of the thread's messages (a user question or an
assistant answer, as the REST API lists them). The run executor hands in the newest
`max_history_size` rows before the run's own user message; each row names the run it
belongs to. Every completed run stored pydantic-ai's messages of that run
(``result.new_messages_json()``: its user prompt, tool calls, tool results and answer); a
run whose rows are in the window is replaced by those messages as one block, so a tool
call always travels with its result. Runs without stored messages (older rows, runs that
were cancelled, timed out or failed) fall back to their rows' texts, and so does a run
whose stored messages cannot be parsed (logged as a warning).

Earlier tool results longer than :data:`MAX_TOOL_RESULT_CHARS` are cut in the history (the
model read them whole in their own run); otherwise one large result would ride along with
every later request of the thread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, assert_never, cast

from pydantic import ValidationError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolReturnPart,
    UserPromptPart,
)

from runwire.agents.scope import HistoryMessage

log = logging.getLogger(__name__)

MAX_TOOL_RESULT_CHARS = 8_000


def dump_messages(messages: Sequence[ModelMessage]) -> str:
    """`messages` as the JSON :func:`thread_history` reads back."""
    return ModelMessagesTypeAdapter.dump_json(list(messages)).decode()


def load_messages(data: str) -> list[ModelMessage]:
    """Messages stored by :func:`dump_messages`."""
    return ModelMessagesTypeAdapter.validate_json(data)


def text_history(history: Sequence[HistoryMessage]) -> list[ModelMessage]:
    """Message texts as pydantic-ai history (oldest first), without tool calls.

    Leading assistant messages (cut off from their question by the history limit) and
    empty messages are dropped: providers expect a conversation to open with the user.
    """
    messages: list[ModelMessage] = []
    for message in history:
        if not message.content.strip() or (not messages and message.role == "assistant"):
            continue
        if message.role == "user":
            messages.append(ModelRequest(parts=[UserPromptPart(message.content)]))
        elif message.role == "assistant":
            messages.append(ModelResponse(parts=[TextPart(message.content)]))
        else:
            assert_never(message.role)
    return messages


def thread_history(rows: Sequence[HistoryMessage],
                   stored: Mapping[str, str]) -> list[ModelMessage]:
    """The model's history from a window of thread message rows (oldest first).

    Args:
        rows: the window: the newest `max_history_size` rows before the run's own user
            message, oldest first, all of the run's owner.
        stored: run id → that run's stored pydantic-ai messages (JSON), for the runs that
            have them.

    Runs are kept in the order of their first row; a run none of whose user rows is in the
    window (its question was cut off by the limit) is left out whole.
    """
    groups: dict[str, list[HistoryMessage]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.run_id or f"row:{index}", []).append(row)
    messages: list[ModelMessage] = []
    for key, group in groups.items():
        if not any(row.role == "user" for row in group):
            continue
        data = stored.get(key)
        parsed = _parse(key, data) if data is not None else None
        if parsed:
            messages.extend(_cut_tool_results(m) for m in parsed)
        else:
            messages.extend(text_history(group))
    return messages


def _parse(run_id: str, data: str) -> list[ModelMessage] | None:
    try:
        return ModelMessagesTypeAdapter.validate_json(data)
    except ValidationError as exc:
        log.warning("stored model messages of run %s are unreadable, using its texts: %s",
                    run_id, exc.errors()[0]["msg"] if exc.errors() else exc)
        return None


def _cut_tool_results(message: ModelMessage) -> ModelMessage:
    if not isinstance(message, ModelRequest):
        return message
    parts = []
    changed = False
    for part in message.parts:
        # Exactly ToolReturnPart: its subclasses (tool search, capabilities) type their content.
        if type(part) is ToolReturnPart:
            text = part.model_response_str()
            if len(text) > MAX_TOOL_RESULT_CHARS:
                cut = len(text) - MAX_TOOL_RESULT_CHARS
                plain = cast("ToolReturnPart[Any]", part)
                part = dataclasses.replace(
                    plain, content=f"{text[:MAX_TOOL_RESULT_CHARS]}… [{cut} characters cut]")
                changed = True
        parts.append(part)
    return dataclasses.replace(message, parts=parts) if changed else message
