"""Signed webhooks out of the sandbox, as HubSpot sends them to an app's target URL.

Once a receiver subscribes, every `Change` of the state becomes a HubSpot webhook event (legacy
`company.*`/`contact.*`/`deal.*`/`ticket.*` types, generic `object.*` with an objectTypeId for
engagements and tasks). Events wait `batch_ms` to be batched, go out as JSON arrays of at most
100, signed with v3 (`X-HubSpot-Signature-v3` over method, URI, body and timestamp), and a
failed delivery is retried with backoff and a growing `attemptNumber`. `drain()` waits until
nothing is pending; `log` lists every attempt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import httpx

from connector.hubspot.events import signature_v3
from connector.sandbox.catalog import (
    LEGACY_WEBHOOK_TYPES,
    OBJECT_TYPE_IDS,
    SINGULAR_NAMES,
    Change,
)

MAX_EVENTS_PER_REQUEST = 100
DEFAULT_BATCH_MS = 100
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_RETRY_BASE_SECONDS = 0.5
DELIVERY_TIMEOUT_SECONDS = 10.0
DEFAULT_APP_ID = 2000001

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """Where events go and how: one receiver per sandbox, like one app's target URL."""

    target_url: str
    client_secret: str
    app_id: int = DEFAULT_APP_ID
    batch_ms: int = DEFAULT_BATCH_MS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base_seconds: float = DEFAULT_RETRY_BASE_SECONDS
    subscription_id: int = 1

    def to_json(self) -> dict[str, Any]:
        # The signing secret is masked: the delivery log and control API must not leak it.
        body = asdict(self)
        body["client_secret"] = "***"  # noqa: S105 - a mask, not a secret
        return body


@dataclass
class DeliveryAttempt:
    """One POST to the receiver: which events, which try, and what came back."""

    at: str
    target_url: str
    event_ids: list[int]
    attempt_number: int
    status: int | None = None
    error: str | None = None
    delivered: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _object_id(raw: str) -> int | str:
    # HubSpot sends object ids as JSON numbers; hand-seeded non-numeric ids pass as text.
    return int(raw) if raw.isdigit() else raw


