"""The CSM's voice over HTTP, on SQLite and PostgreSQL: set and cleared through the admin API
(checked against the configuration, audited), scored by the worker, shown on the account, and
over when it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from signals.config import HealthConfig
from testkit import RECENCY_ONLY, native, store_native
from webhooks.inbox_kinds import ADMIN_SOURCE, SENTIMENT_KIND
from webhooks.store import configs, inbox, keys
from webhooks.store.models import Alert, InboxEvent, SentimentFact
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions


def with_sentiment(**sentiment: Any) -> dict[str, Any]:
    """Recency only (used a day ago: 99), and the sentiment as asked."""
    return {**RECENCY_ONLY, "sentiment": {"signal": "active_use", **sentiment}}


async def bearer(service: Any, role: str, name: str) -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=name, role=role, connection="default", now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def world(service_factory: Any, **sentiment: Any) -> tuple[Any, Pipeline, Clock]:
    service = await service_factory(hubspot_access_token=None)
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(with_sentiment(**sentiment)),
            author="test",
            comment="recency and the CSM",
            now=datetime.now(UTC) - timedelta(days=1),
        )
    clock = Clock()
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(rescore_interval_hours=24),
        clock=clock,
    )
    await store_native(
        service.runtime,
        [
            native("account", "acme", days_ago=100, attributes={"name": "Acme"}),
            native("usage", "acme", days_ago=1, user="u1"),
        ],
    )
    await run(pipeline, clock)
    return service, pipeline, clock


async def run(pipeline: Pipeline, clock: Clock) -> None:
    clock.now = max(clock.now, datetime.now(UTC))  # what the API stored is due
    while await pipeline.run_once():
        pass


async def detail(service: Any, headers: dict[str, str]) -> dict[str, Any]:
    response = await service.client.get("/api/v1/accounts/acme", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_csm_sets_a_sentiment_that_scores_speaks_and_is_audited(service_factory) -> None:
    service, pipeline, clock = await world(service_factory)
    kim = await bearer(service, "admin", "A. Kim")
    assert (await detail(service, kim))["score"] == 99

    response = await service.client.put(
        "/api/v1/accounts/acme/sentiment",
        json={"rating": "red", "reason": "Champion Left", "note": "<b>Jo</b> moved on", "days": 45},
        headers=kim,
    )
    assert response.status_code == 202, response.text
    queued = response.json()
    assert (queued["rating"], queued["reason"], queued["author"]) == (
        "red",
        "champion left",
        "A. Kim",
    )
    until = datetime.fromisoformat(queued["until"])
    assert timedelta(days=44) < until - datetime.now(UTC) <= timedelta(days=45)

    await run(pipeline, clock)
    body = await detail(service, kim)
    assert (
        body["drivers"][0] == f"CSM: red, champion left (A. Kim, until {until.date().isoformat()})"
    )
    # Recency (a little under 99) and the sentiment 0, weighing the same.
    assert body["score"] == 49
    assert [i["name"] for i in body["indicators"]["active_use"]] == [
        "recency_days",
        "csm_sentiment",
    ]
    assert body["sentiment"]["rating"] == "red"
    assert body["sentiment"]["note"] == "<b>Jo</b> moved on"  # stored as said; shown as text

    cleared = await service.client.delete("/api/v1/accounts/acme/sentiment", headers=kim)
    assert cleared.status_code == 202
    assert cleared.json()["rating"] is None
    await run(pipeline, clock)
    body = await detail(service, kim)
    assert body["sentiment"] is None
    assert body["score"] == 99
    assert [(row["rating"], row["author"]) for row in body["sentiment_history"]] == [
        (None, "A. Kim"), ("red", "A. Kim"),
    ]  # fmt: skip


async def test_bad_sentiments_are_refused_naming_the_field(service_factory) -> None:
    service, _, _ = await world(service_factory)
    kim = await bearer(service, "admin", "A. Kim")
    cases = [
        ({"rating": "purple", "reason": "other"}, 422, "rating"),
        ({"rating": "red", "reason": "bad vibes"}, 422, "reason: 'bad vibes' is not one of"),
        ({"rating": "red", "reason": "other", "days": 0}, 422, "days"),
        ({"rating": "red", "reason": "other", "note": "x" * 1001}, 422, "note"),
        ({"rating": "red", "reason": "other", "colour": "red"}, 422, "colour"),
    ]
    for body, status, named in cases:
        response = await service.client.put(
            "/api/v1/accounts/acme/sentiment", json=body, headers=kim
        )
        assert response.status_code == status, body
        assert named in response.text, response.text
    missing = await service.client.put(
        "/api/v1/accounts/nope/sentiment", json={"rating": "red", "reason": "other"}, headers=kim
    )
    assert missing.status_code == 404
    viewer = await bearer(service, "viewer", "victor")
    refused = await service.client.put(
        "/api/v1/accounts/acme/sentiment", json={"rating": "red", "reason": "other"}, headers=viewer
    )
    assert refused.status_code == 403
    async with service.runtime.sessions() as session:
        assert list(await session.scalars(select(SentimentFact))) == []


async def test_an_override_sets_the_band_and_its_alert_tells(service_factory) -> None:
    service, pipeline, clock = await world(service_factory, mode="override")
    kim = await bearer(service, "admin", "A. Kim")
    await service.client.put(
        "/api/v1/accounts/acme/sentiment",
        json={"rating": "red", "reason": "budget cut"},
        headers=kim,
    )
    await run(pipeline, clock)
    body = await detail(service, kim)
    assert (body["score"], body["band"]) == (99, "at_risk")
    async with service.runtime.sessions() as session:
        alert = await session.scalar(select(Alert).where(Alert.rule == "entered-at-risk"))
    assert alert is not None
    assert alert.cause == "live"


async def test_a_sentiment_ends_and_the_computed_health_returns(service_factory) -> None:
    service, pipeline, clock = await world(service_factory, mode="cap")
    kim = await bearer(service, "admin", "A. Kim")
    await service.client.put(
        "/api/v1/accounts/acme/sentiment",
        json={"rating": "amber", "reason": "reorganisation", "days": 2},
        headers=kim,
    )
    await run(pipeline, clock)
    assert (await detail(service, kim))["band"] == "neutral"
    # Nothing happens to the account; the daily rescores find the sentiment ended.
    for _ in range(3):
        clock.now += timedelta(days=1)
        await run(pipeline, clock)
    # The worker's rescores ran days ahead of the wall clock the detail reads its facts by:
    # the stored health is what they found.
    body = await detail(service, kim)
    assert (body["score"], body["band"]) == (96, "healthy")  # 4 days since the last use
    assert not any(driver.startswith("CSM:") for driver in body["drivers"])


async def test_its_author_is_reminded_a_week_before_it_ends(service_factory) -> None:
    service, pipeline, clock = await world(service_factory)
    kim = await bearer(service, "admin", "A. Kim")
    await service.client.put(
        "/api/v1/accounts/acme/sentiment",
        json={"rating": "amber", "reason": "reorganisation", "days": 20},
        headers=kim,
    )
    await run(pipeline, clock)

    async def reminders() -> list[Alert]:
        async with service.runtime.sessions() as session:
            return list(
                await session.scalars(select(Alert).where(Alert.rule == "sentiment-ending"))
            )

    assert await reminders() == []
    # Thirteen days on, the daily rescore finds it ending within a week.
    for _ in range(14):
        clock.now += timedelta(days=1)
        await run(pipeline, clock)
    [reminder] = await reminders()
    assert reminder.severity == "low"
    assert reminder.cause == "live"
    assert "amber (reorganisation) set by A. Kim ends on" in reminder.reason


async def test_an_unreadable_sentiment_among_thousands_is_dead_lettered_alone(
    service_factory,
) -> None:
    service, pipeline, clock = await world(service_factory)
    now = datetime.now(UTC)
    usage = [native("usage", "acme", days_ago=n / 1000, user=f"u{n % 40}") for n in range(2000)]
    await store_native(service.runtime, usage)
    async with service.runtime.sessions() as session, session.begin():
        # As an older version, or a hand edit, might have left it: a rating nobody knows.
        await inbox.insert_events(
            session,
            source=ADMIN_SOURCE,
            connection="default",
            events=[
                inbox.NewEvent(
                    dedup_key="sentiment-bad",
                    kind=SENTIMENT_KIND,
                    payload={
                        "account": "acme",
                        "at": now.isoformat(),
                        "rating": "purple",
                        "author": "x",
                    },
                )
            ],
            received_at=now,
        )
    await run(pipeline, clock)
    async with service.runtime.sessions() as session:
        statuses = await inbox.count_by_status(session)
        dead = await session.scalar(select(InboxEvent).where(InboxEvent.status == "dead"))
    assert statuses.get("dead") == 1
    assert statuses.get("pending", 0) == 0
    assert dead is not None
    assert "rating" in (dead.last_error or "")
    body = await detail(service, await bearer(service, "viewer", "victor"))
    assert body["sentiment"] is None
    assert body["indicators"]["active_use"][0]["raw"] < 0.01  # the usage all landed
