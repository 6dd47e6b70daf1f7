"""The accounts API over HTTP: list with every filter and sort, paging, sparklines, one account
in detail (indicators, coverage, history, attributes, open alerts); keys scope everything to
their connection.

Accounts are built the way the service builds them: native events through the worker. The
scoring configuration weighs only recency, from 0 (100 days since the last use) to 100 (used
today), so an account's score is 100 minus the days since its last use. Older health history
is seeded directly, then a second pass of the worker reads the 30-day trend from it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from signals.config import HealthConfig
from testkit import RECENCY_ONLY as SHARED_RECENCY_ONLY
from testkit import Checkouts, native, store_native
from webhooks.store import configs, keys
from webhooks.store.models import Account, Alert, HealthSnapshot

NO_CRM = {"hubspot_access_token": None}
ADMIN_TOKEN = "accounts-test-admin-token"


RECENCY_ONLY: dict[str, Any] = {**SHARED_RECENCY_ONLY, "alerts": []}

# crm id -> (name, days since last use or None, segment, owner, score 40 days ago or None)
ACCOUNTS: dict[str, tuple[str, int | None, str, str, int | None]] = {
    "1": ("Acme", 0, "enterprise", "alice", 80),  # 100 healthy, trend +20 (up)
    "2": ("Globex 100%", 50, "smb", "bob", 51),  # 50 neutral, trend -1 (flat)
    "3": ("Initech", 80, "enterprise", "bob", 60),  # 20 at risk, trend -40 (down)
    "4": ("Umbrella", None, "smb", "carol", None),  # never used: unknown, no score, no trend
}
# The order the second pass rescores them in (updated_at): "4" is not rescored again.
SECOND_PASS = ("1", "3", "2")


async def bearer(service: Any, *, role: str, connection: str = "default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


def _attributes(crm_id: str, *, seconds_ago: float = 0.0) -> dict[str, object]:
    name, _, segment, owner, _ = ACCOUNTS[crm_id]
    attributes = {"name": name, "segment": segment, "owner": owner}
    if crm_id == "2":
        attributes |= {"seats": "25", "arr": "12000.5", "renewal_date": "2027-01-31"}
    return native("account", crm_id, days_ago=seconds_ago / 86400, attributes=attributes)


async def _process(service: Any, events: list[dict[str, object]]) -> None:
    await store_native(service.runtime, events)
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == len(events), report


async def _seed_history(service: Any, crm_id: str, *points: tuple[int, int]) -> None:
    """History rows (days ago, score) from before the service knew the account."""
    now = datetime.now(UTC)
    async with service.runtime.sessions() as session, session.begin():
        account_id = await session.scalar(select(Account.id).where(Account.crm_id == crm_id))
        for days_ago, score in points:
            session.add(
                HealthSnapshot(
                    account_id=account_id,
                    computed_at=now - timedelta(days=days_ago),
                    score=score,
                    band="healthy" if score >= 70 else "neutral" if score >= 40 else "at_risk",
                )
            )


@pytest.fixture
async def service(service_factory: Any) -> Any:
    service = await service_factory(**NO_CRM, admin_token=ADMIN_TOKEN)
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(RECENCY_ONLY),
            author="test",
            comment="recency only",
            now=datetime.now(UTC),
        )
    first: list[dict[str, object]] = []
    for crm_id, (_, days, _, _, _) in ACCOUNTS.items():
        if days is not None:
            first.append(native("usage", crm_id, days_ago=days, user="u1"))
        first.append(_attributes(crm_id, seconds_ago=60))
    await _process(service, first)
    for crm_id, (_, _, _, _, before) in ACCOUNTS.items():
        if before is not None:
            await _seed_history(service, crm_id, (100, 90), (40, before))
    for crm_id in SECOND_PASS:
        await _process(service, [_attributes(crm_id)])
    # Another connection's account: never visible to the default connection's keys.
    async with service.runtime.sessions() as session, session.begin():
        session.add(
            Account(
                connection="emea",
                crm="native",
                crm_id="9",
                name="Acme EMEA",
                attributes={},
                band="at_risk",
                score=10,
                created_at=datetime.now(UTC),
            )
        )
    return service


@pytest.fixture
async def viewer(service: Any) -> dict[str, str]:
    return await bearer(service, role="viewer")


async def _ids(service: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = await service.client.get("/api/v1/accounts", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def names(response: Any, *fields: str) -> bool:
    """A 422 names the fields: in FastAPI's error list (loc) or in the service's message."""
    assert response.status_code == 422, response.text
    return all(field in str(response.json()["detail"]) for field in fields)


# --- the list -----------------------------------------------------------------------------------


async def test_the_list_puts_the_most_at_risk_first_and_unscored_last(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts", headers=viewer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == ["3", "2", "1", "4"]
    assert (body["total"], body["limit"], body["offset"]) == (4, 50, 0)


async def test_an_item_carries_the_contract_fields(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts", params={"q": "acme"}, headers=viewer)
    (item,) = response.json()["items"]
    assert item["id"] == "1"
    assert item["name"] == "Acme"
    assert (item["score"], item["band"]) == (100, "healthy")
    assert item["signals"] == {
        "active_use": 100.0,
        "collaboration": None,
        "mutual_value": None,
        "momentum": None,
    }
    # Used moments ago: the only indicator costs (next to) nothing.
    assert all(text.startswith("Days since last use 0") for text in item["drivers"])
    assert item["coverage"] == {
        "ratio": 1.0,
        "signals": ["active_use"],
        "indicators": ["active_use.recency_days"],
    }
    assert datetime.fromisoformat(item["updated_at"]) > datetime.now(UTC) - timedelta(minutes=5)
    assert (item["trend_30d"], item["segment"], item["owner"]) == (20, "enterprise", "alice")


async def test_an_unscored_account_has_no_score_and_unknown_band(service, viewer) -> None:
    response = await service.client.get(
        "/api/v1/accounts", params={"q": "umbrella"}, headers=viewer
    )
    (item,) = response.json()["items"]
    assert (item["score"], item["band"], item["trend_30d"]) == (None, "unknown", None)
    assert item["signals"]["active_use"] is None
    assert item["coverage"]["ratio"] == 0.0


async def test_drivers_say_what_costs_points(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts", params={"q": "initech"}, headers=viewer)
    (item,) = response.json()["items"]
    assert len(item["drivers"]) == 1
    assert item["drivers"][0].startswith("Days since last use 80")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"band": "healthy"}, ["1"]),
        ({"band": "healthy,at_risk"}, ["3", "1"]),
        ({"band": ["neutral", "unknown"]}, ["2", "4"]),
        ({"segment": "enterprise"}, ["3", "1"]),
        ({"segment": "smb,nowhere"}, ["2", "4"]),
        ({"owner": "bob"}, ["3", "2"]),
        ({"owner": ["alice", "carol"]}, ["1", "4"]),
        ({"score_min": 40}, ["2", "1"]),
        ({"score_max": 50}, ["3", "2"]),
        ({"score_min": 20, "score_max": 20}, ["3"]),
        ({"trend": "up"}, ["1"]),
        ({"trend": "down"}, ["3"]),
        ({"trend": "flat"}, ["2"]),
        ({"q": "GLOB"}, ["2"]),
        ({"q": "100%"}, ["2"]),
        ({"q": "%"}, ["2"]),
        ({"q": "_"}, []),
        ({"band": "at_risk,neutral", "owner": "bob", "score_max": 30}, ["3"]),
    ],
)
async def test_each_filter_narrows_the_list(service, viewer, params, expected) -> None:
    assert await _ids(service, viewer, **params) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("score", ["3", "2", "1", "4"]),
        ("-score", ["1", "2", "3", "4"]),
        ("name", ["1", "2", "3", "4"]),
        ("-name", ["4", "3", "2", "1"]),
        ("updated_at", ["4", "1", "3", "2"]),
        ("-updated_at", ["2", "3", "1", "4"]),
        ("trend", ["3", "2", "1", "4"]),
        ("-trend", ["1", "2", "3", "4"]),
    ],
)
async def test_each_sort_orders_the_list_with_nulls_last(service, viewer, sort, expected) -> None:
    assert await _ids(service, viewer, sort=sort) == expected


async def test_pages_follow_each_other_and_total_counts_all_matches(service, viewer) -> None:
    pages = []
    for offset in (0, 2, 4):
        response = await service.client.get(
            "/api/v1/accounts", params={"limit": 2, "offset": offset}, headers=viewer
        )
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (4, 2, offset)
        pages.append([item["id"] for item in body["items"]])
    assert pages == [["3", "2"], ["1", "4"], []]


async def test_the_sparkline_holds_90_days_of_scores_per_day(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts", headers=viewer)
    items = {item["id"]: item for item in response.json()["items"]}
    today = datetime.now(UTC).date()
    # The score in force 90 days ago (seeded 100 days ago), then 40 days ago, then today.
    assert items["1"]["sparkline"] == [
        [(today - timedelta(days=90)).isoformat(), 90],
        [(today - timedelta(days=40)).isoformat(), 80],
        [today.isoformat(), 100],
    ]
    assert items["4"]["sparkline"] == [[today.isoformat(), None]]


async def test_a_score_unchanged_since_long_ago_reaches_today(service, viewer) -> None:
    async with service.runtime.sessions() as session, session.begin():
        account = (await session.execute(select(Account).where(Account.crm_id == "4"))).scalar_one()
        await session.execute(
            update(HealthSnapshot)
            .where(HealthSnapshot.account_id == account.id)
            .values(computed_at=datetime.now(UTC) - timedelta(days=10))
        )
    response = await service.client.get("/api/v1/accounts", params={"q": "umb"}, headers=viewer)
    today = datetime.now(UTC).date()
    assert response.json()["items"][0]["sparkline"] == [
        [(today - timedelta(days=10)).isoformat(), None],
        [today.isoformat(), None],
    ]


async def test_deleted_accounts_are_not_listed(service, viewer) -> None:
    async with service.runtime.sessions() as session, session.begin():
        account = (await session.execute(select(Account).where(Account.crm_id == "2"))).scalar_one()
        account.deleted_at = datetime.now(UTC)
    assert await _ids(service, viewer) == ["3", "1", "4"]
    response = await service.client.get("/api/v1/accounts/2", headers=viewer)
    assert response.status_code == 200, "its history stays readable"
    assert response.json()["deleted_at"] is not None


# --- one account --------------------------------------------------------------------------------


async def test_the_detail_has_the_contract_fields_and_the_breakdown(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/2", headers=viewer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["name"], body["score"], body["band"]) == (
        "2",
        "Globex 100%",
        50,
        "neutral",
    )
    assert body["signals"]["active_use"] == 50.0
    assert body["drivers"][0].startswith("Days since last use 50")
    assert body["coverage"]["ratio"] == 1.0
    assert body["trend_30d"] == -1
    assert set(body["indicators"]) == {"active_use", "collaboration", "mutual_value", "momentum"}
    (recency,) = body["indicators"]["active_use"]
    assert recency["name"] == "recency_days"
    assert recency["raw"] == pytest.approx(50, abs=0.01)
    assert recency["score"] == pytest.approx(50, abs=0.1)
    assert recency["weight"] == 1.0
    assert body["indicators"]["collaboration"] == []
    assert body["deleted_at"] is None


async def test_the_detail_lists_90_days_of_history_oldest_first(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/3", headers=viewer)
    history = response.json()["history"]
    now = datetime.now(UTC)
    assert [(point["score"], point["band"]) for point in history] == [
        (90, "healthy"),
        (60, "neutral"),
        (20, "at_risk"),
    ]
    first = datetime.fromisoformat(history[0]["at"])
    assert abs(first - (now - timedelta(days=90))) < timedelta(minutes=5)
    assert abs(datetime.fromisoformat(history[1]["at"]) - (now - timedelta(days=40))) < timedelta(
        minutes=5
    )


async def test_the_detail_reads_the_attributes(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/2", headers=viewer)
    assert response.json()["attributes"] == {
        "name": "Globex 100%",
        "seats": 25,
        "arr": 12000.5,
        "renewal_date": "2027-01-31",
        "segment": "smb",
        "owner": "bob",
        "domain": None,
    }


async def test_the_detail_counts_the_alerts_that_read_as_open(service, viewer) -> None:
    now = datetime.now(UTC)
    async with service.runtime.sessions() as session, session.begin():
        account_id = await session.scalar(select(Account.id).where(Account.crm_id == "3"))
        for status, snoozed_until in (
            ("open", None),
            ("snoozed", now - timedelta(hours=1)),  # the snooze ran out: open again
            ("snoozed", now + timedelta(hours=1)),
            ("acknowledged", None),
            ("resolved", None),
        ):
            session.add(
                Alert(
                    account_id=account_id,
                    connection="default",
                    rule="entered-at-risk",
                    key="at_risk",
                    status=status,
                    title="Account is at risk",
                    reason="",
                    score=20,
                    band="at_risk",
                    drivers=[],
                    fired_at=now,
                    snoozed_until=snoozed_until,
                )
            )
    response = await service.client.get("/api/v1/accounts/3", headers=viewer)
    assert response.json()["alerts_open"] == 2
    other = await service.client.get("/api/v1/accounts/1", headers=viewer)
    assert other.json()["alerts_open"] == 0


async def test_the_account_alerts_path_still_answers(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/3/alerts", headers=viewer)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0


# --- access and validation ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/accounts", "/api/v1/accounts/1"])
async def test_without_a_key_it_is_401(service, path) -> None:
    response = await service.client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/api/v1/accounts", "/api/v1/accounts/1"])
async def test_an_ingest_key_is_403(service, path) -> None:
    response = await service.client.get(path, headers=await bearer(service, role="ingest"))
    assert response.status_code == 403


async def test_an_admin_key_may_read(service) -> None:
    headers = await bearer(service, role="admin")
    assert await _ids(service, headers, band="healthy") == ["1"]


async def test_unknown_account_is_404(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/404", headers=viewer)
    assert response.status_code == 404


async def test_another_connections_account_reads_as_missing(service, viewer) -> None:
    response = await service.client.get("/api/v1/accounts/9", headers=viewer)
    assert response.status_code == 404
    assert "9" not in await _ids(service, viewer)


async def test_a_key_sees_only_its_own_connection(service) -> None:
    emea = await bearer(service, role="viewer", connection="emea")
    assert await _ids(service, emea) == ["9"]
    response = await service.client.get("/api/v1/accounts/1", headers=emea)
    assert response.status_code == 404


async def test_an_unknown_band_is_422_naming_it(service, viewer) -> None:
    response = await service.client.get(
        "/api/v1/accounts", params={"band": "healthy,great"}, headers=viewer
    )
    assert names(response, "band", "great")


async def test_score_min_above_score_max_is_422_naming_both(service, viewer) -> None:
    response = await service.client.get(
        "/api/v1/accounts", params={"score_min": 80, "score_max": 20}, headers=viewer
    )
    assert names(response, "score_min", "score_max")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"score_min": -1}, "score_min"),
        ({"score_max": 101}, "score_max"),
        ({"trend": "sideways"}, "trend"),
        ({"sort": "revenue"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
async def test_an_invalid_parameter_is_422_naming_it(service, viewer, params, field) -> None:
    response = await service.client.get("/api/v1/accounts", params=params, headers=viewer)
    assert names(response, field)


async def test_the_list_and_the_detail_read_only_through_the_read_engine(service) -> None:
    main, reads = Checkouts(service.runtime.engine), Checkouts(service.runtime.read_engine)
    # The bootstrap token is checked without the database: the requests need nothing else.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    listed = await service.client.get("/api/v1/accounts", headers=admin)
    detail = await service.client.get("/api/v1/accounts/1", headers=admin)

    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 4
    assert detail.status_code == 200, detail.text
    assert (main.count, reads.count > 0) == (0, True)
