"""``GET /api/search``: full-text search over the caller's own messages (SPEC 10)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel

from runwire.api.deps import Api, User
from runwire.api.errors import problem_responses
from runwire.api.params import encode_cursor, int_cursor
from runwire.api.routes import Limit, Page
from runwire.protocol.frames import storable_text
from runwire.store.search import MAX_QUERY

router = APIRouter(prefix="/api", tags=["search"],
                   responses=problem_responses(401, 404, 422, 503))


class SearchItem(BaseModel):
    thread_id: str
    thread_title: str
    message_id: str
    role: str
    snippet: str
    created_at: datetime


@router.get("/search", response_model=Page[SearchItem])
async def search(api: Api, user: User,
                 q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY,
                                         pattern=r"^[^\x00]*$"),  # documented: no NUL
                              AfterValidator(storable_text)],
                 limit: Limit = 20, cursor: str | None = None) -> Page[SearchItem]:
    """The caller's messages (user and assistant) matching the words of `q`, best match
    first. Another user's messages never match. `next_cursor` pages on."""
    offset = int_cursor(cursor, high=100_000) if cursor else 0
    hits = await api.search.search(user.user_id, q, limit=limit + 1, offset=offset)
    more = len(hits) > limit
    items = [SearchItem(thread_id=h.thread_id, thread_title=h.thread_title,
                        message_id=h.message_id, role=h.role, snippet=h.snippet,
                        created_at=h.created_at) for h in hits[:limit]]
    return Page[SearchItem](items=items,
                            next_cursor=encode_cursor(offset + limit) if more else None)
