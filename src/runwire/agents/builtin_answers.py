"""How the ``builtin`` demo model words its answer from tool results (see
:mod:`runwire.agents.builtin`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

SHOWN_RESULT: Final = 300  # characters of an unknown tool's result quoted in the answer


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool call's result as the model saw it: `value`, or `error` (e.g. a denial)."""

    tool_name: str
    args: dict[str, Any]
    value: Any
    error: str | None


def explain(result: ToolResult) -> str:
    error = result.error.rstrip(". ") if result.error is not None else None
    value = result.value
    match result.tool_name:
        case "calculator":
            expression = result.args.get("expression", "")
            if error is not None:
                return f"I couldn't calculate `{expression}`: {error}."
            return f"Using the calculator: {value['expression']} = **{value['result']}**."
        case "current_time":
            if error is not None:
                return f"I couldn't tell the time: {error}."
            return (f"It is **{value['time']}** on {value['weekday']}, {value['date']} in "
                    f"{value['timezone']} (UTC{value['utc_offset']}).")
        case "search_threads":
            query = result.args.get("query", "")
            if error is not None:
                return f"I couldn't search your threads: {error}."
            if not value:
                return f'I found no messages matching "{query}" in your threads.'
            lines = [f"- **{hit['title'] or 'Untitled'}** ({hit['role']}): {hit['snippet']}"
                     for hit in value]
            return (f'I found {len(value)} message{"s" if len(value) != 1 else ""} matching '
                    f'"{query}":\n\n' + "\n".join(lines))
        case "send_notification":
            to = result.args.get("to", "")
            if error is not None:
                return f"I did not send the notification to **{to}**: {error}."
            return f"Sent the notification to **{value['to']}**: “{value['text']}”."
        case name:
            if error is not None:
                return f"`{name}` failed: {error}."
            if isinstance(value, str):  # a sub-agent's answer
                return f"**{name}** says: {value}"
            shown = json.dumps(value, default=str, ensure_ascii=False)
            if len(shown) > SHOWN_RESULT:
                return (f"`{name}` returned {len(shown):,} characters of JSON, starting: "
                        f"`{shown[:SHOWN_RESULT]}…`")
            return f"`{name}` returned: `{shown}`"
