"""Config preview and backtest over HTTP: what a candidate configuration would change on today's
facts (without writing anything), and how well a configuration's at_risk band foresaw known
churn and renewals; custom indicators from the preview to the account they score.

Scoring here weighs only recency: with `recency(at_risk)` an account's score is 100 minus
100/at_risk points per day since its last use, so usage sent N days ago sets any score.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from signals.config import HealthConfig
from testkit import Checkouts, hubspot_event, native, post_hubspot, store_native
from webhooks import preview
from webhooks.preview import Pacer
from webhooks.store import configs, facts, keys
from webhooks.store.models import (
    Account,
    Alert,
    AlertDelivery,
    ConfigVersion,
    HealthSnapshot,
    RecomputeJob,
    WritebackItem,
)
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

NO_CRM = {"hubspot_access_token": None}
ADMIN_TOKEN = "preview-test-admin-token"
AT_RISK_RULE = {"name": "entered-at-risk", "when": "band_entered", "band": "at_risk"}


def recency(at_risk: float, **changes: Any) -> dict[str, Any]:
    def off(low: float, high: float) -> dict[str, float]:
        return {"at_risk": low, "healthy": high, "weight": 0}

    return {
        "signals": {
            "active_use": {
                "weight": 1,
                "indicators": {
                    "seat_utilization": off(0.4, 0.7),
                    "usage_trend": off(-0.25, 0),
                    "stickiness": off(0.05, 0.2),
                    "recency_days": {"at_risk": at_risk, "healthy": 0, "weight": 1},
                    "usage_depth": off(5, 25),
                    "depth_trend": off(-0.3, 0),
                    "key_feature_adoption": off(0.2, 0.5),
                },
            },
            "collaboration": {"weight": 0},
            "mutual_value": {"weight": 0},
            "momentum": {"weight": 0},
        },
        "alerts": [AT_RISK_RULE],
        **changes,
    }


async def bearer(service: Any, role: str, connection: str = "default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


async def apply(service: Any, document: dict[str, Any]) -> None:
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(document),
            author="test",
            comment="preview test",
            now=datetime.now(UTC),
        )


async def run_worker(service: Any, events: list[dict[str, object]]) -> None:
    await store_native(service.runtime, events)
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(),
    )
    while await pipeline.run_once():
        pass


def named(account: str) -> dict[str, object]:
    return native("account", account, attributes={"name": f"Account {account}"})


# Last use N days ago; with recency(100) the score is 100 - N.
LAST_USE = {"a": 10, "b": 35, "c": 50, "d": 80, "e": 25}


async def scored_world(service_factory: Any, **settings: object) -> Any:
    """Five accounts scored under recency(100) (a 90, b 65, c 50, d 20, e 75) and one without
    usage (f, unknown); d's at-risk alert is open."""
    service = await service_factory(**NO_CRM, **settings)
    await apply(service, recency(100))
    events = [named(account) for account in [*LAST_USE, "f"]]
    events += [native("usage", a, days_ago=days, user="u1") for a, days in LAST_USE.items()]
    await run_worker(service, events)
    return service


async def row_counts(service: Any) -> dict[str, int]:
    counted = (
        HealthSnapshot, WritebackItem, Alert, AlertDelivery, ConfigVersion, RecomputeJob,
    )  # fmt: skip
    async with service.runtime.sessions() as session:
        counts = {
            model.__tablename__: (
                await session.execute(select(func.count()).select_from(model))
            ).scalar_one()
            for model in counted
        }
        health = (
            await session.execute(
                select(Account.crm_id, Account.score, Account.band).order_by(Account.crm_id)
            )
        ).all()
    return {**counts, **{f"account {c}": hash((s, b)) for c, s, b in health}}


# --- preview ------------------------------------------------------------------------------------


