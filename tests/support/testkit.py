"""Helpers shared by the tests: settings for a test service, signed HubSpot webhooks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.hubspot.events import signature_v3
from webhooks.runtime import Runtime
from webhooks.settings import Settings
from webhooks.store import accounts, inbox
from webhooks.store.models import Account, InboxEvent, UsageMonth

HUBSPOT_SECRET = "test-client-secret"
HUBSPOT_TOKEN = "test-access-token"
HUBSPOT_API = "https://hubspot.api.test"
PUBLIC_URL = "https://health.example.test"


def bare_accounts(ids: Iterable[int], *, created_at: datetime) -> list[dict[str, Any]]:
    """Rows of `accounts` (connection default, HubSpot record id = id) with nothing known yet,
    for store tests that insert facts straight into the tables."""
    return [
        {"id": n, "connection": "default", "crm": "hubspot", "crm_id": str(n),
         "attributes": {}, "band": "unknown", "created_at": created_at}
        for n in ids
    ]  # fmt: skip


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "public_url": PUBLIC_URL,
        "hubspot_client_secret": HUBSPOT_SECRET,
        "hubspot_access_token": HUBSPOT_TOKEN,
        "hubspot_api_base": HUBSPOT_API,
        "run_worker": False,
        # Tests that want fields provisioned at start say so; others must not see those calls.
        "provision_on_start": False,
        "crm_retry_max_attempts": 1,
        "log_format": "console",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: Runtime


class Checkouts:
    """Counts the connections taken from an engine's pool from now on."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine.pool, "checkout", self._taken)

    def _taken(self, *_: object) -> None:
        self.count += 1


def hubspot_event(
    event_id: int, object_id: int | None = 1001, **fields: object
) -> dict[str, object]:
    event: dict[str, object] = {
        "eventId": event_id,
        "subscriptionId": 77,
        "portalId": 62515,
        "appId": 4242,
        "occurredAt": int(datetime.now(UTC).timestamp() * 1000),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": object_id,
        "propertyName": "name",
        "propertyValue": f"Company {object_id}",
        "changeSource": "CRM_UI",
    }
    event.update(fields)
    return event


def signed_v3_headers(
    body: bytes, *, uri: str, secret: str = HUBSPOT_SECRET, at: datetime | None = None
) -> dict[str, str]:
    timestamp = str(int((at or datetime.now(UTC)).timestamp() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, body, timestamp),
    }


async def post_hubspot(
    client: httpx.AsyncClient, events: list[dict[str, object]], **sign: object
) -> httpx.Response:
    body = json.dumps(events).encode()
    uri = f"{PUBLIC_URL}/webhooks/hubspot"
    headers = signed_v3_headers(body, uri=uri, **sign)  # type: ignore[arg-type]
    return await client.post("/webhooks/hubspot", content=body, headers=headers)


def native(
    event_type: str, account: str, *, days_ago: float = 0.0, **fields: object
) -> dict[str, object]:
    """A native event document (what `POST /ingest/events` and backfills store)."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    return {"type": event_type, "account": account, "at": at.isoformat(), **fields}


def daily_user(
    account: str, *, user: str = "u1", first_day_ago: float = 0.0
) -> list[dict[str, object]]:
    """One user active seven days in a row: recency, trend and stickiness all healthy."""
    return [native("usage", account, days_ago=first_day_ago + day, user=user) for day in range(7)]


async def crm_accounts(
    runtime: Runtime, crm_ids: list[str], *, connection: str = "default"
) -> None:
    """Account records as if the CRM had sent them: events for these ids fold in at once (an
    account's record must be known before its usage, interactions or tickets count)."""
    known = runtime.connections.get(connection)
    crm = known.crm if known is not None else "native"
    async with runtime.sessions() as session, session.begin():
        await accounts.lock_accounts(
            session,
            keys={(connection, crm, crm_id) for crm_id in crm_ids},
            now=datetime.now(UTC),
        )


async def store_native(
    runtime: Runtime,
    events: list[dict[str, object]],
    *,
    connection: str = "default",
    known_accounts: bool = True,
    source: str = "native",
) -> int:
    """Store native events as the ingest API does (or, with `source="backfill"`, as a backfill
    stores the records it read). With `known_accounts` (for tests about
    facts and scores) their accounts' records are known first (`crm_accounts`); without it,
    an account must be declared or come from the CRM like in production."""
    if known_accounts:
        await crm_accounts(
            runtime,
            sorted({str(event["account"]) for event in events if "account" in event}),
            connection=connection,
        )
    async with runtime.sessions() as session, session.begin():
        return await inbox.insert_events(
            session,
            source=source,
            connection=connection,
            events=[
                inbox.NewEvent(
                    dedup_key=str(event.get("id") or uuid.uuid4()),
                    kind=str(event["type"]),
                    payload=event,
                )
                for event in events
            ],
            received_at=datetime.now(UTC),
        )


def _off(at_risk: float, healthy: float) -> dict[str, float]:
    return {"at_risk": at_risk, "healthy": healthy, "weight": 0}


# A scoring configuration that weighs only recency, from 0 (100 days since the last use) to
# 100 (used today): an account's score is 100 minus the days since its last use, so a test
# sets any score exactly by choosing when the account was last used.
RECENCY_ONLY: dict[str, Any] = {
    "signals": {
        "active_use": {
            "weight": 1,
            "indicators": {
                "seat_utilization": _off(0.4, 0.7),
                "usage_trend": _off(-0.25, 0),
                "stickiness": _off(0.05, 0.2),
                "recency_days": {"at_risk": 100, "healthy": 0, "weight": 1},
                "usage_depth": _off(5, 25),
                "depth_trend": _off(-0.3, 0),
                "key_feature_adoption": _off(0.2, 0.5),
            },
        },
        "collaboration": {"weight": 0},
        "mutual_value": {"weight": 0},
        "momentum": {"weight": 0},
    }
}


class FakeTime:
    """A clock that only moves when the code under test sleeps (or a test moves it); records
    every requested wait. Pass `clock` and `sleep` to a RetryingClient."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# (CRM id, month, user, days) of every usage row: what `usage_days` expands.
USAGE_ROWS = select(Account.crm_id, UsageMonth.month, UsageMonth.user, UsageMonth.days).join(
    Account, Account.id == UsageMonth.account_id
)


def usage_days(rows: Any) -> list[tuple[str, date, str]]:
    """(CRM id, day, user) of each day of use the USAGE_ROWS rows hold, in that order."""
    return sorted(
        (crm_id, month + timedelta(days=bit), user)
        for crm_id, month, user, days in rows
        for bit in range(31)
        if days >> bit & 1
    )


def in_thread(function: Callable[..., object], *args: object) -> object:
    """Run blocking set-up (asyncio.run, Alembic) even when a test's event loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


async def native_payloads(runtime: Runtime) -> list[dict[str, Any]]:
    """The payloads of the native events stored in the inbox, oldest first (what an import or
    the ingest API stored, as the worker will read it)."""
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(InboxEvent.payload).where(InboxEvent.source == "native").order_by(InboxEvent.id)
        )
        return [row[0] for row in rows]


async def inbox_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(InboxEvent)) or 0)
