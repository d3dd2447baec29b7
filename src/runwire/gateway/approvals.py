"""The ``approve_tool`` frame (SPEC 7): the user's decision on a tool call waiting for
approval, through the same :meth:`RunService.decide` as ``POST /api/runs/{id}/approvals``.

A stored decision is answered by its ``approval_resolved`` event, which reaches every
connection of the user (this one included); a refused one by an ``error`` frame:
``not_found`` (no such call of this user's), ``conflict`` (decided already: the first
decision wins), ``validation_error`` (edited arguments that do not fit the tool; nothing
decided), ``storage_unavailable``.
"""

from __future__ import annotations

from runwire.auth import Principal
from runwire.errors import Conflict, InvalidArguments, NotFound, StorageUnavailable
from runwire.gateway.connection import Connection
from runwire.protocol.frames import ApproveTool
from runwire.runs.service import RunService


async def approve_tool(runs: RunService, conn: Connection, principal: Principal,
                       frame: ApproveTool) -> None:
    rid = frame.request_id
    try:
        await runs.decide(principal, frame.run_id, frame.decision)
    except NotFound as exc:
        conn.send_error("not_found", str(exc), rid)
    except Conflict as exc:
        conn.send_error("conflict", str(exc), rid)
    except InvalidArguments as exc:
        conn.send_error("validation_error", str(exc), rid)
    except StorageUnavailable:
        conn.send_error("storage_unavailable", "storage is unavailable; retry later", rid)