async def test_stricter_candidate_moves_accounts_to_at_risk_and_lists_them(
    service_factory,
) -> None:
    service = await scored_world(service_factory)
    viewer = await bearer(service, "viewer")
    before = await row_counts(service)

    # Recency at risk from 60 days: c 50 -> 17 (at risk), e 75 -> 58 (neutral).
    response = await service.client.post(
        "/api/v1/config/preview", json={"config": recency(60)}, headers=viewer
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accounts"] == 6
    assert body["bands"] == {
        "before": {"healthy": 2, "neutral": 2, "at_risk": 1, "unknown": 1, "onboarding": 0},
        "after": {"healthy": 1, "neutral": 2, "at_risk": 2, "unknown": 1, "onboarding": 0},
    }
    for counts in body["bands"].values():
        assert sum(counts.values()) == body["accounts"]
    assert body["changed"]["total"] == 2
    assert [
        (item["id"], item["name"], item["old_score"], item["old_band"], item["new_score"],
         item["new_band"], item["change"])
        for item in body["changed"]["items"]
    ] == [
        ("c", "Account c", 50, "neutral", 17, "at_risk", -33),
        ("e", "Account e", 75, "healthy", 58, "neutral", -17),
    ]  # fmt: skip
    assert body["diff_paths"] == ["signals.active_use.indicators.recency_days.at_risk"]
    assert body["current_version"] != body["candidate_version"]
    # Nothing stored, written back, alerted or versioned; the accounts keep their health.
    assert await row_counts(service) == before


async def test_preview_lists_only_the_alerts_that_would_newly_fire(service_factory) -> None:
    service = await scored_world(service_factory)
    admin = await bearer(service, "admin")
    async with service.runtime.sessions() as session:
        open_now = (await session.execute(select(Alert.rule, Alert.status))).all()
    assert open_now == [("entered-at-risk", "open")]  # d's

    response = await service.client.post(
        "/api/v1/config/preview", json={"config": recency(60)}, headers=admin
    )

    alerts = response.json()["alerts"]
    assert alerts["total"] == 1
    [alert] = alerts["items"]
    assert (alert["rule"], alert["key"], alert["account"], alert["title"]) == (
        "entered-at-risk",
        "at_risk",
        {"id": "c", "name": "Account c"},
        "Account c is at risk",
    )
    assert alert["reason"] == "band neutral -> at risk, score 50 -> 17"
    assert (alert["score"], alert["band"]) == (17, "at_risk")


async def test_preview_caps_the_lists_and_keeps_the_totals(service_factory) -> None:
    service = await scored_world(service_factory)
    candidate = recency(60, alerts=[AT_RISK_RULE, {"name": "neutral", "when": "band_entered",
                                                   "band": "neutral"}])  # fmt: skip

    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": candidate, "limit": 1},
        headers=await bearer(service, "viewer"),
    )

    body = response.json()
    assert [item["id"] for item in body["changed"]["items"]] == ["c"]  # the largest change
    assert (body["changed"]["total"], body["changed"]["limit"]) == (2, 1)
    # c at risk; b and e neutral (the new rule): three, one shown.
    assert (body["alerts"]["total"], len(body["alerts"]["items"])) == (3, 1)


async def test_preview_counts_each_rules_alerts_and_names_their_first_accounts(
    service_factory,
) -> None:
    service = await scored_world(service_factory)
    neutral = {"name": "neutral", "when": "band_entered", "band": "neutral"}
    silent = {"name": "silent", "when": "score_drop", "points": 90, "enabled": False}
    candidate = recency(60, alerts=[AT_RISK_RULE, neutral, silent])

    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": candidate, "rule_accounts": 1},
        headers=await bearer(service, "viewer"),
    )

    assert response.status_code == 200, response.text
    rules = response.json()["alerts"]["rules"]
    # In the candidate's order, a rule that raises nothing included; b and e enter neutral,
    # only the first (in account order) is named.
    assert rules == [
        {"rule": "entered-at-risk", "when": "band_entered", "enabled": True, "total": 1,
         "accounts_total": 1, "accounts": [{"id": "c", "name": "Account c"}]},
        {"rule": "neutral", "when": "band_entered", "enabled": True, "total": 2,
         "accounts_total": 2, "accounts": [{"id": "b", "name": "Account b"}]},
        {"rule": "silent", "when": "score_drop", "enabled": False, "total": 0,
         "accounts_total": 0, "accounts": []},
    ]  # fmt: skip
    assert sum(rule["total"] for rule in rules) == response.json()["alerts"]["total"]


async def test_per_rule_totals_keep_counting_past_the_alert_list_limit(service_factory) -> None:
    service = await scored_world(service_factory)
    neutral = {"name": "neutral", "when": "band_entered", "band": "neutral"}

    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": recency(60, alerts=[neutral]), "limit": 1, "rule_accounts": 5},
        headers=await bearer(service, "viewer"),
    )

    alerts = response.json()["alerts"]
    assert len(alerts["items"]) == 1
    [rule] = alerts["rules"]
    assert (rule["total"], rule["accounts_total"]) == (2, 2)
    assert [account["id"] for account in rule["accounts"]] == ["b", "e"]


