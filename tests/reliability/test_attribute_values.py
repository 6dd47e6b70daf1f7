"""Values are valid or refused, and a good value is never erased by a source that does not
carry it (issue 20, findings 2 and 3): every intake refuses what does not parse, naming the
field; a backfill never nulls what it did not read; the configured precedence decides where
the CRM and a native source both give an attribute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connector.model import AccountAttributes
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from testkit import HUBSPOT_TOKEN, crm_accounts, native, store_native
from webhooks.backfill import run_backfill
from webhooks.store import facts
from webhooks.store.models import ACCOUNT_ROW_COLUMNS, Account, AccountRow

ADMIN = "bootstrap-token-123456"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


async def _post(service, events):
    return await service.client.post("/ingest/events", json={"events": events}, headers=HEADERS)


async def _drain(service) -> None:
    while (await service.runtime.pipeline.process_inbox()).claimed:
        pass


async def _account(service, crm_id: str) -> Account:
    async with service.runtime.sessions() as session:
        return (await session.execute(select(Account).where(Account.crm_id == crm_id))).scalar_one()


async def test_a_renewal_date_that_does_not_parse_is_refused_and_the_good_one_kept(
    service_factory,
) -> None:
    service = await service_factory(admin_token=ADMIN)
    await crm_accounts(service.runtime, ["296"])
    good = native("account", "296", attributes={"name": "Acme", "renewal_date": "2027-11-11"})
    assert (await _post(service, [good])).status_code == 202
    await _drain(service)
    bad = native("account", "296", attributes={"renewal_date": "31/12/2026"})
    response = await _post(service, [bad])
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "events[0].attributes.renewal_date" in detail
    assert "ISO 8601" in detail
    await _drain(service)
    account = await _account(service, "296")
    assert account.attributes["renewal_date"]["value"] == "2027-11-11"


@pytest.mark.parametrize("value", ["2027-11-11", "2027-11-11T00:00:00Z", 1826000000000])
async def test_renewal_dates_in_iso_8601_or_epoch_milliseconds_are_taken(
    service_factory, value
) -> None:
    service = await service_factory(admin_token=ADMIN)
    event = native("account", "296", attributes={"renewal_date": value})
    assert (await _post(service, [event])).status_code == 202


@pytest.mark.parametrize(
    ("attributes", "field"),
    [({"seats": -1}, "seats"), ({"arr": "NaN"}, "arr"), ({"arr": 1e300}, "arr")],
)
async def test_numbers_out_of_range_are_refused_naming_the_field(
    service_factory, attributes, field
) -> None:
    service = await service_factory(admin_token=ADMIN)
    response = await _post(service, [native("account", "296", attributes=attributes)])
    assert response.status_code == 422
    assert f"attributes.{field}" in response.json()["detail"]


async def test_usage_dated_in_2099_is_refused(service_factory) -> None:
    service = await service_factory(admin_token=ADMIN)
    event = {"type": "usage", "account": "296", "user": "u1", "at": "2099-01-01T00:00:00Z"}
    response = await _post(service, [event])
    assert response.status_code == 422
    assert "events[0].at" in response.json()["detail"]
    assert "future" in response.json()["detail"]


def test_a_crm_value_that_does_not_parse_is_left_out_not_carried_as_a_clear() -> None:
    event = AccountAttributes(
        account="296",
        at=datetime.now(UTC),
        attributes={"renewal_date": "31/12/2026", "seats": "many", "name": "Acme"},
    )
    assert event.attributes == {"name": "Acme"}


def _fresh() -> AccountRow:
    """An account row with nothing set but its (empty) attributes."""
    values: dict[str, Any] = dict.fromkeys(ACCOUNT_ROW_COLUMNS)
    return AccountRow(**{**values, "attributes": {}})


def _held(account: AccountRow, name: str) -> object:
    return (account.attributes.get(name) or {}).get("value")


def _apply(account: AccountRow, value: str | None, *, origin, at, precedence="crm") -> None:
    facts.apply_attributes(
        account, attributes={"owner": value}, at=at, origin=origin, precedence=precedence
    )


def test_the_crms_owner_wins_when_it_has_one_and_a_native_owner_fills_the_gap() -> None:
    account = _fresh()
    now = datetime.now(UTC)
    _apply(account, "native-owner", origin="native", at=now)
    assert account.owner == "native-owner"
    # The CRM has no owner for the record: it says nothing about the native one.
    _apply(account, None, origin="crm", at=now + timedelta(hours=1))
    assert account.owner == "native-owner"
    # The CRM has one: it wins, even over a later native value.
    _apply(account, "crm-owner", origin="crm", at=now - timedelta(days=1))
    _apply(account, "later-native", origin="native", at=now + timedelta(days=1))
    assert account.owner == "crm-owner"
    # The CRM clears its own value: a native owner may fill the gap again.
    _apply(account, None, origin="crm", at=now + timedelta(days=2))
    assert account.owner is None
    _apply(account, "native-again", origin="native", at=now + timedelta(days=3))
    assert account.owner == "native-again"


def test_under_latest_precedence_the_later_value_wins_and_native_null_clears() -> None:
    account = _fresh()
    now = datetime.now(UTC)
    _apply(account, "crm-owner", origin="crm", at=now, precedence="latest")
    _apply(
        account, "native-owner", origin="native", at=now + timedelta(hours=1), precedence="latest"
    )
    assert account.owner == "native-owner"
    _apply(account, None, origin="native", at=now + timedelta(hours=2), precedence="latest")
    assert account.owner is None
    assert _held(account, "owner") is None


async def test_a_native_null_is_an_explicit_clear(service_factory) -> None:
    service = await service_factory(admin_token=ADMIN)
    await store_native(
        service.runtime, [native("account", "7", days_ago=1, attributes={"owner": "ana"})]
    )
    await _drain(service)
    await store_native(service.runtime, [native("account", "7", attributes={"owner": None})])
    await _drain(service)
    assert (await _account(service, "7")).owner is None


async def test_a_backfill_of_companies_without_an_owner_keeps_every_native_owner(
    service_factory,
) -> None:
    crm = SandboxState()
    ids = [crm.add_company({"name": f"Company {n}"}) for n in range(120)]
    sandbox = create_sandbox_app(crm, access_token=HUBSPOT_TOKEN)
    service = await service_factory(crm_transport=httpx.ASGITransport(app=sandbox))
    await store_native(
        service.runtime,
        [
            native("account", crm_id, days_ago=1, attributes={"owner": f"owner-{crm_id}"})
            for crm_id in ids
        ],
    )
    await _drain(service)
    connection = service.runtime.connections.get("default")
    report = await run_backfill(
        sessions=service.runtime.sessions, connection=connection, object_types=["companies"]
    )
    assert report.stored == len(ids)
    await _drain(service)
    async with service.runtime.sessions() as session:
        rows = (await session.execute(select(Account.crm_id, Account.owner, Account.name))).all()
    assert {crm_id: owner for crm_id, owner, _ in rows} == {i: f"owner-{i}" for i in ids}
    # What the CRM does carry came in.
    assert {name for _, _, name in rows} == {f"Company {n}" for n in range(120)}
