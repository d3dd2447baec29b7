"""Full-text search over a user's own messages (SPEC 10).

The index is the database's (migration 0004): SQLite FTS5 with porter stemming, PostgreSQL
``to_tsvector('english', content)`` under a GIN index; both are updated by the statement
that writes the message, so a message is searchable as soon as its transaction commits.

Contracts:
    - Only ``user_id``'s messages (user and assistant) are searched; threads of other users
      never appear, whatever the query.
    - Best match first (SQLite ``bm25``, PostgreSQL ``ts_rank``), then newest first.
    - The query is words, never syntax: SQLite gets each word quoted (AND of the words),
      PostgreSQL ``websearch_to_tsquery``; a query without words matches nothing.
    - Pages are by offset: ranks depend on the whole index, so they can shift between
      pages while messages are added (a hit may repeat or be skipped then).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from runwire.store.db import Database
from runwire.store.models import UtcDateTime

MAX_QUERY = 200
FTS_TABLE = "messages_fts"  # SQLite: the FTS5 table; its shadow tables are messages_fts_*


def is_index_table(name: str) -> bool:
    """A table SQLite's FTS5 keeps for the index (not a model's table)."""
    return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
_WORD = re.compile(r"\w+", re.UNICODE)

_SQLITE = text("""
SELECT m.thread_id, t.title, m.message_id, m.role,
       snippet(messages_fts, 0, '', '', '…', 16) AS snippet, m.created_at, m.content
FROM messages_fts
JOIN messages m ON m.id = messages_fts.rowid
JOIN threads t ON t.id = m.thread_id
WHERE messages_fts MATCH :q AND m.user_id = :user_id
ORDER BY bm25(messages_fts), m.id DESC
LIMIT :limit OFFSET :offset
""").columns(created_at=UtcDateTime())

_POSTGRES = text("""
SELECT m.thread_id, t.title, m.message_id, m.role,
       ts_headline('english', m.content, q,
                   'StartSel="", StopSel="", MaxWords=24, MinWords=8, MaxFragments=2, '
                   'FragmentDelimiter=" … "') AS snippet,
       m.created_at, m.content
FROM messages m
JOIN threads t ON t.id = m.thread_id,
     websearch_to_tsquery('english', :q) AS q
WHERE m.user_id = :user_id AND to_tsvector('english'::regconfig, m.content) @@ q
ORDER BY ts_rank(to_tsvector('english'::regconfig, m.content), q) DESC, m.id DESC
LIMIT :limit OFFSET :offset
""").columns(created_at=UtcDateTime())


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching message of the caller."""

    thread_id: str
    thread_title: str
    message_id: str
    role: str
    snippet: str
    created_at: datetime
    content: str


def fts5_query(query: str) -> str | None:
    """The words of `query` as an FTS5 expression (each quoted: no operators, no column
    filters from user input); None when it has no words."""
    words = _WORD.findall(query[:MAX_QUERY])
    if not words:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


async def search_messages(session: AsyncSession, user_id: str, query: str, *, limit: int,
                          offset: int = 0) -> list[SearchHit]:
    """`user_id`'s messages matching `query`, best match first (see the module contract)."""
    dialect = (await session.connection()).dialect
    if dialect.name == "sqlite":
        q = fts5_query(query)
        statement = _SQLITE
    else:
        q = query[:MAX_QUERY] if _WORD.search(query[:MAX_QUERY]) else None
        statement = _POSTGRES
    if q is None or limit <= 0:
        return []
    rows = await session.execute(statement, {"q": q, "user_id": user_id, "limit": limit,
                                             "offset": offset})
    return [SearchHit(thread_id, title, message_id, role, " ".join(snip.split()), created,
                      content)
            for thread_id, title, message_id, role, snip, created, content in rows]


class MessageSearcher:
    """Owner-scoped search with its own read transaction (REST and the search tool)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(self, user_id: str, query: str, *, limit: int,
                     offset: int = 0) -> list[SearchHit]:
        async with self._db.read() as session:
            return await search_messages(session, user_id, query, limit=limit, offset=offset)