@pytest.mark.parametrize("rule_accounts", [-1, 101, "ten"])
async def test_rule_accounts_out_of_range_is_refused_naming_it(
    service_factory, rule_accounts
) -> None:
    service = await scored_world(service_factory)

    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": recency(60), "rule_accounts": rule_accounts},
        headers=await bearer(service, "viewer"),
    )

    assert response.status_code == 422
    assert "rule_accounts" in response.text


async def test_same_config_changes_nothing(service_factory) -> None:
    service = await scored_world(service_factory)

    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": recency(100)},
        headers=await bearer(service, "viewer"),
    )

    body = response.json()
    assert body["bands"]["before"] == body["bands"]["after"]
    assert body["changed"] == {"items": [], "total": 0, "limit": 100}
    assert body["alerts"]["total"] == 0
    assert body["diff_paths"] == []


async def test_invalid_candidate_is_refused_naming_every_field(service_factory) -> None:
    service = await scored_world(service_factory)
    candidate = recency(60, bands={"healthy_min": 200, "at_risk_below": "low"}, colour="red")
    candidate["signals"]["momentum"]["weight"] = -1
    before = await row_counts(service)

    response = await service.client.post(
        "/api/v1/config/preview", json={"config": candidate}, headers=await bearer(service, "admin")
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    for path in (
        "config.bands.healthy_min",
        "config.bands.at_risk_below",
        "config.signals.momentum.weight",
        "config.colour",
    ):
        assert path in detail
    assert await row_counts(service) == before


async def test_preview_needs_a_key_with_admin_or_viewer_role(service_factory) -> None:
    service = await service_factory(**NO_CRM)
    url = "/api/v1/config/preview"
    body: dict[str, object] = {"config": {}}

    assert (await service.client.post(url, json=body)).status_code == 401
    wrong = {"Authorization": "Bearer not-a-key"}
    assert (await service.client.post(url, json=body, headers=wrong)).status_code == 401
    ingest = await bearer(service, "ingest")
    assert (await service.client.post(url, json=body, headers=ingest)).status_code == 403
    backtest = await service.client.post("/api/v1/config/backtest", json={}, headers=ingest)
    assert backtest.status_code == 403


async def test_a_key_previews_only_its_own_connection(service_factory) -> None:
    service = await scored_world(service_factory)

    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": recency(60)},
        headers=await bearer(service, "viewer", connection="other"),
    )

    assert response.status_code == 200
    assert response.json()["accounts"] == 0


async def test_preview_reads_the_accounts_chunk_by_chunk(service_factory, monkeypatch) -> None:
    service = await scored_world(service_factory)
    viewer = await bearer(service, "viewer")
    whole = await service.client.post(
        "/api/v1/config/preview", json={"config": recency(60)}, headers=viewer
    )
    monkeypatch.setattr(preview, "CHUNK", 2)

    chunked = await service.client.post(
        "/api/v1/config/preview", json={"config": recency(60)}, headers=viewer
    )

    assert chunked.status_code == 200
    for field in ("accounts", "bands", "changed", "alerts"):
        assert chunked.json()[field] == whole.json()[field]


# --- beside intake ------------------------------------------------------------------------------


