"""Segment-compatible ingestion end to end: HTTP in, inbox, worker, facts; product accounts
mapped to CRM accounts now or later."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from testkit import crm_accounts, native, store_native
from webhooks.store import product
from webhooks.store.models import (
    Account,
    CollaborationFact,
    InboxEvent,
    ProductGroup,
    SurveyFact,
    UsageMonth,
)

WRITE_KEY = "sk-test-write-key-1"


def basic(key: str = WRITE_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(user: str, *, group: str | None = None, event: str = "Report Viewed", **extra):
    message = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "event": event,
        "timestamp": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        **extra,
    }
    if group is not None:
        message["context"] = {"groupId": group}
    return message


def group(user: str, group_id: str, **traits):
    return {
        "type": "group",
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "groupId": group_id,
        "traits": {"name": f"Product {group_id}", **traits},
        "timestamp": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
    }


# The CRM accounts the calls here are mapped to: known, as product events never create one.
CRM_ACCOUNTS = ["1001", "4242", "99", "303", "new", "old", "808", "5150"]


@pytest.fixture
async def segment(service_factory):
    """A service taking Segment calls for the default connection (no CRM writer: no calls)."""
    service = await service_factory(segment_write_key=WRITE_KEY, hubspot_access_token=None)
    await crm_accounts(service.runtime, CRM_ACCOUNTS)
    return service


async def send(service, calls, *, headers=None):
    return await service.client.post(
        "/ingest/segment/v1/batch",
        content=json.dumps({"batch": calls}),
        headers=basic() if headers is None else headers,
    )


async def drain(service) -> None:
    """Run the worker until the inbox is quiet."""
    for _ in range(10):
        if not await service.runtime.pipeline.run_once():
            return
    raise AssertionError("the worker never ran out of work")


async def usage_users(service, crm_id: str) -> set[str]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(
            select(UsageMonth.user).join(Account).where(Account.crm_id == crm_id)
        )
        return set(rows.scalars())


async def statuses(service) -> dict[str, str]:
    """The status of each call (the stored requests they were split from left out)."""
    async with service.runtime.sessions() as session:
        rows = await session.execute(
            select(InboxEvent.dedup_key, InboxEvent.status).where(
                InboxEvent.kind.not_like("request:%")
            )
        )
        return {str(key): str(status) for key, status in rows}


async def test_tracks_of_a_mapped_group_become_usage_of_its_crm_account(segment):
    response = await send(
        segment,
        [group("u1", "g1", crm_id="1001"), track("u1", group="g1"), track("u2", group="g1")],
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "received": 3, "stored": 3, "duplicates": 0}
    assert response.json()["success"] is True
    await drain(segment)
    assert await usage_users(segment, "1001") == {"u1", "u2"}


async def test_one_pass_splits_a_request_and_processes_its_calls_with_the_batch(segment):
    await store_native(segment.runtime, [native("usage", "1001", user="n1")])
    await send(segment, [group("u1", "g1", crm_id="1001"), track("u1", group="g1")])
    report = await segment.runtime.pipeline.process_inbox()
    # The native event, the request and its two calls; account 1001 scored once for all.
    assert (report.claimed, report.processed, report.rescored) == (4, 4, 1)
    assert await usage_users(segment, "1001") == {"n1", "u1"}
    assert set((await statuses(segment)).values()) == {"done"}


async def test_a_request_sent_again_byte_for_byte_is_stored_once(segment):
    calls = [group("u1", "g1", crm_id="1001"), track("u1", group="g1")]
    await send(segment, calls)
    again = await send(segment, calls)
    assert again.json()["stored"] == 0
    assert again.json()["duplicates"] == 2


async def test_a_split_request_drops_its_body_and_a_resend_is_still_a_duplicate(segment):
    calls = [group("u1", "g1", crm_id="1001"), track("u1", group="g1")]
    await send(segment, calls)
    await drain(segment)
    async with segment.runtime.sessions() as session:
        requests = (
            await session.execute(
                select(InboxEvent.status, InboxEvent.body).where(InboxEvent.kind.like("request:%"))
            )
        ).all()
    # Its calls are rows of their own now: the request keeps only its dedup key.
    assert [tuple(row) for row in requests] == [("done", None)]
    again = await send(segment, calls)
    assert again.json()["duplicates"] == 2
    await drain(segment)
    assert await usage_users(segment, "1001") == {"u1"}


async def test_calls_redelivered_in_another_batch_count_once(segment):
    first = [group("u1", "g1", crm_id="1001"), track("u1", group="g1")]
    await send(segment, first)
    await send(segment, [*first, track("u2", group="g1")])  # a retry with one more call
    await drain(segment)
    async with segment.runtime.sessions() as session:
        calls = (
            await session.execute(select(InboxEvent.kind).where(InboxEvent.kind == "track"))
        ).all()
    assert len(calls) == 2
    assert await usage_users(segment, "1001") == {"u1", "u2"}


async def test_collaboration_events_land_in_collaboration_facts(segment):
    await send(
        segment,
        [group("u1", "g1", crm_id="1001"), track("u1", group="g1", event="Beta Joined")],
    )
    await drain(segment)
    async with segment.runtime.sessions() as session:
        kinds = (await session.execute(select(CollaborationFact.kind))).scalars().all()
    assert kinds == ["beta"]
    assert await usage_users(segment, "1001") == {"u1"}


async def test_survey_answers_land_in_survey_responses_and_a_bad_one_in_the_dead_letters(
    segment,
):
    answers = [
        track(who, group="g1", event="Survey Responded",
              properties={"score": score, "comment": "fine", "plan": "enterprise"})
        for who, score in (("u1", 9), ("u2", 10), ("u3", 4))
    ]  # fmt: skip
    broken = track("u4", group="g1", event="Survey Responded", properties={"score": 12})
    await send(segment, [group("u1", "g1", crm_id="1001"), *answers, broken])
    await drain(segment)
    async with segment.runtime.sessions() as session:
        held = (
            await session.execute(
                select(SurveyFact.respondent, SurveyFact.kind, SurveyFact.score).order_by(
                    SurveyFact.respondent
                )
            )
        ).all()
        dead = (
            (
                await session.execute(
                    select(InboxEvent.last_error).where(InboxEvent.status == "dead")
                )
            )
            .scalars()
            .all()
        )
        account = (
            await session.execute(select(Account).where(Account.crm_id == "1001"))
        ).scalar_one()
    assert [tuple(row) for row in held] == [
        ("u1", "nps", 9.0),
        ("u2", "nps", 10.0),
        ("u3", "nps", 4.0),
    ]
    assert len(dead) == 1
    assert "properties.score: a nps score from 0 to 10 is required (got 12)" in dead[0]
    # Answering a survey is not using the product.
    assert await usage_users(segment, "1001") == set()
    assert "mutual_value.nps" in account.coverage["indicators"]


async def test_events_wait_for_a_late_group_mapping_then_count(segment):
    early = [track("u1", group="g7"), track("u2", group="g7")]
    await send(segment, early)
    await drain(segment)
    assert set((await statuses(segment)).values()) == {"unmatched"}
    async with segment.runtime.sessions() as session:
        [waiting], total = await product.list_unmatched(session, connection="default", limit=10)
    assert (total, waiting.key, waiting.events) == (1, "group:g7", 2)
    assert "crm_id" in (waiting.reason or "")

    # The group call without the trait does not map it yet; with the trait it does.
    await send(segment, [group("u1", "g7")])
    await drain(segment)
    assert await usage_users(segment, "4242") == set()
    await send(segment, [group("u1", "g7", crm_id="4242")])
    await drain(segment)  # the group call releases the waiting tracks, then they count
    assert await usage_users(segment, "4242") == {"u1", "u2"}
    assert "unmatched" not in set((await statuses(segment)).values())


async def test_a_track_without_group_uses_the_group_the_user_joined(segment):
    await send(segment, [track("u9")])
    await drain(segment)
    async with segment.runtime.sessions() as session:
        [waiting], _ = await product.list_unmatched(session, connection="default", limit=10)
    assert waiting.key == "user:u9"
    await send(segment, [group("u9", "g9", crm_id="99")])
    await drain(segment)
    await drain(segment)
    assert await usage_users(segment, "99") == {"u9"}


async def test_group_call_and_track_in_one_batch_match_in_any_order(segment):
    await send(segment, [track("u1", group="g3"), group("u1", "g3", crm_id="303")])
    await drain(segment)
    assert await usage_users(segment, "303") == {"u1"}


async def test_an_older_group_call_does_not_undo_a_newer_mapping(segment):
    newer = group("u1", "g4", crm_id="new")
    older = {**group("u1", "g4", crm_id="old"), "timestamp": "2020-01-01T00:00:00Z"}
    await send(segment, [newer])
    await drain(segment)
    await send(segment, [older])
    await drain(segment)
    async with segment.runtime.sessions() as session:
        row = (await session.execute(select(ProductGroup))).scalar_one()
    assert (row.match_value, row.crm_id) == ("new", "new")


async def test_domain_matching_waits_for_the_crm_account_to_have_the_domain(service_factory):
    service = await service_factory(
        segment_write_key=WRITE_KEY,
        hubspot_access_token=None,
        segment_account_match="domain",
        segment_account_trait="website",
    )
    await send(service, [group("u1", "g5", website="https://www.initech.example/"), track("u1")])
    await drain(service)
    assert "unmatched" in set((await statuses(service)).values())
    # The CRM account arrives with its domain (here as a native account event).
    await store_native(
        service.runtime,
        [native("account", "777", attributes={"name": "Initech", "domain": "initech.example"})],
    )
    await drain(service)
    await drain(service)
    assert await usage_users(service, "777") == {"u1"}


async def test_group_id_matching_needs_no_group_call(service_factory):
    service = await service_factory(
        segment_write_key=WRITE_KEY, hubspot_access_token=None, segment_account_match="group_id"
    )
    await crm_accounts(service.runtime, CRM_ACCOUNTS)
    await send(service, [track("u1", group="5150")])
    await drain(service)
    assert await usage_users(service, "5150") == {"u1"}


async def test_a_mapping_saved_by_another_worker_releases_parked_events(segment):
    await send(segment, [track("u1", group="g8")])
    await drain(segment)
    now = datetime.now(UTC)
    async with segment.runtime.sessions() as session, session.begin():
        session.add(
            ProductGroup(
                connection="default",
                group_id="g8",
                crm_id="808",
                updated_at=now,
                first_seen_at=now,
            )
        )
    async with segment.runtime.sessions() as session, session.begin():
        assert await product.release_resolvable(session, now=now) == 1
    await drain(segment)
    assert await usage_users(segment, "808") == {"u1"}


async def test_segment_and_crm_events_of_one_account_land_in_the_same_facts(segment):
    await store_native(segment.runtime, [native("usage", "1001", user="from-csv")])
    await send(segment, [group("u1", "g1", crm_id="1001"), track("u1", group="g1")])
    await drain(segment)
    assert await usage_users(segment, "1001") == {"from-csv", "u1"}
    async with segment.runtime.sessions() as session:
        rows = await session.execute(select(Account.crm_id, UsageMonth.user).join(UsageMonth))
    assert {crm_id for crm_id, _ in rows} == {"1001"}


# --- the HTTP contract -----------------------------------------------------------------------


async def test_single_track_call_is_accepted(segment):
    response = await segment.client.post(
        "/ingest/segment/v1/track",
        json={"userId": "019mr8mf4r", "event": "Item Purchased", "context": {"groupId": "g"}},
        headers=basic(),
    )
    assert response.status_code == 200
    assert response.json()["success"] is True


async def test_write_key_in_the_body_is_accepted(segment):
    response = await segment.client.post(
        "/ingest/segment/v1/batch", json={"batch": [track("u1")], "writeKey": WRITE_KEY}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("batch", {"batch": [track("u1", group="g1")], "writeKey": WRITE_KEY}, {}),
        # A call carrying the key itself (some libraries copy it into each call).
        ("batch", {"batch": [{**track("u1", group="g1"), "writeKey": WRITE_KEY}]}, basic()),
        ("track", {**track("u1", group="g1"), "writeKey": WRITE_KEY}, {}),
        # Libraries that put it in the context, of the batch or of a call.
        (
            "batch",
            {"batch": [track("u1", group="g1")], "context": {"writeKey": WRITE_KEY}},
            basic(),
        ),
        (
            "batch",
            {"batch": [{**track("u1", group="g1"), "context": {"writeKey": WRITE_KEY}}]},
            basic(),
        ),
        (
            "batch",
            {
                "batch": [
                    track("u0", group="g1"),
                    {
                        **track("u1", group="g1"),
                        "writeKey": WRITE_KEY,
                        "context": {"writeKey": WRITE_KEY, "ip": "192.0.2.1"},
                    },
                ],
                "context": {"writeKey": WRITE_KEY, "library": {"name": "analytics-node"}},
                "writeKey": WRITE_KEY,
            },
            {},
        ),
        ("track", {**track("u1", group="g1"), "context": {"writeKey": WRITE_KEY}}, basic()),
    ],
)
async def test_a_write_key_in_the_body_is_never_stored(segment, path, body, headers):
    """The inbox (and so its backups) keeps the request without the secret; the calls in it
    are processed as usual, and a resend of the same bytes is still recognised."""
    for _ in range(2):
        response = await segment.client.post(
            f"/ingest/segment/v1/{path}", json=body, headers=headers
        )
        assert response.status_code == 200
        async with segment.runtime.sessions() as session:
            stored = list((await session.execute(select(InboxEvent.body))).scalars())
        assert len([text for text in stored if text is not None]) == 1
        assert not any(WRITE_KEY in (text or "") for text in stored)
    await drain(segment)
    assert set((await statuses(segment)).values()) <= {"done", "unmatched"}
    assert await statuses(segment)
    async with segment.runtime.sessions() as session:
        rows = (await session.execute(select(InboxEvent.body, InboxEvent.payload))).all()
    assert not any(WRITE_KEY in (text or "") + json.dumps(payload) for text, payload in rows)


@pytest.mark.parametrize(
    "headers",
    [{}, basic("wrong-key"), {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"}],
)
async def test_missing_or_wrong_write_key_is_401(segment, headers):
    response = await send(segment, [track("u1")], headers=headers)
    assert response.status_code == 401
    assert "write key" in response.json()["detail"] or "Basic" in response.json()["detail"]
    assert await statuses(segment) == {}


async def test_without_a_configured_write_key_segment_calls_are_503(service):
    response = await send(service, [track("u1")])
    assert response.status_code == 503
    assert "CRM_HEALTH_SEGMENT_WRITE_KEY" in response.json()["detail"]


async def test_a_call_with_a_bad_timestamp_is_dead_lettered_with_the_reason(segment):
    calls = [track("u1", group="g1"), {**track("u2", group="g1"), "timestamp": "yesterday"}]
    await send(segment, [group("u1", "g1", crm_id="1001"), *calls])
    await drain(segment)
    async with segment.runtime.sessions() as session:
        dead = (
            (
                await session.execute(
                    select(InboxEvent.last_error).where(InboxEvent.status == "dead")
                )
            )
            .scalars()
            .all()
        )
    assert len(dead) == 1
    assert "batch[2].timestamp" in dead[0]
    assert await usage_users(segment, "1001") == {"u1"}


async def test_invalid_call_in_a_batch_is_400_naming_it_and_nothing_is_stored(segment):
    response = await send(segment, [track("u1"), {"type": "track", "userId": "u2"}])
    assert response.status_code == 400
    assert response.json()["detail"].startswith("batch[1].event")
    assert await statuses(segment) == {}


async def test_batch_over_500_kb_is_413(segment):
    calls = [track("u1", properties={"blob": "x" * 20_000}) for _ in range(27)]
    response = await send(segment, calls)
    assert response.status_code == 413


async def test_unknown_call_is_404(segment):
    response = await segment.client.post("/ingest/segment/v1/purchase", json={}, headers=basic())
    assert response.status_code == 404
    assert "batch" in response.json()["detail"]
