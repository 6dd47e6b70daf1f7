"""Issue 20, findings 4 and 5 through the worker: a verdict needs evidence, only customers
are scored, and new customers are onboarding (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
from sqlalchemy import select, update

from testkit import HUBSPOT_API, native, store_native
from webhooks.store import keys
from webhooks.store.models import Account, Alert

BATCH_UPDATE = f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update"


def _ok(request):
    ids = [item["id"] for item in json.loads(request.content)["inputs"]]
    return respx.MockResponse(200, json={"status": "COMPLETE", "results": [{"id": i} for i in ids]})


@pytest.fixture
def crm():
    with respx.mock(assert_all_called=False) as router:
        yield router.post(BATCH_UPDATE).mock(side_effect=_ok)


def _written(route, record: str) -> dict[str, Any]:
    """The last health fields written to `record`."""
    found = [
        item["properties"]
        for call in route.calls
        for item in json.loads(call.request.content)["inputs"]
        if item["id"] == record
    ]
    assert found, f"nothing written to {record}"
    return found[-1]


async def _account(service, crm_id: str) -> Account:
    async with service.runtime.sessions() as session:
        return (await session.execute(select(Account).filter_by(crm_id=crm_id))).scalar_one()


async def _alerts(service, crm_id: str) -> list[Alert]:
    account = await _account(service, crm_id)
    async with service.runtime.sessions() as session:
        rows = await session.execute(select(Alert).where(Alert.account_id == account.id))
        return list(rows.scalars())


async def _run(service, events: list[dict[str, object]]) -> None:
    await store_native(service.runtime, events)
    await service.runtime.pipeline.run_once()


async def test_an_account_with_only_a_name_five_days_old_is_unknown_with_a_reason(
    service, crm
) -> None:
    # The connection has sent interactions (with contacts) for other accounts for months.
    await _run(
        service,
        [
            native("account", "other", attributes={"name": "Other"}, days_ago=200),
            native("interaction", "other", channel="email", direction="customer",
                   contact="c1", days_ago=200),
            native("interaction", "other", channel="call", direction="ours", contact="c2"),
        ],
    )  # fmt: skip
    await _run(service, [native("account", "new", attributes={"name": "New Co"})])
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(
            update(Account)
            .where(Account.crm_id == "new")
            .values(created_at=datetime.now(UTC) - timedelta(days=5))
        )
    await _run(service, [native("account", "new", attributes={"name": "New Co Ltd"})])

    account = await _account(service, "new")
    assert (account.score, account.band) == (None, "unknown")
    assert account.drivers is not None
    assert account.drivers[0].startswith("Not enough evidence")
    assert "no product usage" in account.drivers[0]
    # Absent records are no data, never zero collaboration.
    assert not any(driver.startswith("Contacts engaged") for driver in account.drivers)
    assert await _alerts(service, "new") == []
    assert _written(crm, "new")["health_band"] == "unknown"


async def test_a_prospect_is_not_a_customer_and_its_health_fields_are_cleared(service, crm) -> None:
    # Usage, a ticket and a call: more than half the weight has data, so there is a verdict.
    usage = [native("usage", "p1", user="u1", days_ago=day) for day in range(40, 47)]
    others = [
        native("ticket", "p1", ticket="t1", priority="low"),
        native("interaction", "p1", channel="call", direction="customer", contact="c1"),
    ]
    await _run(
        service, [native("account", "p1", attributes={"name": "P1", "seats": 50}), *usage, *others]
    )
    scored = await _account(service, "p1")
    assert scored.customer  # no lifecycle yet: a customer
    assert scored.score is not None
    assert _written(crm, "p1")["health_score"] != ""

    await _run(service, [native("account", "p1", attributes={"lifecycle": "lead"})])
    account = await _account(service, "p1")
    assert account.customer is False
    assert (account.score, account.band) == (None, "unknown")
    written = _written(crm, "p1")
    assert {name: written[name] for name in written if name != "health_updated_at"} == {
        "health_score": "", "health_band": "", "health_trend_30d": "", "health_drivers": "",
        "health_active_use": "", "health_collaboration": "", "health_mutual_value": "",
        "health_momentum": "",
    }  # fmt: skip
    assert all(alert.status == "resolved" for alert in await _alerts(service, "p1"))

    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name="viewer", role="viewer", connection="default", now=datetime.now(UTC)
        )
    listed = await service.client.get(
        "/api/v1/accounts", params={"customer": "false"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert [(item["id"], item["customer"]) for item in listed.json()["items"]] == [("p1", False)]


async def test_a_customer_of_last_week_is_onboarding_and_not_alerted(service, crm) -> None:
    # Last used 40 days ago, 1 of 50 seats: at risk for an established customer.
    since = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    usage = [
        native("usage", "c1", user="u1", days_ago=40),
        native("ticket", "c1", ticket="t1", priority="urgent"),
        native("interaction", "c1", channel="call", direction="ours", contact="c1"),
    ]
    await _run(
        service,
        [
            native("account", "c1", attributes={"name": "C1", "seats": 50,
                                                "lifecycle": "customer", "customer_since": since}),
            *usage,
        ],
    )  # fmt: skip
    account = await _account(service, "c1")
    assert account.customer is True
    assert account.band == "onboarding"
    assert account.score is not None  # scored and shown
    assert _written(crm, "c1")["health_band"] == "onboarding"
    assert await _alerts(service, "c1") == []