class Gate:
    """Holds previews and backtests in their first fact read, once it has run (a read
    connection in use), until `open()`; `entered` counts those that got there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = 0
        self.arrived = asyncio.Event()
        self._open = asyncio.Event()
        read_facts = facts.read_facts

        async def held(session: Any, **kwargs: Any) -> Any:
            found = await read_facts(session, **kwargs)
            self.entered += 1
            self.arrived.set()
            await self._open.wait()
            return found

        monkeypatch.setattr(facts, "read_facts", held)

    def open(self) -> None:
        self._open.set()


def preview_request(service: Any, headers: dict[str, str]) -> asyncio.Task[Any]:
    return asyncio.create_task(
        service.client.post("/api/v1/config/preview", json={"config": recency(60)}, headers=headers)
    )


async def test_a_webhook_is_acknowledged_while_a_preview_is_reading(
    service_factory, monkeypatch
) -> None:
    service = await scored_world(service_factory)
    gate = Gate(monkeypatch)
    running = preview_request(service, await bearer(service, "viewer"))
    await asyncio.wait_for(gate.arrived.wait(), timeout=10)

    # Before the read connections, the preview held SQLite's only connection: this waited for
    # the pool's 60 s and failed.
    acked = await asyncio.wait_for(post_hubspot(service.client, [hubspot_event(1)]), timeout=10)

    assert acked.status_code == 202, acked.text
    gate.open()
    assert (await running).status_code == 200


async def test_preview_and_backtest_read_only_through_the_read_engine(service_factory) -> None:
    service = await scored_world(service_factory, admin_token=ADMIN_TOKEN)
    main, reads = Checkouts(service.runtime.engine), Checkouts(service.runtime.read_engine)
    # The bootstrap token is checked without the database: the requests need nothing else.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    previewed = await service.client.post(
        "/api/v1/config/preview", json={"config": recency(60)}, headers=admin
    )
    assert previewed.status_code == 200, previewed.text
    assert previewed.json()["accounts"] == 6
    assert (main.count, reads.count > 0) == (0, True)

    read_before = reads.count
    await backtested(service, admin)
    assert reads.count > read_before
    # The main engine only keeps the job: queued, started, its progress and its result.
    assert main.count <= 6


async def test_previews_beyond_the_limit_wait_for_a_turn(service_factory, monkeypatch) -> None:
    service = await scored_world(service_factory, preview_concurrency=1)
    viewer = await bearer(service, "viewer")
    gate = Gate(monkeypatch)
    first = preview_request(service, viewer)
    await asyncio.wait_for(gate.arrived.wait(), timeout=10)

    second = preview_request(service, viewer)
    await asyncio.sleep(0.3)
    assert gate.entered == 1  # the second waits for its turn, not in a read

    gate.open()
    assert [(await first).status_code, (await second).status_code] == [200, 200]
    assert gate.entered == 2


async def test_backtest_jobs_run_one_at_a_time_and_report_their_progress(
    service_factory, monkeypatch
) -> None:
    service = await outcome_world(service_factory)
    viewer = await bearer(service, "viewer")
    gate = Gate(monkeypatch)
    first = await service.client.post("/api/v1/config/backtest", json={}, headers=viewer)
    await asyncio.wait_for(gate.arrived.wait(), timeout=10)
    second = await service.client.post("/api/v1/config/backtest", json={}, headers=viewer)

    running = (await service.client.get(first.json()["links"]["self"], headers=viewer)).json()
    waiting = (await service.client.get(second.json()["links"]["self"], headers=viewer)).json()
    assert (running["status"], waiting["status"]) == ("running", "queued")
    assert gate.entered == 1  # the second waits its turn, not in a read
    gate.open()

    await service.runtime.jobs.wait()
    for started in (first, second):
        job = (await service.client.get(started.json()["links"]["self"], headers=viewer)).json()
        assert (job["status"], job["done"], job["total"]) == ("done", 15, 15)


async def test_the_pacer_hands_the_loop_back_once_its_slice_has_passed() -> None:
    ran = 0

    async def other() -> None:
        nonlocal ran
        ran += 1

    task = asyncio.create_task(other())
    await Pacer(slice_seconds=3600).tick()
    assert ran == 0
    await Pacer(slice_seconds=0).tick()
    assert ran == 1
    await task


# --- backtest -----------------------------------------------------------------------------------

LEGACY = ("days", "churned", "renewed", "flagged_churned", "flagged_renewed", "unscored",
          "precision", "recall")  # fmt: skip


async def backtested(service: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """Start a backtest job, let it run, and fetch its result as the API gives it."""
    started = await service.client.post("/api/v1/config/backtest", json=body, headers=headers)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] == "queued"
    await service.runtime.jobs.wait()
    fetched = await service.client.get(job["links"]["self"], headers=headers)
    assert fetched.status_code == 200, fetched.text
    done = fetched.json()
    assert done["status"] == "done", done["error"]
    assert done["done"] == done["total"]
    result: dict[str, Any] = done["result"]
    return result


def legacy(horizons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The counts and ratios the backtest has always answered, of each horizon."""
    return [{key: horizon[key] for key in LEGACY} for horizon in horizons]


def used(account: str, *days_ago: float) -> list[dict[str, object]]:
    return [native("usage", account, days_ago=days, user="u1") for days in days_ago]


def ended(account: str, outcome: str) -> dict[str, object]:
    return native("outcome", account, days_ago=5, outcome=outcome)


