"""The built-in tools: plain async functions, safe on untrusted (model-written) arguments.

Contract for every tool here (and for tools users register, see
:mod:`runwire.agents.registry`): a tool is an ``async def`` whose parameters are JSON
values; a tool that needs the run takes ``ctx: ToolContext`` first and reads the
:class:`~runwire.agents.scope.RunScope` from ``ctx.deps``. A tool returns a JSON-able value
or raises :class:`ToolError` with a message written for the model (and the user) to read.
"""

from __future__ import annotations

import ast
import math
from datetime import datetime
from types import MappingProxyType
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic_ai import RunContext
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from runwire.agents.scope import RunScope

ToolContext: TypeAlias = RunContext[RunScope]
"""What a tool that needs its run receives first: ``ctx.deps`` is the run's scope."""

Number: TypeAlias = int | float


class ToolError(Exception):
    """An expected tool failure; its message is shown to the model as the call's error."""


# ---- calculator -------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH: Final = 500
MAX_NESTING: Final = 50
MAX_MAGNITUDE: Final = 10**100  # operands and every intermediate result
MAX_EXPONENT: Final = 1000
_SIGNIFICANT_DIGITS: Final = 15  # hides binary noise such as 0.1 + 0.2 = 0.30000000000000004

_BINARY_OPS: Final = MappingProxyType({
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
    ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
})
_REFUSED: Final = MappingProxyType({
    ast.Name: "names", ast.Attribute: "attribute access", ast.Call: "function calls",
    ast.Subscript: "subscripts", ast.Compare: "comparisons", ast.BoolOp: "boolean operators",
    ast.Lambda: "lambdas", ast.IfExp: "conditionals", ast.NamedExpr: "assignments",
})


class CalculatorResult(TypedDict):
    expression: str
    result: Number


async def calculator(expression: str) -> CalculatorResult:
    """Evaluate an arithmetic expression: numbers, + - * / // % **, unary +/- and parentheses.

    The expression is parsed with :mod:`ast` and evaluated node by node; nothing is
    compiled or executed. Integers stay integers; a float result is rounded to 15
    significant digits, and a whole-numbered float becomes an int.

    Raises:
        ToolError: not arithmetic, too long, too deeply nested, a number or result over
            1e100, an exponent over 1000, or division by zero.
    """
    text = expression.strip()
    if not text:
        raise ToolError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"{text!r} is not a valid arithmetic expression") from None
    value = _evaluate(tree.body, depth=0)
    return {"expression": text, "result": _tidy(value)}


def _evaluate(node: ast.expr, *, depth: int) -> Number:
    if depth > MAX_NESTING:
        raise ToolError(f"the expression is nested more than {MAX_NESTING} levels deep")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError(f"only numbers are allowed, not {value!r}")
        return _bounded(value, what="number")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _evaluate(node.operand, depth=depth + 1)
        return operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left = _evaluate(node.left, depth=depth + 1)
        right = _evaluate(node.right, depth=depth + 1)
        return _bounded(_apply(node.op, left, right), what="result")
    for kind, label in _REFUSED.items():
        if isinstance(node, kind):
            raise ToolError(f"{label} are not allowed; only arithmetic on numbers is")
    raise ToolError(f"{type(node).__name__} is not allowed; only arithmetic on numbers is")


def _apply(op: ast.operator, left: Number, right: Number) -> Number:
    try:
        match op:
            case ast.Add():
                return left + right
            case ast.Sub():
                return left - right
            case ast.Mult():
                return left * right
            case ast.Div():
                return left / right
            case ast.FloorDiv():
                return left // right
            case ast.Mod():
                return left % right
            case ast.Pow():
                return _power(left, right)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    raise ToolError(f"operator {type(op).__name__} is not allowed")


def _power(base: Number, exponent: Number) -> Number:
    # Bound before computing: 9**9**9 must be refused, not calculated.
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponents are limited to ±{MAX_EXPONENT}")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > 100:
        raise ToolError("the result is too large (over 1e100)")
    result = base**exponent
    if isinstance(result, complex):
        raise ToolError("the result is not a real number")
    return result


def _bounded(value: Number, *, what: str) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError(f"the {what} is too large")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError(f"the {what} is too large (over 1e100)")
    return value


def _tidy(value: Number) -> Number:
    if isinstance(value, int):
        return value
    rounded = float(f"{value:.{_SIGNIFICANT_DIGITS}g}")
    if rounded.is_integer() and abs(rounded) < 2**53:
        return int(rounded)
    return rounded


# ---- current_time -----------------------------------------------------------------------

