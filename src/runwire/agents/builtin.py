"""``builtin``: the offline demo model — deterministic, no network, real tool calls.

It speaks pydantic-ai's model protocol (a ``FunctionModel``), so runs with it take the
same path as runs with a provider: its thinking becomes ``agent_thinking``, its tool
calls go through the dispatcher, its streamed text becomes ``partial_result``.

How it decides (:func:`decide`), on the newest request of the conversation:

1. the request carries tool results → answer from them (errors are explained);
2. "search/find/look for … my threads/messages/…" → ``search_threads(query)``;
3. a time or date question → ``current_time(zone)``: an IANA name in the text, else a
   known city (:data:`~runwire.agents.tools.CITY_TIMEZONES`), else the place named after
   "in" as given (the tool reports it if unknown), else UTC;
4. an arithmetic expression (digits with + - * / // % ** ^ x ×, or plus/minus/times/
   divided by) → ``calculator(expression)``;
5. a place alone ("and in Paris?") right after a time question in the history → time;
6. ``/tool <name> <json args>`` → that tool (checked first: any registered tool, offline);
   ``notify <to>: <text>`` → ``send_notification(to, text)`` (which waits for the user's
   approval; a denial comes back as the call's error and is explained);
7. ``ask <agent>: <request>`` or ``@<agent> <request>`` → delegate to that sub-agent;
8. an agent whose only tool takes one text argument passes the request to it;
9. otherwise a short fixed answer saying what this demo model can do.

Each step but (1) starts with a thinking part saying what it will do. Streaming: the
thought in three bursts, the answer in token-sized deltas (:func:`chunks`), each item
preceded by ``delta_delay`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import (
    AgentInfo,
    DeltaThinkingCalls,
    DeltaThinkingPart,
    DeltaToolCall,
    DeltaToolCalls,
    FunctionModel,
)
from pydantic_ai.tools import ToolDefinition

from runwire.agents.builtin_answers import ToolResult, explain
from runwire.agents.tools import CITY_TIMEZONES

BUILTIN_MODEL_NAME: Final = "builtin"
TOKEN_CHARS: Final = 4  # answer deltas are about as long as an LLM's tokens


@dataclass(frozen=True, slots=True)
class ToolStep:
    """Call `tool_name` with `args` after thinking `thought`."""

    thought: str
    tool_name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AnswerStep:
    """Answer `text` (after thinking `thought`, if any)."""

    text: str
    thought: str | None = None


Step: TypeAlias = ToolStep | AnswerStep


_SEARCH_VERB: Final = re.compile(r"\b(search|find|look (?:up|for|through))\b", re.I)
_SEARCH_WHERE: Final = re.compile(r"\b(threads?|messages?|conversations?|chats?|history)\b", re.I)
_SEARCH_QUERY: Final = (
    re.compile(r"[\"“']([^\"”']+)[\"”']"),
    re.compile(r"\bfor\s+(.+?)(?:\s+in\s+(?:all\s+)?(?:of\s+)?my\s+\w+)?[\s?.!]*$", re.I),
    re.compile(r"\b(?:search|find)\s+(.+?)\s+in\s+(?:all\s+)?(?:of\s+)?my\s+\w+", re.I),
    re.compile(r"\b(?:about|mentioning|regarding|containing)\s+(.+?)[\s?.!]*$", re.I),
)
_TIME: Final = re.compile(
    r"\b(what(?:'s| is)? the (?:time|date)|what time|current (?:time|date)|time is it|"
    r"time now|local time|time in|today's date|what day is it)\b", re.I)
_IANA: Final = re.compile(r"\b([A-Z][A-Za-z]+(?:/[A-Z][A-Za-z_+\-]+)+|UTC|GMT)\b")
_PLACE_AFTER_IN: Final = re.compile(r"\bin\s+([A-Za-z][\w .'\-]*?)[\s?.!]*$", re.I)
_FOLLOW_UP_PLACE: Final = re.compile(r"^\W*(and|what about|how about)?\s*(?:in\s+)?"
                                     r"([A-Za-z][\w .'/\-]*?)[\s?.!]*$", re.I)
_WORD_OPS: Final = (
    (re.compile(r"\bto the power of\b", re.I), "**"),
    (re.compile(r"\bmultiplied by\b|\btimes\b", re.I), "*"),
    (re.compile(r"\bdivided by\b", re.I), "/"),
    (re.compile(r"\bplus\b", re.I), "+"),
    (re.compile(r"\bminus\b", re.I), "-"),
    (re.compile(r"(?<=\d)\s*[x×]\s*(?=[\d(])"), "*"),
    (re.compile(r"÷"), "/"),
    (re.compile(r"\^"), "**"),
)
_ARITH_RUN: Final = re.compile(r"[\d.\s()+\-*/%]+")
_HAS_OPERATION: Final = re.compile(r"[\d.)]\s*(?:\*\*|//|[+\-*/%])\s*[(\-+]*\s*[\d.(]")
_CHUNK: Final = re.compile(r"\S+\s*|\s+")
_ASK: Final = re.compile(r"^\s*(?:ask\s+([A-Za-z_][\w\-]*)\s*[:,]|@([A-Za-z_][\w\-]*))\s*(.*)$",
                         re.I | re.S)
_BUILTIN_TOOLS: Final = frozenset({"calculator", "current_time", "search_threads",
                                   "send_notification"})
_NOTIFY: Final = re.compile(r"^\s*notify\s+([^:\n]{1,200}?)\s*:\s*(.+?)\s*$", re.I | re.S)
_EXPLICIT_TOOL: Final = re.compile(r"^\s*/tool\s+([A-Za-z_][\w.\-]*)\s*(.*?)\s*$", re.S)

HELP_TEXT: Final = (
    "I'm runwire's **offline demo model** (`builtin`): I don't call a real LLM, but I do "
    "show the whole agent loop with real tools. Try:\n\n"
    "- arithmetic — `what is 12*(3+4)?`\n"
    "- time — `what time is it in Tokyo?`\n"
    "- search — `find budget in my threads`\n"
    "- a notification, sent once you approve it — `notify bob: the build is green`\n\n"
    "To talk to a real model, set `RUNWIRE_MODEL`:\n\n"
    "```bash\n"
    "export OPENAI_API_KEY=sk-...\n"
    "RUNWIRE_MODEL=openai-chat:gpt-4o-mini runwire serve\n"
    "```"
)


# ---- deciding ---------------------------------------------------------------------------

def decide(messages: Sequence[ModelMessage], tool_names: frozenset[str],
           tools: Sequence[ToolDefinition] = ()) -> Step:
    """The next step for the conversation `messages` (oldest first, newest a request)."""
    results = _tool_results(messages)
    if results:
        return AnswerStep("\n\n".join(explain(result) for result in results))
    prompts = _user_prompts(messages)
    text = prompts[-1] if prompts else ""
    step = (_delegation(text, tool_names) or _intent(text) or _follow_up(text, prompts[:-1])
            or _only_tool(text, tools))
    if isinstance(step, ToolStep) and step.tool_name not in tool_names:
        return AnswerStep(
            f"This agent has no `{step.tool_name}` tool, so I can't do that here.\n\n{HELP_TEXT}",
            thought=f"I would use {step.tool_name}, but this agent does not have it.")
    if step is None:
        return AnswerStep(HELP_TEXT, thought="No arithmetic, time or search request here, so no "
                                             "tool is needed: I'll say what this demo can do.")
    return step


def _intent(text: str) -> Step | None:
    explicit = _explicit_tool(text)
    if explicit is not None:
        return explicit
    notify = _NOTIFY.match(text)
    if notify is not None:
        to, message = notify.group(1).strip(), notify.group(2)
        return ToolStep(f"The user wants {to} notified: I'll call send_notification (it waits "
                        "for the user's approval).", "send_notification",
                        {"to": to, "text": message})
    if _SEARCH_VERB.search(text) and _SEARCH_WHERE.search(text):
        query = _search_query(text)
        if query is None:
            return AnswerStep("What should I search for? Try: *find budget in my threads*.",
                              thought="A search request without a query: I'll ask for one.")
        return ToolStep(f'I\'ll search the user\'s own threads for "{query}" with '
                        "search_threads.", "search_threads", {"query": query})
    if _TIME.search(text):
        zone, place = _zone_in(text)
        where = f"in {place}" if place else "with no place given, so in UTC"
        return ToolStep(f"The user asks for the time {where}: I'll call current_time with "
                        f"{zone!r}.", "current_time", {"timezone": zone})
    expression = _expression_in(text)
    if expression is not None:
        return ToolStep(f"This is arithmetic, so I'll evaluate `{expression}` with the "
                        "calculator tool instead of guessing.", "calculator",
                        {"expression": expression})
    return None


def _delegation(text: str, tool_names: frozenset[str]) -> Step | None:
    """`ask <agent>: <request>` or `@<agent> <request>`, for a delegate of this agent."""
    match = _ASK.match(text)
    if match is None:
        return None
    agent, request = match.group(1) or match.group(2), match.group(3).strip()
    if agent not in tool_names:
        return None
    return ToolStep(f"The user wants the {agent} agent: I'll delegate to it.", agent,
                    {"request": request or text})


def _only_tool(text: str, tools: Sequence[ToolDefinition]) -> Step | None:
    """An agent with a single tool of a single text argument (a typical sub-agent) passes
    the request to it."""
    own = [t for t in tools if t.name not in _BUILTIN_TOOLS]
    if len(own) != 1 or not text.strip():
        return None
    schema = own[0].parameters_json_schema
    params = schema.get("properties", {})
    if len(params) != 1:
        return None
    (param, info), = params.items()
    if info.get("type") != "string":
        return None
    value = _PLACE_AFTER_IN.search(text)
    arg = value.group(1) if value else text.strip().rstrip("?.!")
    return ToolStep(f"I have one tool, {own[0].name}: I'll ask it about {arg!r}.", own[0].name,
                    {param: arg})


def _explicit_tool(text: str) -> Step | None:
    """`/tool <name> <json args>`: call any registered tool (try your own tools offline)."""
    match = _EXPLICIT_TOOL.match(text)
    if match is None:
        return None
    name, raw = match.group(1), match.group(2) or "{}"
    try:
        args = json.loads(raw)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        return AnswerStep(f"The arguments of `/tool {name}` must be a JSON object, like "
                          '`/tool calculator {"expression": "1+1"}`.')
    return ToolStep(f"The user asks me to call {name} directly.", name, args)


def _follow_up(text: str, earlier_prompts: Sequence[str]) -> Step | None:
    """"and in Paris?" right after a time question: the time there."""
    if not earlier_prompts or not _TIME.search(earlier_prompts[-1]):
        return None
    match = _FOLLOW_UP_PLACE.match(text)
    if match is None or len(text.split()) > 6:
        return None
    zone, place = _zone_in(f"in {match.group(2)}")
    if place is None or (match.group(1) is None and zone == place and not _IANA.match(zone)):
        return None  # a lone word that is not a known place ("hello") is not a follow-up
    return ToolStep(f"This follows the earlier time question, so I'll look up the time in "
                    f"{place} with current_time ({zone!r}).", "current_time", {"timezone": zone})


def _search_query(text: str) -> str | None:
    for pattern in _SEARCH_QUERY:
        match = pattern.search(text)
        if match:
            query = match.group(1).strip(" ?.!")
            if query and not _SEARCH_WHERE.fullmatch(query):
                return query
    return None


def _zone_in(text: str) -> tuple[str, str | None]:
    """(zone name for current_time, the place as the user said it or None)."""
    explicit = _IANA.search(text)
    if explicit:
        return explicit.group(1), explicit.group(1)
    lowered = text.lower()
    for city in sorted(CITY_TIMEZONES, key=len, reverse=True):
        if re.search(rf"\b{re.escape(city)}\b", lowered):
            return CITY_TIMEZONES[city], city.title()
    named = _PLACE_AFTER_IN.search(text)
    if named:
        place = named.group(1).strip()
        return place, place
    return "UTC", None


def _expression_in(text: str) -> str | None:
    for pattern, operator in _WORD_OPS:
        text = pattern.sub(operator, text)
    candidates = [run.strip() for run in _ARITH_RUN.findall(text)]
    candidates = [_balanced(c) for c in candidates if _HAS_OPERATION.search(c)]
    return max(candidates, key=len) if candidates else None


def _balanced(expression: str) -> str:
    """Drop parentheses that a sentence wrapped around the expression, and an opening
    parenthesis or operator left dangling by the words after it ("6*7 (sent offline)")."""
    while expression and expression[-1] in "(+-*/%":
        expression = expression[:-1].rstrip()
    while expression.endswith(")") and expression.count(")") > expression.count("("):
        expression = expression[:-1].rstrip()
    while expression.startswith("(") and expression.count("(") > expression.count(")"):
        expression = expression[1:].lstrip()
    return expression


def _user_prompts(messages: Sequence[ModelMessage]) -> list[str]:
    prompts: list[str] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    content = part.content
                    prompts.append(content if isinstance(content, str) else " ".join(
                        item for item in content if isinstance(item, str)))
    return prompts


def _tool_results(messages: Sequence[ModelMessage]) -> list[ToolResult]:
    """The tool results in the newest request, with the arguments of their calls."""
    if not messages or not isinstance(messages[-1], ModelRequest):
        return []
    calls = {part.tool_call_id: part for message in messages
             if isinstance(message, ModelResponse)
             for part in message.parts if isinstance(part, ToolCallPart)}
    results: list[ToolResult] = []
    for part in messages[-1].parts:
        if isinstance(part, ToolReturnPart | RetryPromptPart):
            call = calls.get(part.tool_call_id)
            args = call.args_as_dict() if call is not None else {}
            name = part.tool_name or (call.tool_name if call else "tool")
            if isinstance(part, RetryPromptPart):
                results.append(ToolResult(name, args, None, part.model_response()))
            elif part.outcome != "success":
                results.append(ToolResult(name, args, None, part.model_response_str(
                    wrap_if_error=False)))
            else:
                results.append(ToolResult(name, args, part.content, None))
    return results


# ---- answering (see runwire.agents.builtin_answers) ---------------------------------

def chunks(text: str, *, max_len: int = TOKEN_CHARS) -> list[str]:
    """`text` cut into token-sized deltas: words, long words in pieces of `max_len` chars.

    Joined, the chunks are `text` again.
    """
    pieces: list[str] = []
    for word in _CHUNK.findall(text):
        while len(word) > max_len and word[max_len:].strip():
            pieces.append(word[:max_len])
            word = word[max_len:]
        pieces.append(word)
    return pieces


def thought_chunks(thought: str, *, parts: int = 3) -> list[str]:
    """`thought` in `parts` word-aligned pieces (reasoning streams in a few bursts)."""
    words = _CHUNK.findall(thought)
    size = max(1, -(-len(words) // parts))
    return ["".join(words[i:i + size]) for i in range(0, len(words), size)]


# ---- the pydantic-ai model --------------------------------------------------------------

def builtin_model(*, delta_delay: float = 0.0) -> FunctionModel:
    """The ``builtin`` model; its answer deltas are `delta_delay` seconds apart."""
    if delta_delay < 0:
        raise ValueError("delta_delay must be >= 0")

    def tool_names(info: AgentInfo) -> frozenset[str]:
        return frozenset(tool.name for tool in info.function_tools)

    async def pace() -> None:
        if delta_delay:
            await asyncio.sleep(delta_delay)  # pacing for humans, not synchronisation

    async def stream(messages: list[ModelMessage], info: AgentInfo
                     ) -> AsyncIterator[str | DeltaToolCalls | DeltaThinkingCalls]:
        # Every streamed item is preceded by one delay, like a model producing tokens.
        step = decide(messages, tool_names(info), info.function_tools)
        if step.thought is not None:
            for piece in thought_chunks(step.thought):
                await pace()
                thinking: DeltaThinkingCalls = {0: DeltaThinkingPart(content=piece)}
                yield thinking
        if isinstance(step, ToolStep):
            await pace()
            call: DeltaToolCalls = {1: DeltaToolCall(
                name=step.tool_name, json_args=json.dumps(step.args),
                tool_call_id=_call_id())}
            yield call
            return
        for delta in chunks(step.text):
            await pace()
            yield delta

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = decide(messages, tool_names(info), info.function_tools)
        parts: list[ModelResponsePart] = []
        if step.thought is not None:
            parts.append(ThinkingPart(content=step.thought))
        if isinstance(step, ToolStep):
            parts.append(ToolCallPart(step.tool_name, step.args, tool_call_id=_call_id()))
        else:
            parts.append(TextPart(content=step.text))
        return ModelResponse(parts=parts)

    return FunctionModel(respond, stream_function=stream, model_name=BUILTIN_MODEL_NAME)


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"
