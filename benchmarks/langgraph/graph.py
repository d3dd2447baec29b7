"""The LangGraph peer: one node doing the builtin model's calculator turn, no LLM.

runwire's ``builtin`` model answers "what is 12*(3+4)?" by deciding to use the calculator,
evaluating the expression and streaming the answer; this node does the same work (parse,
evaluate, format) so the two servers are compared on their own overhead.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

_OPS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                         ast.Div: operator.truediv, ast.USub: operator.neg}
_EXPR = re.compile(r"[\d.\s()+\-*/]+")


class State(TypedDict, total=False):
    content: str
    answer: str


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp):
        return float(_OPS[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp):
        return float(_OPS[type(node.op)](_eval(node.operand)))
    raise ValueError("unsupported expression")


def answer(state: State) -> State:
    runs = [r.strip() for r in _EXPR.findall(state.get("content", "")) if r.strip()]
    expression = max(runs, key=len) if runs else "0"
    result = _eval(ast.parse(expression, mode="eval"))
    return {"answer": f"Using the calculator: {expression} = **{result:g}**."}


builder = StateGraph(State)
builder.add_node("answer", answer)
builder.add_edge(START, "answer")
builder.add_edge("answer", END)
graph = builder.compile()