CITY_TIMEZONES: Final = MappingProxyType({
    "tokyo": "Asia/Tokyo", "japan": "Asia/Tokyo", "osaka": "Asia/Tokyo",
    "london": "Europe/London", "paris": "Europe/Paris", "berlin": "Europe/Berlin",
    "madrid": "Europe/Madrid", "rome": "Europe/Rome", "amsterdam": "Europe/Amsterdam",
    "moscow": "Europe/Moscow", "new york": "America/New_York", "nyc": "America/New_York",
    "chicago": "America/Chicago", "denver": "America/Denver",
    "los angeles": "America/Los_Angeles", "san francisco": "America/Los_Angeles",
    "seattle": "America/Los_Angeles", "toronto": "America/Toronto",
    "mexico city": "America/Mexico_City", "sao paulo": "America/Sao_Paulo",
    "são paulo": "America/Sao_Paulo", "sydney": "Australia/Sydney",
    "melbourne": "Australia/Melbourne", "auckland": "Pacific/Auckland",
    "singapore": "Asia/Singapore", "hong kong": "Asia/Hong_Kong", "beijing": "Asia/Shanghai",
    "shanghai": "Asia/Shanghai", "seoul": "Asia/Seoul", "mumbai": "Asia/Kolkata",
    "delhi": "Asia/Kolkata", "new delhi": "Asia/Kolkata", "india": "Asia/Kolkata",
    "dubai": "Asia/Dubai", "cairo": "Africa/Cairo", "johannesburg": "Africa/Johannesburg",
    "lagos": "Africa/Lagos", "nairobi": "Africa/Nairobi", "istanbul": "Europe/Istanbul",
})
"""Common place names (lower case) and their IANA zones; shared with the builtin model."""

_UTC_ALIASES: Final = frozenset({"utc", "gmt", "z", "zulu", "etc/utc"})


class CurrentTime(TypedDict):
    timezone: str
    iso: str
    date: str
    time: str
    weekday: str
    utc_offset: str


def resolve_timezone(name: str) -> ZoneInfo:
    """An IANA zone for `name` (an IANA key, ``UTC``, or a city of :data:`CITY_TIMEZONES`).

    Raises:
        ToolError: the name is empty or not a known zone.
    """
    key = name.strip()
    if not key:
        raise ToolError("the time zone is empty; use an IANA name such as 'Europe/Paris'")
    if key.lower() in _UTC_ALIASES:
        key = "UTC"
    key = CITY_TIMEZONES.get(key.lower(), key)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: keys zoneinfo refuses outright, e.g. absolute or '..' paths.
        raise ToolError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


async def current_time(timezone: str = "UTC") -> CurrentTime:
    """The current date and time in `timezone` (an IANA name such as 'Asia/Tokyo'; default UTC).

    Raises:
        ToolError: the time zone is unknown.
    """
    zone = resolve_timezone(timezone)
    now = datetime.now(zone)
    offset = now.strftime("%z")
    return {
        "timezone": zone.key,
        "iso": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M"),
        "weekday": now.strftime("%A"),
        "utc_offset": f"{offset[:3]}:{offset[3:]}",
    }


# ---- search_threads ---------------------------------------------------------------------

SEARCH_LIMIT: Final = 5
MAX_QUERY_LENGTH: Final = 200
SNIPPET_CHARS: Final = 160


class ThreadHit(TypedDict):
    thread_id: str
    title: str
    message_id: str
    role: str
    snippet: str


async def search_threads(ctx: ToolContext, query: str) -> list[ThreadHit]:
    """Search the calling user's own earlier messages (all their threads) for `query`.

    The user is always the run's owner (``ctx.deps.user_id``); nothing the model passes can
    widen the search to another user. At most 5 hits, each with a snippet around the match.

    Raises:
        ToolError: the query is empty or longer than 200 characters.
    """
    text = query.strip()
    if not text:
        raise ToolError("the search query is empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise ToolError(f"the search query is longer than {MAX_QUERY_LENGTH} characters")
    scope = ctx.deps
    hits = await scope.search(scope.user_id, text, limit=SEARCH_LIMIT)
    return [
        {
            "thread_id": hit.thread_id,
            "title": hit.thread_title,
            "message_id": hit.message_id,
            "role": hit.role,
            "snippet": snippet(hit.content, text),
        }
        for hit in hits[:SEARCH_LIMIT]
    ]


def snippet(content: str, query: str, *, width: int = SNIPPET_CHARS) -> str:
    """A single-line excerpt of `content` of at most about `width` chars around `query`."""
    flat = " ".join(content.split())
    if len(flat) <= width:
        return flat
    at = flat.lower().find(query.lower())
    start = max(0, at - width // 3) if at >= 0 else 0
    end = min(len(flat), start + width)
    start = max(0, end - width)
    return ("…" if start else "") + flat[start:end].strip() + ("…" if end < len(flat) else "")



# ---- send_notification ------------------------------------------------------------------

MAX_NOTIFICATION_TO: Final = 200
MAX_NOTIFICATION_TEXT: Final = 2000


class Notification(TypedDict):
    sent: bool
    to: str
    text: str


async def send_notification(to: str, text: str) -> Notification:
    """Send `text` to `to` — in this demo, the notification is recorded in the thread (the
    call's ``tool_completed`` event and the answer), nothing leaves the server.

    It is registered with ``requires_approval=True``: the run pauses until the user approves
    (possibly with edited arguments) or denies the call (SPEC 7).

    Raises:
        ToolError: an empty or over-long recipient or text.
    """
    to, text = to.strip(), text.strip()
    if not to or len(to) > MAX_NOTIFICATION_TO:
        raise ToolError(f"the recipient must be 1-{MAX_NOTIFICATION_TO} characters")
    if not text or len(text) > MAX_NOTIFICATION_TEXT:
        raise ToolError(f"the text must be 1-{MAX_NOTIFICATION_TEXT} characters")
    return {"sent": True, "to": to, "text": text}
