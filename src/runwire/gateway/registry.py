"""Which connections are open, per user (one registry per application)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runwire.gateway.connection import Connection


class ConnectionRegistry:
    """user_id → open connections, with an exact per-user limit.

    Adding and removing are synchronous (no await between check and insert), so the
    count stays exact under concurrent connects and disconnects on one event loop.
    """

    def __init__(self, *, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._by_user: dict[str, set[Connection]] = {}

    def try_add(self, conn: Connection) -> bool:
        conns = self._by_user.setdefault(conn.user_id, set())
        if len(conns) >= self.max_per_user:
            if not conns:
                del self._by_user[conn.user_id]
            return False
        conns.add(conn)
        return True

    def remove(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self._by_user[conn.user_id]

    def of_user(self, user_id: str) -> frozenset[Connection]:
        return frozenset(self._by_user.get(user_id, ()))

    def __iter__(self) -> Iterator[Connection]:
        for conns in list(self._by_user.values()):
            yield from list(conns)

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    def users(self) -> int:
        return len(self._by_user)
