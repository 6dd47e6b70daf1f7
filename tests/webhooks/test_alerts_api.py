"""The alerts API over HTTP: list with filters, read, acknowledge, snooze, retry, and an
account's alert history; API keys scope everything to their connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from webhooks.store import keys
from webhooks.store.models import Account, Alert, AlertDelivery, AlertReason

NOW = datetime.now(UTC).replace(microsecond=0)


async def bearer(service, *, role, connection="default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=NOW
        )
    return {"Authorization": f"Bearer {key}"}


async def account(service, crm_id: str, *, connection: str = "default") -> int:
    async with service.runtime.sessions() as session, session.begin():
        row = Account(
            connection=connection,
            crm="hubspot",
            crm_id=crm_id,
            name=f"Account {crm_id}",
            attributes={},
            band="at_risk",
            created_at=NOW,
        )
        session.add(row)
        await session.flush()
        return row.id


async def alert(
    service,
    account_id: int,
    *,
    connection: str = "default",
    rule: str = "entered-at-risk",
    status: str = "open",
    fired_at: datetime = NOW,
    deliveries: tuple[tuple[str, str], ...] = (),
    **fields: Any,
) -> int:
    async with service.runtime.sessions() as session, session.begin():
        row = Alert(
            account_id=account_id,
            connection=connection,
            rule=rule,
            key="at_risk",
            status=status,
            title="Account is at risk",
            reason="band neutral -> at risk, score 55 -> 35",
            score=35,
            band="at_risk",
            previous_score=55,
            previous_band="neutral",
            trend_30d=-20,
            drivers=["Days since last use 40 (at-risk >= 14)"],
            notified=True,
            fired_at=fired_at,
            **fields,
        )
        session.add(row)
        await session.flush()
        session.add(
            AlertReason(
                alert_id=row.id,
                rule=rule,
                key="at_risk",
                severity="high",
                title=row.title,
                reason=row.reason,
                opened_at=fired_at,
                resolved_at=row.resolved_at,
            )
        )
        for channel, delivery_status in deliveries:
            session.add(
                AlertDelivery(
                    alert_id=row.id,
                    channel=channel,
                    kind="fired",
                    status=delivery_status,
                    attempts=8 if delivery_status == "failed" else 0,
                    created_at=fired_at,
                    available_at=fired_at,
                    sent_at=fired_at if delivery_status == "sent" else None,
                    last_error="ops: 503" if delivery_status == "failed" else None,
                )
            )
        return row.id


def names(response, field: str) -> bool:
    """A 422 names the field: in FastAPI's error list (loc) or in the service's message."""
    assert response.status_code == 422, response.text
    return field in str(response.json()["detail"])


@pytest.fixture
async def seeded(service) -> dict[str, int]:
    """Two accounts of the default connection and one of another, with alerts of each kind."""
    acme, globex, emea = (
        await account(service, "101"),
        await account(service, "102"),
        await account(service, "201", connection="emea"),
    )
    return {
        "acme": acme,
        "open": await alert(
            service,
            acme,
            fired_at=NOW - timedelta(days=3),
            deliveries=(("slack", "sent"), ("email", "failed")),
        ),
        "drop": await alert(
            service,
            acme,
            rule="score-drop",
            status="acknowledged",
            fired_at=NOW - timedelta(days=2),
        ),
        "resolved": await alert(
            service,
            globex,
            status="resolved",
            resolved_at=NOW - timedelta(hours=1),
            fired_at=NOW - timedelta(days=1),
        ),
        "snoozed": await alert(
            service,
            globex,
            rule="renewal-not-healthy",
            status="snoozed",
            snoozed_until=NOW + timedelta(days=2),
            fired_at=NOW - timedelta(hours=5),
        ),
        "snooze_over": await alert(
            service,
            globex,
            rule="no-co-innovation",
            status="snoozed",
            snoozed_until=NOW - timedelta(minutes=1),
            fired_at=NOW - timedelta(hours=2),
        ),
        "emea": await alert(service, emea, connection="emea"),
    }


# --- GET /api/v1/alerts -------------------------------------------------------------------------


async def test_alerts_are_listed_newest_first_with_everything_people_need(service, seeded) -> None:
    response = await service.client.get(
        "/api/v1/alerts", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 100, 0)
    ids = [item["id"] for item in body["items"]]
    assert ids == [
        seeded["snooze_over"],
        seeded["snoozed"],
        seeded["resolved"],
        seeded["drop"],
        seeded["open"],
    ]
    item = body["items"][-1]
    assert item["account"] == {"id": "101", "name": "Account 101"}
    assert {k: item[k] for k in ("rule", "key", "status", "score", "band", "notified")} == {
        "rule": "entered-at-risk",
        "key": "at_risk",
        "status": "open",
        "score": 35,
        "band": "at_risk",
        "notified": True,
    }
    assert (item["previous_score"], item["previous_band"], item["trend_30d"]) == (
        55,
        "neutral",
        -20,
    )
    assert item["drivers"] == ["Days since last use 40 (at-risk >= 14)"]
    assert (item["title"], item["reason"]) == (
        "Account is at risk",
        "band neutral -> at risk, score 55 -> 35",
    )
    assert datetime.fromisoformat(item["fired_at"]) == NOW - timedelta(days=3)
    for empty in ("resolved_at", "acknowledged_at", "acknowledged_by", "snoozed_until"):
        assert item[empty] is None
    assert [(d["channel"], d["status"], d["attempts"]) for d in item["deliveries"]] == [
        ("slack", "sent", 0),
        ("email", "failed", 8),
    ]
    assert item["deliveries"][1]["last_error"] == "ops: 503"
    assert item["deliveries"][0]["sent_at"] is not None


async def test_a_snooze_that_ran_out_reads_as_open(service, seeded) -> None:
    headers = await bearer(service, role="viewer")
    items = (await service.client.get("/api/v1/alerts", headers=headers)).json()["items"]
    by_id = {item["id"]: item for item in items}
    assert by_id[seeded["snooze_over"]]["status"] == "open"
    assert by_id[seeded["snooze_over"]]["snoozed_until"] is None
    assert by_id[seeded["snoozed"]]["status"] == "snoozed"
    assert by_id[seeded["snoozed"]]["snoozed_until"] is not None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "open"}, ["snooze_over", "open"]),
        ({"status": "snoozed"}, ["snoozed"]),
        ({"status": "acknowledged"}, ["drop"]),
        ({"status": "resolved"}, ["resolved"]),
        ({"account": "101"}, ["drop", "open"]),
        ({"account": "999"}, []),
        ({"rule": "score-drop"}, ["drop"]),
        ({"account": "102", "status": "open"}, ["snooze_over"]),
    ],
)
async def test_alerts_can_be_filtered(service, seeded, params, expected) -> None:
    response = await service.client.get(
        "/api/v1/alerts", params=params, headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [seeded[n] for n in expected]
    assert response.json()["total"] == len(expected)


async def test_alerts_can_be_filtered_by_when_they_fired(service, seeded) -> None:
    headers = await bearer(service, role="viewer")
    params = {
        "since": (NOW - timedelta(days=2, hours=1)).isoformat(),
        "until": (NOW - timedelta(hours=3)).isoformat(),
    }
    response = await service.client.get("/api/v1/alerts", params=params, headers=headers)
    assert [item["id"] for item in response.json()["items"]] == [
        seeded["snoozed"],
        seeded["resolved"],
        seeded["drop"],
    ]
    offset = {"since": (NOW - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S+02:00")}
    response = await service.client.get("/api/v1/alerts", params=offset, headers=headers)
    assert [item["id"] for item in response.json()["items"]] == [
        seeded["snooze_over"],
        seeded["snoozed"],
    ], "two hours east of UTC: six hours ago in UTC"


async def test_alerts_are_paged(service, seeded) -> None:
    headers = await bearer(service, role="viewer")
    response = await service.client.get(
        "/api/v1/alerts", params={"limit": 2, "offset": 1}, headers=headers
    )
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)
    assert [item["id"] for item in body["items"]] == [seeded["snoozed"], seeded["resolved"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-11-23T10:00:00"}, "since"),
        ({"until": "yesterday"}, "until"),
        # Year 1 at +01:00 is year 0 in UTC: found by the fuzz suite as a 500.
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"status": "closed"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        (
            {"since": "2026-11-23T10:00:00+00:00", "until": "2026-11-22T10:00:00+00:00"},
            "until",
        ),
    ],
)
async def test_invalid_filters_are_422_naming_the_field(service, params, field) -> None:
    response = await service.client.get(
        "/api/v1/alerts", params=params, headers=await bearer(service, role="viewer")
    )
    assert names(response, field)


async def test_another_connections_key_sees_only_its_alerts(service, seeded) -> None:
    response = await service.client.get(
        "/api/v1/alerts", headers=await bearer(service, role="admin", connection="emea")
    )
    assert [item["id"] for item in response.json()["items"]] == [seeded["emea"]]


async def test_listing_alerts_needs_a_key(service) -> None:
    response = await service.client.get("/api/v1/alerts")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_ingest_key_may_not_read_alerts(service) -> None:
    response = await service.client.get(
        "/api/v1/alerts", headers=await bearer(service, role="ingest")
    )
    assert response.status_code == 403


async def test_the_bootstrap_token_reads_the_default_connections_alerts(
    service_factory,
) -> None:
    service = await service_factory(admin_token="bootstrap-token-123456")
    acme = await account(service, "101")
    await alert(service, acme)
    response = await service.client.get(
        "/api/v1/alerts", headers={"Authorization": "Bearer bootstrap-token-123456"}
    )
    assert response.json()["total"] == 1


# --- GET /api/v1/alerts/{id} --------------------------------------------------------------------


async def test_one_alert_is_read_by_id(service, seeded) -> None:
    response = await service.client.get(
        f"/api/v1/alerts/{seeded['open']}", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200
    assert response.json()["id"] == seeded["open"]
    assert len(response.json()["deliveries"]) == 2


async def test_an_unknown_alert_is_404(service, seeded) -> None:
    response = await service.client.get(
        "/api/v1/alerts/999999", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 404


async def test_another_connections_alert_is_404_not_403(service, seeded) -> None:
    headers = await bearer(service, role="admin")
    for path in ("", "/acknowledge", "/retry"):
        method = service.client.get if not path else service.client.post
        response = await method(f"/api/v1/alerts/{seeded['emea']}{path}", headers=headers)
        assert response.status_code == 404, path
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['emea']}/snooze", json={"hours": 2}, headers=headers
    )
    assert response.status_code == 404


async def test_reading_an_alert_needs_a_key_with_a_reading_role(service, seeded) -> None:
    path = f"/api/v1/alerts/{seeded['open']}"
    assert (await service.client.get(path)).status_code == 401
    ingest = await bearer(service, role="ingest")
    assert (await service.client.get(path, headers=ingest)).status_code == 403


async def test_a_non_numeric_alert_id_is_422(service) -> None:
    response = await service.client.get(
        "/api/v1/alerts/abc", headers=await bearer(service, role="viewer")
    )
    assert names(response, "alert_id")


# --- POST /api/v1/alerts/{id}/acknowledge ---------------------------------------------------------


async def test_acknowledging_records_who_and_when(service, seeded) -> None:
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['open']}/acknowledge",
        json={"note": "calling them today"},
        headers=await bearer(service, role="admin"),
    )
    assert response.status_code == 200
    item = response.json()
    assert (item["status"], item["acknowledged_by"]) == ("acknowledged", "admin-key")
    assert item["acknowledged_note"] == "calling them today"
    assert item["acknowledged_at"] is not None


async def test_acknowledging_needs_no_body(service, seeded) -> None:
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['snoozed']}/acknowledge",
        headers=await bearer(service, role="admin"),
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["snoozed_until"]) == ("acknowledged", None)


async def test_acknowledging_a_resolved_alert_keeps_it_resolved(service, seeded) -> None:
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['resolved']}/acknowledge",
        headers=await bearer(service, role="admin"),
    )
    assert (response.json()["status"], response.json()["acknowledged_by"]) == (
        "resolved",
        "admin-key",
    )


async def test_acknowledging_needs_an_admin_key(service, seeded) -> None:
    path = f"/api/v1/alerts/{seeded['open']}/acknowledge"
    assert (await service.client.post(path)).status_code == 401
    viewer = await bearer(service, role="viewer")
    response = await service.client.post(path, headers=viewer)
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


async def test_acknowledging_an_unknown_alert_is_404(service) -> None:
    response = await service.client.post(
        "/api/v1/alerts/424242/acknowledge", headers=await bearer(service, role="admin")
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"), [({"note": "x" * 1001}, "note"), ({"notes": "typo"}, "notes")]
)
async def test_an_invalid_acknowledge_body_is_422(service, seeded, body, field) -> None:
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['open']}/acknowledge",
        json=body,
        headers=await bearer(service, role="admin"),
    )
    assert names(response, field)


# --- POST /api/v1/alerts/{id}/snooze --------------------------------------------------------------


async def test_snoozing_for_hours(service, seeded) -> None:
    # The request's own time, not the module's NOW: a long suite reaches this test minutes later.
    asked = datetime.now(UTC)
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['open']}/snooze",
        json={"hours": 24},
        headers=await bearer(service, role="admin"),
    )
    assert response.status_code == 200
    item = response.json()
    assert item["status"] == "snoozed"
    until = datetime.fromisoformat(item["snoozed_until"])
    assert timedelta(hours=23, minutes=59) < until - asked < timedelta(hours=24, minutes=1)


async def test_snoozing_until_a_time_with_an_offset(service, seeded) -> None:
    until = (NOW + timedelta(days=3)).astimezone(UTC).replace(microsecond=0)
    local = until.astimezone(timezone(timedelta(hours=-5))).isoformat()
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['drop']}/snooze",
        json={"until": local},
        headers=await bearer(service, role="admin"),
    )
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["snoozed_until"]) == until
    listed = await service.client.get(
        "/api/v1/alerts",
        params={"status": "snoozed"},
        headers=await bearer(service, role="viewer"),
    )
    assert {item["id"] for item in listed.json()["items"]} == {seeded["drop"], seeded["snoozed"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "until"),
        ({"hours": 2, "until": (NOW + timedelta(days=1)).isoformat()}, "hours"),
        ({"until": (NOW - timedelta(minutes=5)).isoformat()}, "until"),
        ({"until": (NOW + timedelta(days=91)).isoformat()}, "until"),
        ({"until": "2030-01-01T10:00:00"}, "until"),
        ({"until": "next week"}, "until"),
        ({"hours": 0}, "hours"),
        ({"hours": 2161}, "hours"),
        ({"hours": "many"}, "hours"),
        ({"minutes": 30}, "minutes"),
    ],
)
async def test_an_invalid_snooze_is_422_naming_the_field(service, seeded, body, field) -> None:
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['open']}/snooze",
        json=body,
        headers=await bearer(service, role="admin"),
    )
    assert names(response, field)


async def test_snoozing_a_resolved_alert_is_409(service, seeded) -> None:
    response = await service.client.post(
        f"/api/v1/alerts/{seeded['resolved']}/snooze",
        json={"hours": 2},
        headers=await bearer(service, role="admin"),
    )
    assert response.status_code == 409
    assert "resolved" in response.json()["detail"]


async def test_snoozing_needs_an_admin_key(service, seeded) -> None:
    path = f"/api/v1/alerts/{seeded['open']}/snooze"
    assert (await service.client.post(path, json={"hours": 2})).status_code == 401
    viewer = await bearer(service, role="viewer")
    assert (await service.client.post(path, json={"hours": 2}, headers=viewer)).status_code == 403


async def test_snoozing_an_unknown_alert_is_404(service) -> None:
    response = await service.client.post(
        "/api/v1/alerts/424242/snooze",
        json={"hours": 2},
        headers=await bearer(service, role="admin"),
    )
    assert response.status_code == 404


# --- POST /api/v1/alerts/{id}/retry ---------------------------------------------------------------


async def test_retry_makes_failed_deliveries_pending_again(service, seeded) -> None:
    headers = await bearer(service, role="admin")
    response = await service.client.post(f"/api/v1/alerts/{seeded['open']}/retry", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"retried": 1}
    item = (await service.client.get(f"/api/v1/alerts/{seeded['open']}", headers=headers)).json()
    assert [(d["channel"], d["status"], d["attempts"]) for d in item["deliveries"]] == [
        ("slack", "sent", 0),
        ("email", "pending", 0),
    ]
    again = await service.client.post(f"/api/v1/alerts/{seeded['open']}/retry", headers=headers)
    assert again.json() == {"retried": 0}


async def test_retry_needs_an_admin_key(service, seeded) -> None:
    path = f"/api/v1/alerts/{seeded['open']}/retry"
    assert (await service.client.post(path)).status_code == 401
    viewer = await bearer(service, role="viewer")
    assert (await service.client.post(path, headers=viewer)).status_code == 403


async def test_retrying_an_unknown_alert_is_404(service) -> None:
    response = await service.client.post(
        "/api/v1/alerts/424242/retry", headers=await bearer(service, role="admin")
    )
    assert response.status_code == 404


# --- GET /api/v1/accounts/{id}/alerts -----------------------------------------------------------


async def test_an_accounts_alert_history_includes_resolved_alerts(service, seeded) -> None:
    response = await service.client.get(
        "/api/v1/accounts/102/alerts", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == [
        seeded["snooze_over"],
        seeded["snoozed"],
        seeded["resolved"],
    ]
    assert [item["status"] for item in body["items"]] == ["open", "snoozed", "resolved"]
    assert body["total"] == 3


async def test_an_account_without_alerts_has_an_empty_history(service) -> None:
    await account(service, "103")
    response = await service.client.get(
        "/api/v1/accounts/103/alerts", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0, "limit": 100, "offset": 0}


async def test_an_accounts_history_is_paged(service, seeded) -> None:
    response = await service.client.get(
        "/api/v1/accounts/102/alerts",
        params={"limit": 1, "offset": 2},
        headers=await bearer(service, role="viewer"),
    )
    assert [item["id"] for item in response.json()["items"]] == [seeded["resolved"]]
    bad = await service.client.get(
        "/api/v1/accounts/102/alerts",
        params={"limit": 1000},
        headers=await bearer(service, role="viewer"),
    )
    assert names(bad, "limit")


@pytest.mark.parametrize("record", ["999", "201"])
async def test_an_unknown_or_other_connections_account_is_404(service, seeded, record) -> None:
    response = await service.client.get(
        f"/api/v1/accounts/{record}/alerts", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 404


async def test_an_accounts_history_needs_a_reading_key(service, seeded) -> None:
    path = "/api/v1/accounts/101/alerts"
    assert (await service.client.get(path)).status_code == 401
    ingest = await bearer(service, role="ingest")
    assert (await service.client.get(path, headers=ingest)).status_code == 403
