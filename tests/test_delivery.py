"""Delivery guarantees over real sockets: resume/replay, chaos reconnects, chunking."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from runwire.client import RunwireClient, RunwireClosed

from .conftest import ServerHandle
from .helpers import api, client, thread_events

QUESTION = "what is 12*(3+4)?"


async def stored_log(server: ServerHandle, thread_id: str, user: str = "alice") -> list[dict[str, Any]]:
    async with api(server, user) as http:
        body = (await http.get(f"/api/threads/{thread_id}/events", params={"limit": 500})).json()
    return list(body["items"])


async def test_resume_replays_what_was_missed_then_replay_complete(server: ServerHandle) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
    thread_id = ack["payload"]["thread_id"]
    log = await stored_log(server, thread_id)
    async with client(server) as c:
        await c.send("resume", {"thread_id": thread_id, "after_seq": 3})
        got = await c.until(lambda f: f["type"] == "replay_complete")
    assert [f["seq"] for f in got[:-1]] == [e["seq"] for e in log[3:]]
    assert [json.dumps(f, sort_keys=True) for f in got[:-1]] == \
        [json.dumps(e, sort_keys=True) for e in log[3:]]
    assert got[-1]["payload"] == {"thread_id": thread_id, "last_seq": log[-1]["seq"],
                                  "complete": True}


async def test_resume_at_the_end_sends_nothing_and_ahead_of_log_is_incomplete(
    server: ServerHandle,
) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]
        last = (await stored_log(server, thread_id))[-1]["seq"]
        await c.send("resume", {"thread_id": thread_id, "after_seq": last})
        done = await c.until(lambda f: f["type"] == "replay_complete")
        assert len(done) == 1 and done[0]["payload"]["complete"] is True
        await c.send("resume", {"thread_id": thread_id, "after_seq": last + 50})
        ahead = (await c.until(lambda f: f["type"] == "replay_complete"))[-1]
        assert ahead["payload"]["complete"] is False


async def test_resume_after_pruning_says_incomplete(server: ServerHandle) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
    thread_id = ack["payload"]["thread_id"]
    object.__setattr__(server.services, "settings",
                       server.settings.model_copy(update={"event_retention_events": 3}))
    deleted = server.call(server.services.prune_once)
    assert deleted > 0
    log = await stored_log(server, thread_id)
    assert len(log) == 3
    async with client(server) as c:
        await c.send("resume", {"thread_id": thread_id, "after_seq": 0})
        got = await c.until(lambda f: f["type"] == "replay_complete")
    assert [f["seq"] for f in got[:-1]] == [e["seq"] for e in log]
    assert got[-1]["payload"]["complete"] is False


async def test_run_keeps_going_while_disconnected_and_resume_delivers_it(
    server_factory: Any,
) -> None:
    server = server_factory(builtin_delta_delay=0.02)
    async with client(server) as c:
        await c.send_message(QUESTION)
        seen = await c.until(lambda f: f["type"] == "agent_started")
        thread_id = seen[-1]["thread_id"]
        last_seq = max(f["seq"] for f in thread_events(seen, thread_id))
    async with client(server) as c:
        await c.send("resume", {"thread_id": thread_id, "after_seq": last_seq})
        rest: list[dict[str, Any]] = []
        while not any(f["type"] == "agent_completed" for f in rest):
            rest += await c.until(lambda f: f["type"] in ("replay_complete", "agent_completed"))
    received = thread_events(seen, thread_id) + thread_events(rest, thread_id)
    seqs = [f["seq"] for f in received]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "gap or duplicate"
    assert sorted(seqs) == [e["seq"] for e in await stored_log(server, thread_id)]


class ChaosClient:
    """Reads raw frames, reassembles chunks itself and can drop the socket anywhere."""

    def __init__(self, server: ServerHandle, user: str, rng: random.Random) -> None:
        self.server, self.user, self.rng = server, user, rng
        self.got: dict[str, list[int]] = {}  # thread → seqs in arrival order (all connections)
        self.per_connection_dups = 0  # a seq sent twice on one connection: must stay 0
        self.ended: set[str] = set()  # runs whose terminal event arrived (any connection)
        self.drops = 0

    def last_seq(self, thread_id: str) -> int:
        seqs = sorted(self.got.get(thread_id, []))
        contiguous = 0
        for s in seqs:
            if s == contiguous + 1:
                contiguous = s
        return contiguous

    async def run_one(self, thread_id: str | None, content: str) -> str:
        """Send one message and read until its run ends, dropping the connection at
        random frame counts; reconnect + resume each time. Returns the thread id."""
        message_id = f"{self.user}-{self.rng.random()}"
        sent = False
        run_id: str | None = None
        while True:
            if run_id is not None and run_id in self.ended:
                assert thread_id is not None
                return thread_id
            async with RunwireClient.connect(self.server.ws_url, self.server.token(self.user)) as c:
                ws = c._ws
                for tid in list(self.got):
                    await c.send("resume", {"thread_id": tid, "after_seq": self.last_seq(tid)})
                if not sent or run_id is None:
                    # idempotent: a resend after a drop answers duplicate with the same run
                    payload: dict[str, Any] = {"content": content, "message_id": message_id}
                    if thread_id:
                        payload["thread_id"] = thread_id
                    await c.send("user_message", payload)
                    sent = True
                budget = self.rng.randint(1, 40)
                chunks: dict[str, list[str]] = {}
                on_this: set[tuple[str, int]] = set()
                try:
                    while True:
                        if budget == 0:
                            ws.transport.abort()  # drop mid-stream (maybe mid-chunk/replay)
                            self.drops += 1
                            break
                        budget -= 1
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
                        if frame["type"] == "chunk":
                            p = frame["payload"]
                            chunks.setdefault(p["chunk_id"], []).append(p["data"])
                            if p["index"] < p["total"] - 1:
                                continue
                            frame = json.loads("".join(chunks.pop(p["chunk_id"])))
                        if frame["type"] == "message_ack" and frame["payload"]["message_id"] == message_id:
                            run_id = frame["payload"]["run_id"]
                            thread_id = frame["payload"]["thread_id"]
                            if run_id in self.ended:  # its end arrived (by replay) before the ack
                                return thread_id
                            if thread_id not in self.got:  # a thread this client just learnt of:
                                self.got[thread_id] = []  # its events may predate this socket
                                await c.send("resume", {"thread_id": thread_id, "after_seq": 0})
                        if "seq" in frame:
                            key = (frame["thread_id"], frame["seq"])
                            self.per_connection_dups += key in on_this
                            on_this.add(key)
                            self.got.setdefault(frame["thread_id"], []).append(frame["seq"])
                        if frame["type"] in ("agent_completed", "agent_error"):
                            self.ended.add(frame["run_id"])
                            if frame["run_id"] == run_id:
                                assert thread_id is not None
                                return thread_id
                except RunwireClosed:
                    self.drops += 1

    async def settle(self) -> None:
        """A last connection (no drops) that resumes every thread and reads each replay
        to its end: replays may trail the live events of a run that already ended."""
        async with RunwireClient.connect(self.server.ws_url, self.server.token(self.user)) as c:
            pending = set(self.got)
            for tid in pending:
                await c.send("resume", {"thread_id": tid, "after_seq": self.last_seq(tid)})
            while pending:
                frame = await c.recv(timeout=15)
                if "seq" in frame:
                    self.got.setdefault(frame["thread_id"], []).append(frame["seq"])
                if frame["type"] == "replay_complete":
                    pending.discard(frame["payload"]["thread_id"])


async def test_chaos_100_runs_with_random_drops_lose_and_duplicate_nothing(
    server_factory: Any,
) -> None:
    server = server_factory(outbound_chunk_size=256, max_connections_per_user=10)
    rng = random.Random(20261124)
    chaos = [ChaosClient(server, f"user{i}", random.Random(rng.random())) for i in range(4)]

    async def worker(cc: ChaosClient) -> None:
        thread: str | None = None
        for n in range(25):
            if n % 5 == 0:
                thread = None  # a new thread every 5 runs
            thread = await cc.run_one(thread, f"what is {n}*(3+{n})?")
        await cc.settle()

    await asyncio.wait_for(asyncio.gather(*(worker(cc) for cc in chaos)), 240)
    completed = 0
    for cc in chaos:
        assert cc.drops > 10
        assert cc.per_connection_dups == 0
        for thread_id, seqs in cc.got.items():
            log = await stored_log(server, thread_id, cc.user)
            # placed by seq (as clients do), the union is exactly the stored log
            assert sorted(set(seqs)) == [e["seq"] for e in log], f"gap in {thread_id}"
            completed += sum(1 for e in log if e["type"] == "agent_completed")
    assert completed == 100


async def test_slow_consumer_is_closed_with_4009_others_unaffected_and_it_resumes_all(
    server_factory: Any,
) -> None:
    import contextlib
    import socket
    import time

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from runwire.protocol.handshake import b64url_encode

    server = server_factory(max_connections_per_user=30, outbound_queue_size=10, send_timeout=60)
    token = server.token("alice")
    # The slow client: a tiny receive buffer and reading paused, so it stops consuming.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", server.port))
    slow = await connect(server.ws_url, sock=sock,
                         subprotocols=["runwire.v1", "jwt." + b64url_encode(token)])  # type: ignore[list-item]
    slow_id = json.loads(await slow.recv())["payload"]["connection_id"]
    slow.transport.pause_reading()

    def slow_conn_closing() -> bool:
        return any(c.connection_id == slow_id and c.close_code == 4009
                   for c in server.services.connections)

    async with contextlib.AsyncExitStack() as stack:
        others = [await stack.enter_async_context(client(server)) for _ in range(20)]
        driver = others[0]
        latencies: list[float] = []
        threads: set[str] = set()
        overflowed_at: int | None = None
        noise = random.Random(7)  # incompressible (permessage-deflate is on) big frames
        padding = " " + "".join(noise.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=60_000))
        for n in range(200):
            if overflowed_at is not None and n > overflowed_at + 10:
                break
            t0 = time.monotonic()
            ack, _ = await driver.ask(f"what is {n}+{n}?{padding}", timeout=30)
            threads.add(ack["payload"]["thread_id"])
            run_id = ack["payload"]["run_id"]
            for other in others[1:]:
                await other.until(lambda f, r=run_id: f["type"] == "agent_completed"
                                  and f.get("run_id") == r, timeout=30)
            latencies.append(time.monotonic() - t0)
            if overflowed_at is None and slow_conn_closing():
                overflowed_at = n
                slow.transport.resume_reading()  # it can now read up to the close frame
        assert overflowed_at is not None, "the slow client never overflowed"
        assert all(o.close_code is None for o in others)
        before, after = sorted(latencies[:overflowed_at]), sorted(latencies[overflowed_at:])
        # liveness, generous: the blocked client did not slow the others down
        assert after[len(after) // 2] < max(10 * before[len(before) // 2], 1.0), (before, after)

    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(slow.recv(), 10)
    await slow.close()
    assert slow.close_code == 4009
    from .test_metrics import sample, scrape

    text = await scrape(server)
    assert sample(text, "runwire_slow_consumer_closes_total") == 1
    assert sample(text, "runwire_disconnects_total", code="4009") == 1
    # it resumes every thread and gets everything that was stored
    async with client(server) as again:
        got: list[dict[str, Any]] = []
        for tid in threads:
            await again.send("resume", {"thread_id": tid, "after_seq": 0})
            got += await again.until(lambda f, t=tid: f["type"] == "replay_complete"
                                     and f["payload"]["thread_id"] == t)
        for tid in threads:
            log = await stored_log(server, tid)
            assert [f["seq"] for f in thread_events(got, tid)] == [e["seq"] for e in log]