class WebhookDispatcher:
    """Turns changes into signed, batched, retried deliveries to the subscribed receiver."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        portal_id: int,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.portal_id = portal_id
        # Tests hand in an ASGI or mock transport; None means real HTTP.
        self.transport = transport
        self.sleep = sleep
        self.subscription: Subscription | None = None
        self.log: list[DeliveryAttempt] = []
        self._queue: list[dict[str, Any]] = []
        self._next_event_id = 1
        self._tasks: set[asyncio.Task[None]] = set()

    # --- subscription --------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def unsubscribe(self) -> None:
        """Stop sending; events not yet sent are dropped, as when an app is uninstalled."""
        self.subscription = None
        self._queue.clear()

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(1 for task in self._tasks if not task.done())

    # --- changes in ----------------------------------------------------------------------------

    def on_change(self, change: Change) -> None:
        """Queue the change's event and make sure a flush is coming (the state calls this)."""
        if self.subscription is None:
            return
        self._queue.append(self._event(change, self.subscription))
        self._schedule_flush()

    def _event(self, change: Change, subscription: Subscription) -> dict[str, Any]:
        legacy = change.object_type in LEGACY_WEBHOOK_TYPES
        prefix = SINGULAR_NAMES[change.object_type] if legacy else "object"
        event: dict[str, Any] = {
            "eventId": self._next_event_id,
            "subscriptionId": subscription.subscription_id,
            "portalId": self.portal_id,
            "appId": subscription.app_id,
            "occurredAt": int(change.occurred_at.timestamp() * 1000),
            "subscriptionType": f"{prefix}.{change.kind}",
            "attemptNumber": 0,
        }
        self._next_event_id += 1
        if not legacy:
            event["objectTypeId"] = OBJECT_TYPE_IDS[change.object_type]
        if change.kind == "associationChange":
            assert change.to_type is not None
            assert change.to_id is not None
            from_name = SINGULAR_NAMES[change.object_type].upper()
            to_name = SINGULAR_NAMES[change.to_type].upper()
            event.update(
                {
                    "changeSource": change.source,
                    "associationType": f"{from_name}_TO_{to_name}",
                    "fromObjectId": _object_id(change.object_id),
                    "toObjectId": _object_id(change.to_id),
                    "associationRemoved": change.removed,
                    "isPrimaryAssociation": change.primary,
                }
            )
            if not legacy or change.to_type not in LEGACY_WEBHOOK_TYPES:
                event["fromObjectTypeId"] = OBJECT_TYPE_IDS[change.object_type]
                event["toObjectTypeId"] = OBJECT_TYPE_IDS[change.to_type]
                event["associationTypeId"] = change.association_type_id
            return event
        event["objectId"] = _object_id(change.object_id)
        if change.kind == "propertyChange":
            event["propertyName"] = change.property_name
            event["propertyValue"] = change.property_value or ""
        else:
            event["changeFlag"] = "CREATED" if change.kind == "creation" else "DELETED"
        event["changeSource"] = change.source
        return event

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Seeding before the server runs: the events wait for the next flush or drain().
            return
        if any(not task.done() and task.get_name() == "flush" for task in self._tasks):
            return
        task = loop.create_task(self._flush_after_batch_window(), name="flush")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and self._queue and self.subscription is not None:
            # A change that came in while the flush was finishing: give it its own flush.
            self._schedule_flush()

    # --- delivery ------------------------------------------------------------------------------

    async def _flush_after_batch_window(self) -> None:
        subscription = self.subscription
        if subscription is None:
            return
        if subscription.batch_ms > 0:
            await self.sleep(subscription.batch_ms / 1000)
        await self.flush()

    async def flush(self) -> None:
        """Send everything queued now, in batches of at most 100, each with its retries."""
        while self._queue and self.subscription is not None:
            subscription = self.subscription
            batch = self._queue[:MAX_EVENTS_PER_REQUEST]
            del self._queue[:MAX_EVENTS_PER_REQUEST]
            await self._deliver(subscription, batch)

    async def _deliver(self, subscription: Subscription, batch: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient(
            transport=self.transport, timeout=DELIVERY_TIMEOUT_SECONDS
        ) as client:
            for attempt in range(subscription.max_attempts):
                if attempt:
                    await self.sleep(subscription.retry_base_seconds * 2 ** (attempt - 1))
                # HubSpot resends the same events (same eventId) with attemptNumber counting up.
                events = [{**event, "attemptNumber": attempt} for event in batch]
                record = DeliveryAttempt(
                    at=self.clock().isoformat(),
                    target_url=subscription.target_url,
                    event_ids=[event["eventId"] for event in batch],
                    attempt_number=attempt,
                )
                self.log.append(record)
                body = json.dumps(events, separators=(",", ":")).encode()
                try:
                    response = await client.post(
                        subscription.target_url,
                        content=body,
                        headers=self._headers(subscription, body),
                    )
                except httpx.HTTPError as exc:
                    record.error = f"{type(exc).__name__}: {exc}"
                    continue
                record.status = response.status_code
                if response.is_success:
                    record.delivered = True
                    return
                # 4xx other than 408/429 are final for HubSpot too: the receiver refused it.
                if 400 <= response.status_code < 500 and response.status_code not in {408, 429}:
                    return

    def _headers(self, subscription: Subscription, body: bytes) -> dict[str, str]:
        timestamp = str(int(self.clock().timestamp() * 1000))
        return {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-Version": "v3",
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": signature_v3(
                subscription.client_secret, "POST", subscription.target_url, body, timestamp
            ),
        }

    async def drain(self) -> None:
        """Return once every queued event has been delivered or has used up its attempts."""
        while True:
            if self._queue and not any(not task.done() for task in self._tasks):
                # Queued outside a running loop (seeding): nobody scheduled a flush yet.
                await self.flush()
                continue
            if not self._tasks:
                return
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription": None if self.subscription is None else self.subscription.to_json(),
            "pending": self.pending,
            "deliveries": [attempt.to_json() for attempt in self.log],
        }