async def outcome_world(service_factory: Any) -> Any:
    """Outcomes 5 days ago; scored at 30, 60 and 90 days before them (35, 65, 95 days ago)
    under recency(14), at risk after about 8.4 days without use:

    churn1  used 100 days ago only: flagged at 30 and 60 days before
    churn2  used 100, 68, 50 days ago: flagged at 30 days before only
    late    churned, used only 7 days ago: no facts yet at any horizon (unscored)
    renew1  used every 3 days: never flagged
    renew2  used 100 and 10 days ago: flagged at 30 and 60 days before (a false alarm; its
            later use must not count at those times)
    """
    service = await service_factory(**NO_CRM)
    await apply(service, recency(14))
    events = [named(a) for a in ("churn1", "churn2", "late", "renew1", "renew2", "other")]
    events += used("churn1", 100) + used("churn2", 100, 68, 50) + used("late", 7)
    events += used("renew1", *range(5, 101, 3)) + used("renew2", 100, 10) + used("other", 1)
    events += [ended("churn1", "churned"), ended("churn2", "churned"), ended("late", "churned")]
    events += [ended("renew1", "renewed"), ended("renew2", "renewed")]
    await run_worker(service, events)
    return service


EXPECTED = [
    {"days": 30, "churned": 3, "renewed": 2, "flagged_churned": 2, "flagged_renewed": 1,
     "unscored": 1, "precision": 0.6667, "recall": 0.6667},
    {"days": 60, "churned": 3, "renewed": 2, "flagged_churned": 1, "flagged_renewed": 1,
     "unscored": 1, "precision": 0.5, "recall": 0.3333},
    {"days": 90, "churned": 3, "renewed": 2, "flagged_churned": 0, "flagged_renewed": 0,
     "unscored": 1, "precision": None, "recall": 0.0},
]  # fmt: skip


async def test_backtest_reports_precision_and_recall_per_horizon(service_factory) -> None:
    service = await outcome_world(service_factory)
    before = await row_counts(service)

    body = await backtested(
        service,
        await bearer(service, "viewer"),
        config=recency(14),
        horizons=[90, 30, 60],
    )

    assert (body["outcomes"], body["accounts"]) == (5, 5)
    assert legacy(body["horizons"]) == EXPECTED
    assert "precision" in body["method"]
    # At 30 days churn1, churn2 and renew2 all score 0 (no use for over 14 days), renew1 above
    # them: of the four churned/renewed pairs renew1 wins two, renew2 ties two: 3/4.
    assert body["horizons"][0]["auc"] == 0.75
    assert body["horizons"][0]["before_record"] == 1
    assert await row_counts(service) == before


async def test_backtest_without_a_config_uses_the_current_one(service_factory) -> None:
    service = await outcome_world(service_factory)

    body = await backtested(service, await bearer(service, "admin"), config=None)

    assert body["config_version"] == HealthConfig.model_validate(recency(14)).version
    assert legacy(body["horizons"]) == EXPECTED


async def test_backtest_without_outcomes_has_no_ratios(service_factory) -> None:
    service = await scored_world(service_factory)

    body = await backtested(service, await bearer(service, "viewer"), horizons=[30])

    assert legacy(body["horizons"]) == [
        {"days": 30, "churned": 0, "renewed": 0, "flagged_churned": 0, "flagged_renewed": 0,
         "unscored": 0, "precision": None, "recall": None},
    ]  # fmt: skip
    assert body["horizons"][0]["auc"] is None


async def test_a_job_is_its_connections_alone(service_factory) -> None:
    service = await outcome_world(service_factory)
    started = await service.client.post(
        "/api/v1/config/backtest", json={}, headers=await bearer(service, "viewer")
    )
    await service.runtime.jobs.wait()
    other = await bearer(service, "viewer", connection="elsewhere")

    response = await service.client.get(started.json()["links"]["self"], headers=other)

    assert response.status_code == 404
    assert response.json()["detail"] == f"no job {started.json()['id']}"


@pytest.mark.parametrize("horizons", [[0], [366], [], [30, -1]])
async def test_backtest_horizons_must_be_1_to_365_days(service_factory, horizons) -> None:
    service = await service_factory(**NO_CRM)

    response = await service.client.post(
        "/api/v1/config/backtest",
        json={"horizons": horizons},
        headers=await bearer(service, "viewer"),
    )

    assert response.status_code == 422
    assert "horizons" in response.text


