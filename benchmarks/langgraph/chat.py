"""The LangGraph streaming peer: one node calling ``ChatOpenAI`` (langchain-openai) on the
bench's paced fake provider (``OPENAI_BASE_URL``), the way a LangGraph user streams an LLM.

Clients stream it with ``stream_mode: messages-tuple``: every provider token arrives as one
``messages`` event (an ``AIMessageChunk`` and its metadata), nothing stored per token.
"""

from __future__ import annotations

import os

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph

# The latency rows load this graph too (without a provider): it is only called by the
# streaming rows, which set OPENAI_BASE_URL.
llm = ChatOpenAI(model="fake-model",
                 base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                 api_key=os.environ.get("OPENAI_API_KEY", "sk-bench-not-a-real-key"),
                 streaming=True, max_retries=0, timeout=120)


async def call_model(state: MessagesState) -> dict[str, object]:
    return {"messages": [await llm.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("model", call_model)
builder.add_edge(START, "model")
builder.add_edge("model", END)
graph = builder.compile()
