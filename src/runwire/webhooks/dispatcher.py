"""Sends the webhook outbox (SPEC 9): at least once, signed, retried with backoff.

Every node runs one :class:`WebhookDispatcher` when ``WEBHOOK_URLS`` is set. It claims due
deliveries with a lease (one node at a time sends a delivery; a dead node's claims come
back when their lease ends), POSTs each with the Standard Webhooks headers
(``webhook-id`` — the same on every attempt —, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256>``, signed with the reference
``standardwebhooks`` library), and records the outcome:

- 2xx → delivered;
- connection error, timeout (``WEBHOOK_TIMEOUT``), 429 or 5xx → again after ~1 s,
  doubling with jitter, capped at 10 minutes, until ``WEBHOOK_RETRY_HOURS`` have passed
  since the event → then failed;
- any other answer (a 4xx) → failed at once.

Metrics: ``runwire_webhook_deliveries_total{outcome}``, ``runwire_webhook_outbox_depth``
and ``runwire_webhook_oldest_pending_seconds`` (an alert rule watches the last).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import httpx
from standardwebhooks.webhooks import Webhook

from runwire.metrics import Metrics
from runwire.store.db import Database
from runwire.webhooks import outbox
from runwire.webhooks.outbox import Due

log = logging.getLogger(__name__)

POLL = 0.5  # seconds between looks at the outbox when it had nothing due
BATCH = 32  # deliveries claimed at once (sent concurrently)
PRUNE_EVERY = 60.0  # seconds between removals of finished deliveries


class WebhookDispatcher:
    """Delivers the outbox from this node (module docstring).

    Args:
        secret: ``whsec_<base64>`` (Standard Webhooks).
        timeout: seconds one attempt may take.
        retry_for: how long after the event it is still retried.
        lease: how long a claim holds a delivery (longer than `timeout`).
    """

    def __init__(self, *, db: Database, node_id: str, secret: str, timeout: float,
                 retry_for: timedelta, metrics: Metrics, poll: float = POLL) -> None:
        self._db = db
        self._node = node_id
        self._signer = Webhook(secret)
        self._timeout = timeout
        self._retry_for = retry_for
        self._lease = timedelta(seconds=timeout * 2 + 5)
        self._metrics = metrics
        self._poll = poll
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self.depth = 0
        self.oldest_age = 0.0

    def wake(self) -> None:
        """Look at the outbox now (an event that reports was just committed)."""
        self._wake.set()

    async def run(self) -> None:
        """Forever: claim what is due, send it, record the outcomes."""
        loop = asyncio.get_running_loop()
        pruned = loop.time()
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            self._client = client
            while True:
                if loop.time() - pruned >= PRUNE_EVERY:
                    pruned = loop.time()
                    await self._prune()
                due = await self._db.transaction(lambda conn: outbox.claim(
                    conn, node_id=self._node, limit=BATCH, lease=self._lease,
                    skip_locked=not self._db.is_sqlite))
                if due:
                    await asyncio.gather(*(self._deliver(row) for row in due))
                await self._observe()
                if len(due) < BATCH:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self._poll):
                            await self._wake.wait()
                    except TimeoutError:
                        pass

    async def _prune(self) -> None:
        """Forget finished deliveries once they are older than the retry window (kept that
        long for inspection)."""
        horizon = datetime.now(UTC) - self._retry_for
        await self._db.transaction(lambda conn: outbox.prune(conn, older_than=horizon))

    async def _observe(self) -> None:
        self.depth, self.oldest_age = await self._db.query(lambda conn: outbox.stats(conn))
        node = self._node
        self._metrics.webhook_depth.labels(node).set(self.depth)
        self._metrics.webhook_oldest.labels(node).set(self.oldest_age)

    def headers(self, row: Due, now: datetime) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt (same id, fresh timestamp)."""
        return {"content-type": "application/json", "user-agent": "runwire-webhooks",
                "webhook-id": row.webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self._signer.sign(row.webhook_id, now, row.payload)}

    async def _deliver(self, row: Due) -> None:
        assert self._client is not None
        status: int | None = None
        try:
            response = await self._client.post(
                row.url, content=row.payload.encode(),
                headers=self.headers(row, datetime.now(UTC)))
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = f"HTTP {status}"
        node = self._node
        if status is not None and 200 <= status < 300:
            await self._db.transaction(lambda conn: outbox.delivered(
                conn, row, node_id=node, status=status))
            self._metrics.webhook_deliveries.labels(node, "delivered").inc()
            return
        retry = status is None or status == 429 or status >= 500
        outcome = await self._db.transaction(lambda conn: outbox.failed_attempt(
            conn, row, node_id=node, status=status, error=error, retry=retry,
            give_up_after=self._retry_for))
        self._metrics.webhook_deliveries.labels(
            node, "retry" if outcome == "retry" else "failed" if outcome == "failed"
            else "lost_claim").inc()
        log.info("webhook %s to %s: %s (%s)", row.webhook_id, row.url, error, outcome)