async def test_backtest_refuses_an_invalid_config(service_factory) -> None:
    service = await service_factory(**NO_CRM)

    response = await service.client.post(
        "/api/v1/config/backtest",
        json={"config": {"bands": {"hysteresis": 80}}},
        headers=await bearer(service, "viewer"),
    )

    assert response.status_code == 422
    assert "config.bands.hysteresis" in response.json()["detail"]


async def test_historical_facts_end_at_as_of(service_factory) -> None:
    service = await service_factory(**NO_CRM)
    events: list[dict[str, object]] = [named("h")]
    for days, label in ((40, "old"), (10, "new")):
        events += [
            native("usage", "h", days_ago=days, user=f"u-{label}"),
            native("interaction", "h", days_ago=days, channel="call", direction="customer",
                   contact=f"c-{label}"),
            native("collaboration", "h", days_ago=days, kind="feedback"),
            native("ticket", "h", days_ago=days, ticket=f"t-{label}", priority="urgent"),
        ]  # fmt: skip
    await run_worker(service, events)
    as_of = datetime.now(UTC) - timedelta(days=20)

    async with service.runtime.sessions() as session:
        [account] = (await session.execute(select(Account))).scalars()
        then = await facts.read_facts(session, accounts=[account], as_of=as_of, historical=True)
        open_ended = await facts.read_facts(session, accounts=[account], as_of=as_of)

    past = then[account.id]
    assert (past.active_users_30d, past.total_interactions_90d) == (1, 1)
    assert (past.collaboration_events_180d, past.tickets_90d, past.escalations_90d) == (1, 1, 1)
    assert past.last_usage_at is not None
    assert 19 <= (as_of - past.last_usage_at).days <= 20
    # The worker's read (as_of now) leaves the windows open: later facts count.
    later = open_ended[account.id]
    assert (later.total_interactions_90d, later.tickets_90d) == (2, 2)


def on(day: str, event_type: str, **fields: object) -> dict[str, object]:
    return {"type": event_type, "account": "R1", "at": f"2026-{day}T12:00:00+00:00", **fields}


async def test_a_backtest_leaves_cases_before_the_accounts_first_record_unscored(
    service_factory,
) -> None:
    """Issue 20's repro on an empty database: R1 appears on 11-01 (10 seats), three users on
    11-01, 11-05 and 11-10, churned on 11-20. 30 and 60 days before, R1 did not exist yet."""
    service = await service_factory(**NO_CRM)
    events = [on("11-01", "account", attributes={"name": "R1", "seats": 10})]
    events += [on(day, "usage", user=user) for day, user in (("11-01", "u1"), ("11-05", "u2"))]
    events += [on("11-10", "usage", user="u3"), on("11-20", "outcome", outcome="churned")]
    await run_worker(service, events)

    # Any evidence gives a verdict here (bands.min_coverage 0): 5 days before, R1 is scored on
    # its usage alone, so only the first record decides what is left unscored.
    body = await backtested(
        service,
        await bearer(service, "viewer"),
        horizons=[5, 30, 60],
        config={"bands": {"min_coverage": 0}},
    )

    by_days = {h["days"]: h for h in body["horizons"]}
    assert (by_days[5]["churned"], by_days[5]["unscored"]) == (1, 0)
    for days in (30, 60):
        assert (by_days[days]["flagged_churned"], by_days[days]["unscored"]) == (0, 1)
        assert (by_days[days]["precision"], by_days[days]["recall"]) == (None, 0.0)


async def test_a_backtest_reads_attributes_as_they_stood_then(service) -> None:
    """Seats recorded on 11-10 were not known on 11-05: a read as of 11-05 has none, where
    today's value would have made the seat utilisation look poor before it was set."""
    events = [on("11-01", "account", attributes={"name": "R1", "segment": "smb"})]
    events += [on("11-10", "account", attributes={"seats": 10, "segment": "enterprise"})]
    await run_worker(service, events)
    async with service.runtime.sessions() as session:
        [account] = (await session.execute(select(Account))).scalars().all()
        as_of = datetime(2026, 11, 5, 23, 59, tzinfo=UTC)
        then = (await facts.read_facts(session, accounts=[account], as_of=as_of, historical=True))[
            account.id
        ]
        first = await facts.first_records(session, accounts=[account])
    assert then.seats is None
    assert "segment" not in then.attributes  # its value dates from 11-10
    assert then.attributes["name"] == "R1"
    assert first[account.id] == datetime(2026, 11, 1, 12, tzinfo=UTC)


