"""POST /ingest/events and GET /api/v1/ingest/unmatched over HTTP, with API keys."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from testkit import crm_accounts, native
from webhooks.store import keys, outcomes
from webhooks.store.models import Account, InboxEvent, SurveyFact, UsageMonth

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def bearer(service, *, role, connection="default"):
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=NOW
        )
    return {"Authorization": f"Bearer {key}"}


async def post(service, events, headers):
    return await service.client.post("/ingest/events", json={"events": events}, headers=headers)


async def test_native_events_are_stored_then_become_facts(service):
    await crm_accounts(service.runtime, ["1001"])
    headers = await bearer(service, role="ingest")
    response = await post(
        service,
        [native("usage", "1001", user="u1", id="e-1"), native("usage", "1001", user="u2")],
        headers,
    )
    assert response.status_code == 202
    assert response.json() == {"received": 2, "stored": 2, "duplicates": 0}
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        users = set((await session.execute(select(UsageMonth.user).join(Account))).scalars().all())
    assert users == {"u1", "u2"}


async def test_an_event_sent_again_with_its_id_is_stored_once(service):
    headers = await bearer(service, role="admin")
    event = native("collaboration", "1001", kind="feedback", id="fb-1")
    await post(service, [event], headers)
    again = await post(service, [event], headers)
    assert again.json() == {"received": 1, "stored": 0, "duplicates": 1}


async def test_events_land_in_the_keys_connection(service):
    headers = await bearer(service, role="ingest", connection="emea")
    await post(service, [native("usage", "1001", user="u1")], headers)
    async with service.runtime.sessions() as session:
        connections = (await session.execute(select(InboxEvent.connection))).scalars().all()
    assert connections == ["emea"]


async def test_without_a_key_it_is_401(service):
    response = await post(service, [native("usage", "1", user="u")], {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_viewer_key_may_not_push_events(service):
    response = await post(
        service, [native("usage", "1", user="u")], await bearer(service, role="viewer")
    )
    assert response.status_code == 403
    assert "ingest" in response.json()["detail"]


async def test_bootstrap_admin_token_may_push_events(service_factory):
    service = await service_factory(admin_token="bootstrap-token-123456")
    response = await post(
        service,
        [native("usage", "1", user="u")],
        {"Authorization": "Bearer bootstrap-token-123456"},
    )
    assert response.status_code == 202


async def test_invalid_events_are_422_naming_every_field_and_nothing_is_stored(service):
    headers = await bearer(service, role="ingest")
    response = await post(
        service,
        [
            native("usage", "1", user="u"),
            {"type": "usage", "account": "1"},
            {"type": "collaboration", "account": "1", "kind": "party"},
            {"type": "usage", "account": "1", "user": "u", "at": "2026-11-23T10:00:00"},
            {"type": "usage", "account": "1", "user": "u", "at": "0001-01-01T00:00:00+01:00"},
        ],
        headers,
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "events[1].user: Field required" in detail
    assert "events[2].kind" in detail
    assert "events[3].at" in detail
    assert "events[4].at: 0001-01-01T00:00:00+01:00 is out of range" in detail
    async with service.runtime.sessions() as session:
        assert (await session.execute(select(InboxEvent))).first() is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{nope", "not valid JSON"),
        (b"[]", '{"events"'),
        (b'{"events": []}', "empty"),
    ],
)
async def test_malformed_bodies_are_400(service, content, message):
    headers = {**(await bearer(service, role="ingest")), "Content-Type": "application/json"}
    response = await service.client.post("/ingest/events", content=content, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["detail"]


async def test_more_than_1000_events_is_400(service):
    events = [native("usage", "1", user=f"u{i}") for i in range(1001)]
    response = await post(service, events, await bearer(service, role="ingest"))
    assert response.status_code == 400
    assert "at most 1000" in response.json()["detail"]


async def test_a_body_over_the_limit_is_413(service_factory):
    service = await service_factory(webhook_max_body_bytes=1000)
    events = [native("usage", "1", user="u" * 150) for _ in range(10)]
    response = await post(service, events, await bearer(service, role="ingest"))
    assert response.status_code == 413


# --- unmatched ------------------------------------------------------------------------------------


async def park_one(service):
    auth = "Basic " + base64.b64encode(b"sk-test-write-key-1:").decode()
    await service.client.post(
        "/ingest/segment/v1/batch",
        json={
            "batch": [
                {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Initech"}},
                {"type": "track", "userId": "u1", "event": "E", "context": {"groupId": "g1"}},
            ]
        },
        headers={"Authorization": auth},
    )
    await service.runtime.pipeline.run_once()  # the request, split into its calls
    await service.runtime.pipeline.run_once()  # the calls


async def test_unmatched_lists_what_waits_with_the_groups_name(service_factory):
    service = await service_factory(segment_write_key="sk-test-write-key-1")
    await park_one(service)
    response = await service.client.get(
        "/api/v1/ingest/unmatched", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    [item] = body["items"]
    assert (item["kind"], item["id"], item["events"], item["group_name"]) == (
        "group",
        "g1",
        1,
        "Initech",
    )
    assert "crm_id" in item["reason"]


async def test_unmatched_of_another_connection_is_403(service):
    headers = await bearer(service, role="admin", connection="emea")
    response = await service.client.get(
        "/api/v1/ingest/unmatched", params={"connection": "default"}, headers=headers
    )
    assert response.status_code == 403


async def test_an_ingest_key_may_not_read_unmatched(service):
    headers = await bearer(service, role="ingest")
    response = await service.client.get("/api/v1/ingest/unmatched", headers=headers)
    assert response.status_code == 403


async def test_survey_answers_are_stored_then_become_the_accounts_voice(service):
    await crm_accounts(service.runtime, ["1001"])
    headers = await bearer(service, role="ingest")
    # The service scores on the wall clock: the answers are of the last few weeks.
    today = datetime.now(UTC)
    answers = [
        native("survey", "1001", kind="nps", score=score, respondent=who,
               at=(today - timedelta(days=days)).isoformat())
        for score, who, days in ((10, "a@acme.test", 30), (9, "b@acme.test", 20),
                                 (4, "c@acme.test", 10))
    ]  # fmt: skip
    answers.append(
        native("survey", "1001", kind="csat", score=2, respondent="c@acme.test",
               comment="<script>alert(1)</script> slow support")
    )  # fmt: skip
    response = await post(service, answers, headers)
    assert response.status_code == 202
    assert response.json()["stored"] == 4
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        held = (
            await session.execute(
                select(SurveyFact.kind, SurveyFact.score, SurveyFact.comment).order_by(
                    SurveyFact.at
                )
            )
        ).all()
        account = (await session.execute(select(Account))).scalar_one()
    assert [(kind, score) for kind, score, _ in held] == [
        ("nps", 10.0), ("nps", 9.0), ("nps", 4.0), ("csat", 2.0)
    ]  # fmt: skip
    assert held[-1][2] == "<script>alert(1)</script> slow support"
    # NPS (2 promoters, 1 detractor of 3) and the latest CSAT answer, in mutual value.
    assert "mutual_value.nps" in account.coverage["indicators"]
    assert "mutual_value.csat_latest" in account.coverage["indicators"]


async def test_a_survey_score_off_its_scale_is_422_naming_the_field(service):
    headers = await bearer(service, role="ingest")
    response = await post(
        service,
        [
            native("survey", "1", kind="nps", score=11, respondent="a"),
            native("survey", "1", kind="csat", score=0, respondent="a"),
            native("survey", "1", kind="mood", score=3, respondent="a"),
            {"type": "survey", "account": "1", "kind": "nps", "score": 9},
        ],
        headers,
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "events[0].score: nps scores run from 0 to 10, not 11" in detail
    assert "events[1].score: csat scores run from 1 to 5, not 0" in detail
    assert "events[2].kind" in detail
    assert "events[3].respondent: Field required" in detail
    async with service.runtime.sessions() as session:
        assert (await session.execute(select(InboxEvent))).first() is None


async def test_an_outcome_keeps_the_arr_it_was_sent_with(service):
    await crm_accounts(service.runtime, ["1001", "1002"])
    headers = await bearer(service, role="ingest")
    response = await post(
        service,
        [
            native("outcome", "1001", days_ago=3, outcome="renewed", arr=48000.5),
            native("outcome", "1002", days_ago=2, outcome="churned"),
        ],
        headers,
    )
    assert response.status_code == 202
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        held = await outcomes.known_outcomes(session, connection="default")
    assert [(o.account.crm_id, o.outcome, o.arr) for o in held] == [
        ("1001", "renewed", 48000.5),
        ("1002", "churned", None),
    ]


async def test_an_outcome_arr_out_of_bounds_is_422_naming_the_field(service):
    headers = await bearer(service, role="ingest")
    response = await post(
        service,
        [
            native("outcome", "1", outcome="renewed", arr=-1),
            native("outcome", "1", outcome="renewed", arr=1e14),
            native("outcome", "1", outcome="renewed", arr="lots"),
        ],
        headers,
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "events[0].arr: Input should be greater than or equal to 0" in detail
    assert "events[1].arr: Input should be less than or equal to" in detail
    assert "events[2].arr" in detail
    async with service.runtime.sessions() as session:
        assert (await session.execute(select(InboxEvent))).first() is None
