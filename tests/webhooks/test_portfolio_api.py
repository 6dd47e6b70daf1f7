"""GET /api/v1/portfolio over HTTP: the contract's shape, the key's connection only, filters
read like the list's (422 naming a bad one), viewer or admin only. What the parts count is
checked in tests/webhooks/store/test_portfolio_queries.py; here the accounts are built the way
the service builds them (native events through the worker) and history rows are added."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from signals.config import HealthConfig
from testkit import RECENCY_ONLY, native, store_native
from webhooks.store import configs, keys
from webhooks.store.models import Account, HealthSnapshot

PORTAL = 62515
BANDS = ["healthy", "neutral", "at_risk", "onboarding", "unknown"]


async def bearer(service: Any, *, role: str, connection: str = "default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture
async def service(service_factory: Any) -> Any:
    """Three accounts scored by recency only (score = 100 - days since last use): "1" healthy,
    "2" at risk (it was healthy 10 days ago), "3" neutral; and an at-risk account of another
    connection renewing today."""
    service = await service_factory(hubspot_access_token=None, hubspot_portal_id=PORTAL)
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate({**RECENCY_ONLY, "alerts": []}),
            author="test",
            comment="recency only",
            now=datetime.now(UTC),
        )
    book = {
        "1": (0, {"name": "Acme", "arr": 50000, "segment": "smb", "owner": "o1",
                  "renewal_date": today().isoformat()}),
        "2": (80, {"name": "Globex", "arr": 20000, "segment": "enterprise", "owner": "o2",
                   "renewal_date": (today() + timedelta(days=90)).isoformat()}),
        "3": (50, {"name": "Initech", "segment": "smb", "owner": "o1",
                   "renewal_date": (today() + timedelta(days=91)).isoformat()}),
    }  # fmt: skip
    events = []
    for crm_id, (days, attributes) in book.items():
        events.append(native("usage", crm_id, days_ago=days, user="u1"))
        events.append(native("account", crm_id, attributes=attributes))
    await store_native(service.runtime, events)
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == len(events), report
    async with service.runtime.sessions() as session, session.begin():
        globex = await session.scalar(select(Account.id).where(Account.crm_id == "2"))
        session.add(
            HealthSnapshot(
                account_id=globex,
                computed_at=datetime.now(UTC) - timedelta(days=10),
                score=90,
                band="healthy",
            )
        )
        session.add(
            Account(
                connection="emea", crm="native", crm_id="9", name="Acme EMEA", attributes={},
                band="at_risk", score=10, created_at=datetime.now(UTC), arr=1e6,
                renewal_date=today(), segment="emea-only", owner="o9",
            )
        )  # fmt: skip
    return service


@pytest.fixture
async def viewer(service: Any) -> dict[str, str]:
    return await bearer(service, role="viewer")


async def get(service: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await service.client.get("/api/v1/portfolio", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_answer_has_the_contracts_shape(service, viewer) -> None:
    body = await get(service, viewer)
    assert set(body) == {"currency", "as_of", "totals", "bands", "history", "movers",
                         "renewals", "facets"}  # fmt: skip
    assert body["currency"] == "USD"
    assert abs(datetime.fromisoformat(body["as_of"]) - datetime.now(UTC)) < timedelta(minutes=5)
    assert body["totals"] == {
        "accounts": 3,
        "arr": 70000.0,
        "accounts_without_arr": 1,
        "accounts_at_risk": 1,
        "arr_at_risk": 20000.0,
    }
    assert [band["band"] for band in body["bands"]] == BANDS
    assert {band["band"]: band["accounts"] for band in body["bands"]} == {
        "healthy": 1, "neutral": 1, "at_risk": 1, "onboarding": 0, "unknown": 0,
    }  # fmt: skip
    history = body["history"]
    assert len(history) == 91
    assert history[-1]["day"] == today().isoformat()
    assert history[0]["day"] == (today() - timedelta(days=90)).isoformat()
    assert all(list(day["bands"]) == BANDS for day in history)
    assert history[-1]["bands"]["at_risk"] == {"accounts": 1, "arr": 20000.0}
    # Yesterday Globex was healthy, with no ARR known yet (it came today); the others were not
    # scored yet. Eleven days ago nobody was.
    assert history[-2]["bands"]["healthy"] == {"accounts": 1, "arr": 0.0}
    assert sum(band["accounts"] for band in history[-2]["bands"].values()) == 1
    assert sum(band["accounts"] for band in history[-12]["bands"].values()) == 0


async def test_the_movers_renewals_and_facets(service, viewer) -> None:
    body = await get(service, viewer)
    (mover,) = body["movers"]["items"]
    assert body["movers"]["days"] == 7
    assert mover == {
        "id": "2", "name": "Globex", "score": 20, "band": "at_risk", "score_before": 90,
        "band_before": "healthy", "change": -70, "arr": 20000.0, "owner": "o2",
        "owner_name": None,
        "record_url": f"https://app.hubspot.com/contacts/{PORTAL}/record/0-2/2",
    }  # fmt: skip
    renewals = body["renewals"]
    assert (renewals["days"], renewals["total"]) == (90, 2)
    assert [(item["id"], item["days_left"]) for item in renewals["items"]] == [("1", 0), ("2", 90)]
    assert set(renewals["items"][0]) == {
        "id", "name", "renewal_date", "days_left", "band", "score", "arr", "owner",
        "owner_name", "record_url",
    }  # fmt: skip
    assert [band["band"] for band in renewals["bands"]] == BANDS
    assert body["facets"] == {
        "segments": [{"value": "smb", "accounts": 2}, {"value": "enterprise", "accounts": 1}],
        "owners": [
            {"value": "o1", "name": None, "accounts": 2},
            {"value": "o2", "name": None, "accounts": 1},
        ],
    }


@pytest.mark.parametrize(
    ("params", "accounts"),
    [
        ({"band": "healthy,neutral"}, 2),
        ({"band": ["at_risk", "healthy"]}, 2),
        ({"segment": "smb"}, 2),
        ({"owner": "o2"}, 1),
        ({"renewal_within_days": 0}, 1),
        ({"renewal_within_days": 90}, 2),
        ({"segment": "emea-only"}, 0),
    ],
)
async def test_filters_read_like_the_lists(service, viewer, params, accounts) -> None:
    body = await get(service, viewer, **params)
    assert body["totals"]["accounts"] == accounts
    assert len(body["facets"]["segments"]) == 2


async def test_another_connection_sees_only_its_own(service) -> None:
    body = await get(service, await bearer(service, role="viewer", connection="emea"))
    assert body["totals"]["accounts"] == 1
    assert body["facets"]["segments"] == [{"value": "emea-only", "accounts": 1}]
    assert [item["id"] for item in body["renewals"]["items"]] == ["9"]
    default = await get(service, await bearer(service, role="admin"))
    assert "9" not in [item["id"] for item in default["renewals"]["items"]]
    assert "emea-only" not in str(default["facets"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"band": "great"}, "band"),
        ({"renewal_within_days": -1}, "renewal_within_days"),
        ({"renewal_within_days": 3651}, "renewal_within_days"),
        ({"renewal_within_days": "soon"}, "renewal_within_days"),
        ({"segment": "a\x00b"}, "segment"),
        ({"owner": "a\x00b"}, "owner"),
    ],
)
async def test_a_bad_filter_is_422_naming_it(service, viewer, params, field) -> None:
    response = await service.client.get("/api/v1/portfolio", params=params, headers=viewer)
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])


@pytest.mark.parametrize(("role", "status"), [("ingest", 403), (None, 401)])
async def test_it_needs_a_viewer_or_admin_key(service, role, status) -> None:
    headers = {} if role is None else await bearer(service, role=role)
    response = await service.client.get("/api/v1/portfolio", headers=headers)
    assert response.status_code == status


async def test_the_currency_is_the_setting(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None, currency="GBP")
    body = await get(service, await bearer(service, role="viewer"))
    assert (body["currency"], body["totals"]["accounts"]) == ("GBP", 0)
    assert len(body["history"]) == 91
