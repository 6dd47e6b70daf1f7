"""Two HubSpot portals in one service, each with accounts (one record id in both) and an open
alert on each account: the ground for every test of one tenant against another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from testkit import Service, native, store_native
from webhooks.store import keys
from webhooks.store.models import Account, Alert, AlertReason

ALPHA, BETA = "alpha", "beta"
ALPHA_SECRET, BETA_SECRET = "alpha-app-client-secret", "beta-app-client-secret"
ALPHA_SEGMENT, BETA_SEGMENT = "alpha-segment-write-key", "beta-segment-write-key"


def _now() -> datetime:
    return datetime.now(UTC)


def _refuse_crm(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("CRM unreachable in this test", request=request)


async def new_key(service: Service, *, role: str, connection: str) -> str:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-{connection}", role=role, connection=connection, now=_now()
        )
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


SEEDS = {
    ALPHA: {"501": "Alpha Shared", "601": "Alpha Only"},
    BETA: {"501": "Beta Shared", "777": "Beta Only"},
}


async def touch_every_account(service: Service) -> None:
    """Every account's record arrives again now: a live rescore, which tells people."""
    for connection, accounts in SEEDS.items():
        await store_native(
            service.runtime,
            [
                native("account", crm_id, attributes={"name": name})
                for crm_id, name in accounts.items()
            ],
            connection=connection,
        )
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == 4, report


async def two_tenants(service_factory: Any, tmp_path: Path, **settings: Any) -> Service:
    """Two HubSpot portals from a connections file, each with accounts (one record id in both)
    and an open alert on each account; `settings` are passed on to the service."""
    path = tmp_path / "connections.yaml"
    path.write_text(
        "connections:\n"
        f"  - name: {ALPHA}\n    crm: hubspot\n    portal_id: 111\n"
        f"    access_token: alpha-token\n    client_secret: {ALPHA_SECRET}\n"
        f"    segment: {{write_key: {ALPHA_SEGMENT}}}\n"
        f"  - name: {BETA}\n    crm: hubspot\n    portal_id: 222\n"
        f"    access_token: beta-token\n    client_secret: {BETA_SECRET}\n"
        f"    segment: {{write_key: {BETA_SEGMENT}}}\n"
    )
    service: Service = await service_factory(
        connections_file=path,
        hubspot_client_secret=None,
        hubspot_access_token=None,
        crm_transport=httpx.MockTransport(_refuse_crm),
        **settings,
    )
    for connection, accounts in SEEDS.items():
        await store_native(
            service.runtime,
            [
                native("account", crm_id, attributes={"name": name})
                for crm_id, name in accounts.items()
            ]
            + [native("usage", crm_id, user="u1") for crm_id in accounts],
            connection=connection,
        )
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == 8, report
    async with service.runtime.sessions() as session, session.begin():
        for account in (await session.execute(select(Account))).scalars():
            alert = Alert(
                account_id=account.id,
                connection=account.connection,
                rule="entered-at-risk",
                key="at_risk",
                status="open",
                title=f"{account.name} is at risk",
                reason="band neutral -> at risk",
                score=35,
                band="at_risk",
                previous_score=55,
                previous_band="neutral",
                trend_30d=-20,
                drivers=[],
                notified=True,
                fired_at=_now() - timedelta(hours=1),
            )
            session.add(alert)
            await session.flush()
            session.add(
                AlertReason(
                    alert_id=alert.id,
                    rule=alert.rule,
                    key=alert.key,
                    severity="high",
                    title=alert.title,
                    reason=alert.reason,
                    opened_at=alert.fired_at,
                )
            )
    return service


async def alerts_of(service: Service, connection: str) -> list[Alert]:
    async with service.runtime.sessions() as session:
        query = select(Alert).where(Alert.connection == connection).order_by(Alert.id)
        return list((await session.execute(query)).scalars())


async def accounts_of(service: Service, connection: str) -> dict[str, str | None]:
    async with service.runtime.sessions() as session:
        query = select(Account).where(Account.connection == connection)
        return {a.crm_id: a.name for a in (await session.execute(query)).scalars()}