# --- custom indicators: previewed, refused naming the field, applied and shown ------------------

EXPORTERS: dict[str, Any] = {
    "name": "exporters",
    "label": "People exporting reports (30d)",
    "signal": "active_use",
    "source": {"kind": "product_events", "features": ["Report Exported"], "aggregation": "users"},
    "at_risk": 0,
    "healthy": 2,
}


def with_exporters(**indicator: Any) -> dict[str, Any]:
    return recency(100, custom_indicators=[{**EXPORTERS, **indicator}])


async def world(service_factory: Any) -> Any:
    """a: two people export reports; b: one person uses the product, never exporting, for 40
    days (so its zero exports are evidence). Both used it a day ago (recency(100): 99 each)."""
    service = await service_factory(**NO_CRM)
    await apply(service, recency(100))
    events = [named("a"), named("b")]
    events += [native("usage", "a", days_ago=1, user=u, feature="Report Exported") for u in "xy"]
    events += [
        native("usage", "b", days_ago=days, user="z", feature="Dashboard Viewed")
        for days in (40, 1)
    ]
    await run_worker(service, events)
    return service


async def test_a_preview_shows_what_a_custom_indicator_would_change(service_factory) -> None:
    service = await world(service_factory)
    before = await row_counts(service)
    response = await service.client.post(
        "/api/v1/config/preview",
        json={"config": with_exporters()},
        headers=await bearer(service, "viewer"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # b: recency (a little under 99) and no exporter (0) weigh the same: 49, neutral.
    assert [(i["id"], i["old_score"], i["new_score"]) for i in body["changed"]["items"]] == [
        ("b", 99, 49)
    ]
    assert body["diff_paths"] == ["custom_indicators.0"]
    assert await row_counts(service) == before


async def test_a_bad_custom_indicator_is_refused_naming_its_field(service_factory) -> None:
    service = await world(service_factory)
    for indicator, path in (
        ({"signal": "happiness"}, "custom_indicators.0.signal"),
        ({"source": {**EXPORTERS["source"], "aggregation": "sum"}},
         "custom_indicators.0.source.aggregation"),
        ({"healthy": 0}, "custom_indicators.0"),
    ):  # fmt: skip
        response = await service.client.post(
            "/api/v1/config/preview",
            json={"config": with_exporters(**indicator)},
            headers=await bearer(service, "admin"),
        )
        assert response.status_code == 422, indicator
        assert path in response.json()["detail"], response.json()


async def test_an_applied_custom_indicator_is_scored_and_shown_with_its_label(
    service_factory,
) -> None:
    service = await world(service_factory)
    await apply(service, with_exporters())
    await run_worker(service, [])
    viewer = await bearer(service, "viewer")
    b = (await service.client.get("/api/v1/accounts/b", headers=viewer)).json()
    assert b["score"] == 49
    assert b["drivers"] == [
        "People exporting reports (30d) 0 (at-risk <= 0)",
        "Days since last use 1 (healthy <= 0)",
    ]
    assert {i["name"]: i["raw"] for i in b["indicators"]["active_use"]} == {
        "recency_days": b["indicators"]["active_use"][0]["raw"],
        "exporters": 0.0,
    }
    a = (await service.client.get("/api/v1/accounts/a", headers=viewer)).json()
    assert a["score"] == 99
    assert "active_use.exporters" in a["coverage"]["indicators"]


async def test_a_custom_signal_is_scored_and_listed(service_factory) -> None:
    service = await world(service_factory)
    document = with_exporters(signal="adoption")
    document["custom_signals"] = [{"name": "adoption", "label": "Adoption", "weight": 1}]
    await apply(service, document)
    await run_worker(service, [])
    viewer = await bearer(service, "viewer")
    listed = (await service.client.get("/api/v1/accounts", headers=viewer)).json()["items"]
    assert {item["id"]: item["custom_signals"] for item in listed} == {
        "a": {"adoption": 100.0},
        "b": {"adoption": 0.0},
    }
    b = (await service.client.get("/api/v1/accounts/b", headers=viewer)).json()
    assert [i["name"] for i in b["indicators"]["adoption"]] == ["exporters"]
    assert b["custom_signal_labels"] == {"adoption": "Adoption"}
    assert b["score"] == 49  # active use (recency) 99 and adoption 0, weighing 1 each
