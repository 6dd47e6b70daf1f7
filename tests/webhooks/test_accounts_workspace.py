"""The accounts list for the workspace, over HTTP: ARR, renewal date, CRM link and owner name on
every item, the renewal window filter, sorting by ARR and renewal (nulls last), and the CSV
export of every matching account with spreadsheet formulas neutralised. A key sees only its own
connection's accounts everywhere.

ARR and renewal dates reach the columns the way the service sets them: native `account` events
through the worker (an epoch-milliseconds renewal date too). Larger books are written straight
into the table."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from testkit import native, store_native
from webhooks.store import facts, keys
from webhooks.store.models import Account, AccountRow, CRMOwnerContact, core_table

PORTAL = 62515
ADMIN_TOKEN = "workspace-test-admin-token"
HOSTILE = '=HYPERLINK("http://x")'
CSV_HEADER = (
    "id,name,band,score,trend_30d,arr,currency,renewal_date,segment,owner,owner_name,"
    "updated_at,record_url"
)


def today() -> date:
    return datetime.now(UTC).date()


def epoch_ms(day: date) -> str:
    return str(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000))


async def bearer(service: Any, *, role: str, connection: str = "default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


# crm id -> attributes of its account event (renewal: days from today, or an epoch-ms date)
BOOK: dict[str, dict[str, object]] = {
    "1": {"name": "Acme", "arr": 50000, "renewal_date": 0, "owner": "o1", "segment": "smb"},
    "2": {"name": "Globex", "arr": 12000.5, "renewal_date": 30, "owner": "o2"},
    "3": {"name": "Initech", "arr": 900, "renewal_date": "epoch:31"},
    "4": {"name": "Umbrella", "renewal_date": -1},
    "5": {"name": "Hooli", "arr": 75000},
}


def attributes(values: dict[str, object]) -> dict[str, object]:
    found = dict(values)
    renewal = found.get("renewal_date")
    if isinstance(renewal, int):
        found["renewal_date"] = (today() + timedelta(days=renewal)).isoformat()
    elif isinstance(renewal, str):
        found["renewal_date"] = epoch_ms(today() + timedelta(days=int(renewal.split(":")[1])))
    return found


@pytest.fixture
async def service(service_factory: Any) -> Any:
    service = await service_factory(
        hubspot_access_token=None, hubspot_portal_id=PORTAL, admin_token=ADMIN_TOKEN
    )
    events = [native("account", crm_id, attributes=attributes(v)) for crm_id, v in BOOK.items()]
    await store_native(service.runtime, events)
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == len(events), report
    now = datetime.now(UTC)
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(
            insert(core_table(CRMOwnerContact)),
            [
                {"connection": "default", "owner_id": "o1", "email": "ann@example.com",
                 "name": "Ann Lee", "found": True, "fetched_at": now},
                {"connection": "default", "owner_id": "o2", "email": None, "name": None,
                 "found": False, "fetched_at": now},
            ],
        )  # fmt: skip
        # Another connection's account, renewing today: never seen by the default's keys.
        session.add(
            Account(
                connection="emea", crm="native", crm_id="9", name="Acme EMEA", attributes={},
                band="at_risk", created_at=now, arr=1e6, renewal_date=today(),
            )
        )  # fmt: skip
    return service


@pytest.fixture
async def viewer(service: Any) -> dict[str, str]:
    return await bearer(service, role="viewer")


async def items(service: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await service.client.get("/api/v1/accounts", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def ids(service: Any, headers: dict[str, str], **params: Any) -> list[str]:
    return [item["id"] for item in await items(service, headers, **params)]


def names(response: Any, *fields: str) -> bool:
    assert response.status_code == 422, response.text
    return all(field in str(response.json()["detail"]) for field in fields)


# --- the new fields --------------------------------------------------------------------------


async def test_items_carry_arr_renewal_link_and_owner_name(service, viewer) -> None:
    found = {item["id"]: item for item in await items(service, viewer)}
    acme = found["1"]
    assert (acme["arr"], acme["renewal_date"]) == (50000.0, today().isoformat())
    assert acme["record_url"] == f"https://app.hubspot.com/contacts/{PORTAL}/record/0-2/1"
    assert (acme["owner"], acme["owner_name"]) == ("o1", "Ann Lee")
    # The CRM had no such owner: no name.
    assert (found["2"]["owner"], found["2"]["owner_name"]) == ("o2", None)
    assert (found["4"]["arr"], found["5"]["renewal_date"]) == (None, None)


async def test_an_epoch_milliseconds_renewal_date_reads_as_its_day(service, viewer) -> None:
    (item,) = await items(service, viewer, q="initech")
    assert item["renewal_date"] == (today() + timedelta(days=31)).isoformat()


async def test_the_detail_has_the_same_fields(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/1", headers=viewer)
    body = response.json()
    assert (body["arr"], body["owner_name"]) == (50000.0, "Ann Lee")
    assert body["record_url"].endswith("/record/0-2/1")
    assert body["renewal_date"] == today().isoformat()


@pytest.mark.parametrize(
    ("attribute", "value", "column", "expected"),
    [
        ("arr", "12000.5", "arr", 12000.5),
        ("arr", "not a number", "arr", None),
        ("arr", "-5", "arr", None),
        ("arr", "inf", "arr", None),
        ("arr", None, "arr", None),
        ("renewal_date", "2027-01-31", "renewal_date", date(2027, 1, 31)),
        ("renewal_date", "2027-01-31T10:00:00Z", "renewal_date", date(2027, 1, 31)),
        ("renewal_date", "1801353600000", "renewal_date", date(2027, 1, 31)),
        ("renewal_date", "31/01/2027", "renewal_date", None),
        ("renewal_date", "", "renewal_date", None),
    ],
)
def test_arr_and_renewal_are_copied_from_the_attributes(attribute, value, column, expected) -> None:
    account = AccountRow(
        id=1, connection="default", crm="hubspot", crm_id="1", name=None, domain=None,
        attributes={}, last_usage_at=None, last_interaction_at=None, deleted_at=None,
        score=None, band="unknown", customer=True, health_updated_at=None,
        created_at=datetime.now(UTC), first_seen_at=None, segment=None, owner=None,
        arr=99.0, renewal_date=date(2020, 1, 1), trend_30d=None, signals=None, drivers=None,
        coverage=None, config_version=None, indicators_at_risk=None, not_found_at=None,
        not_found_reason=None,
    )  # fmt: skip
    facts.apply_attributes(account, attributes={attribute: value}, at=datetime.now(UTC))
    assert getattr(account, column) == expected


# --- filter and sorts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, ["1"]), (30, ["1", "2"]), (31, ["1", "2", "3"]), (3650, ["1", "2", "3"])],
)
async def test_renewal_within_days_runs_from_today_to_today_plus_n(
    service, viewer, days, expected
) -> None:
    assert await ids(service, viewer, renewal_within_days=days, sort="renewal") == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("arr", ["3", "2", "1", "5", "4"]),
        ("-arr", ["5", "1", "2", "3", "4"]),
        ("renewal", ["4", "1", "2", "3", "5"]),
        ("-renewal", ["3", "2", "1", "4", "5"]),
    ],
)
async def test_arr_and_renewal_sort_with_nulls_last(service, viewer, sort, expected) -> None:
    assert await ids(service, viewer, sort=sort) == expected


@pytest.mark.parametrize("path", ["/api/v1/accounts", "/api/v1/accounts.csv"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"renewal_within_days": -1}, "renewal_within_days"),
        ({"renewal_within_days": 3651}, "renewal_within_days"),
        ({"renewal_within_days": "soon"}, "renewal_within_days"),
        ({"sort": "revenue"}, "sort"),
        ({"band": "great"}, "band"),
        ({"score_min": 90, "score_max": 10}, "score_min"),
    ],
)
async def test_a_bad_value_is_422_naming_it(service, viewer, path, params, field) -> None:
    response = await service.client.get(path, params=params, headers=viewer)
    assert names(response, field)


async def test_another_connection_never_appears(service) -> None:
    emea = await bearer(service, role="viewer", connection="emea")
    assert await ids(service, emea) == ["9"]
    viewer = await bearer(service, role="viewer")
    assert "9" not in await ids(service, viewer, renewal_within_days=0)
    exported = await export(service, viewer)
    assert "Acme EMEA" not in exported.text


# --- the CSV export ---------------------------------------------------------------------------


async def export(service: Any, headers: dict[str, str], **params: Any) -> Any:
    response = await service.client.get("/api/v1/accounts.csv", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response


def rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_the_export_is_a_csv_file_of_the_list(service, viewer) -> None:
    response = await export(service, viewer, sort="-arr")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="accounts-{today().isoformat()}.csv"'
    )
    assert response.text.splitlines()[0] == CSV_HEADER
    found = rows(response)
    assert [row["id"] for row in found] == ["5", "1", "2", "3", "4"]
    acme = found[1]
    assert acme["name"] == "Acme"
    assert (acme["arr"], acme["currency"], acme["renewal_date"]) == (
        "50000", "USD", today().isoformat(),
    )  # fmt: skip
    assert (acme["owner"], acme["owner_name"], acme["segment"]) == ("o1", "Ann Lee", "smb")
    assert acme["record_url"] == f"https://app.hubspot.com/contacts/{PORTAL}/record/0-2/1"
    assert found[2]["arr"] == "12000.5"
    assert (found[4]["arr"], found[4]["owner"], found[4]["score"]) == ("", "", "")


async def test_the_export_takes_the_lists_filters(service, viewer) -> None:
    found = rows(await export(service, viewer, renewal_within_days=30, sort="-renewal"))
    assert [row["id"] for row in found] == ["2", "1"]


async def test_the_currency_is_the_setting(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None, currency="EUR")
    admin = await bearer(service, role="admin")
    await _write_accounts(service, [{"crm_id": "1", "name": "A", "arr": 5.0}])
    assert rows(await export(service, admin))[0]["currency"] == "EUR"


async def _write_accounts(service: Any, accounts: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(
            insert(core_table(Account)),
            [
                {"connection": "default", "crm": "hubspot", "attributes": {}, "band": "neutral",
                 "created_at": now, "segment": None, "owner": None, "trend_30d": None,
                 "score": None, "arr": None} | values
                for values in accounts
            ],
        )  # fmt: skip


async def test_text_cells_that_a_spreadsheet_would_run_are_neutralised(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None)
    admin = await bearer(service, role="admin")
    await _write_accounts(
        service,
        [
            {"crm_id": "1", "name": HOSTILE, "segment": "+cmd", "owner": "@sum(A1)",
             "score": 40, "trend_30d": -12, "arr": 1500.0},
            {"crm_id": "2", "name": "-2+3", "segment": "\tx", "owner": "\rnope"},
            {"crm_id": "3", "name": "Plain, with a comma and \"quotes\"", "segment": "a=b"},
        ],
    )  # fmt: skip
    found = {row["id"]: row for row in rows(await export(service, admin))}
    assert found["1"]["name"] == "'" + HOSTILE
    assert (found["1"]["segment"], found["1"]["owner"]) == ("'+cmd", "'@sum(A1)")
    # Numbers in numeric columns are numbers, a negative trend too.
    assert (found["1"]["score"], found["1"]["trend_30d"], found["1"]["arr"]) == (
        "40",
        "-12",
        "1500",
    )
    assert (found["2"]["name"], found["2"]["segment"], found["2"]["owner"]) == (
        "'-2+3", "'\tx", "'\rnope",
    )  # fmt: skip
    assert (found["3"]["name"], found["3"]["segment"]) == (
        'Plain, with a comma and "quotes"', "a=b",
    )  # fmt: skip


async def test_the_export_holds_every_matching_account(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None)
    viewer = await bearer(service, role="viewer")
    await _write_accounts(
        service,
        [{"crm_id": f"{n:05d}", "name": f"Account {n:05d}", "score": n % 101} for n in range(2500)],
    )
    found = rows(await export(service, viewer, sort="name"))
    assert len(found) == 2500
    assert [row["id"] for row in found] == sorted(f"{n:05d}" for n in range(2500))
    at_risk = rows(await export(service, viewer, score_max=10))
    assert len(at_risk) == sum(1 for n in range(2500) if n % 101 <= 10)


@pytest.mark.parametrize(("role", "status"), [("ingest", 403), (None, 401)])
async def test_the_export_needs_a_viewer_or_admin_key(service, role, status) -> None:
    headers = {} if role is None else await bearer(service, role=role)
    response = await service.client.get("/api/v1/accounts.csv", headers=headers)
    assert response.status_code == status
