"""Alerts through the worker: native events rescore accounts, rules raise and resolve alerts,
the outbox delivers them to (fake) channels with retries, digests and failure isolation.

The scoring configuration here weighs only recency, from 0 (100 days since the last use) to
100 (used today): an account's score is 100 minus the days since its last use, so moving
the worker's clock and sending usage sets any score exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from signals.config import HealthConfig
from testkit import RECENCY_ONLY, make_settings, store_native
from webhooks.alerts import manage
from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.config import ChannelsFileError
from webhooks.alerts.notice import AlertNotice, ChannelError, Digest
from webhooks.cli import cli
from webhooks.configuration import check_configuration
from webhooks.inbox_kinds import BACKFILL_SOURCE
from webhooks.store import configs, keys
from webhooks.store.models import Alert, AlertDelivery, AlertReason
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

NO_CRM = {"hubspot_access_token": None}


def at_risk_rule(**changes: object) -> dict[str, object]:
    return {"name": "entered-at-risk", "when": "band_entered", "channels": ["ops"], **changes}


@dataclass
class FakeChannel:
    name: str
    digest: Digest = "none"
    kind: str = "fake"
    daily_limit: int | None = None
    # Raised by the next sends, in order; then sends succeed (unless `always` is set).
    failures: list[Exception] = field(default_factory=list)
    always: Exception | None = None
    sent: list[list[AlertNotice]] = field(default_factory=list)
    tries: int = 0

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        self.tries += 1
        if self.always is not None:
            raise self.always
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(list(notices))

    async def aclose(self) -> None:
        return None

    @property
    def notices(self) -> list[AlertNotice]:
        return [notice for message in self.sent for notice in message]


class World:
    """A service, a worker on a clock the test moves, and the accounts' last use."""

    def __init__(self, service: Any, channels: Sequence[FakeChannel], **options: Any) -> None:
        self.service = service
        # Ahead of the wall clock (events stored now are due), ten past an hour (digests).
        start = datetime.now(UTC) + timedelta(hours=1)
        self.now = start.replace(minute=10, second=0, microsecond=0)
        self.channels = {channel.name: channel for channel in channels}
        self.pipeline = self.worker(**options)
        self.last_use: dict[str, datetime] = {}

    def worker(self, channels: Sequence[FakeChannel] | None = None, **options: Any) -> Pipeline:
        chosen = self.channels if channels is None else {c.name: c for c in channels}
        return Pipeline(
            sessions=self.service.runtime.sessions,
            connections=self.service.runtime.connections,
            options=WorkerOptions(**options),
            clock=lambda: self.now,
            channels=chosen,
        )

    async def configure(self, *rules: dict[str, object], **changes: Any) -> None:
        config = HealthConfig.model_validate({**RECENCY_ONLY, "alerts": list(rules), **changes})
        async with self.service.runtime.sessions() as session, session.begin():
            await configs.save(
                session, config=config, author="test", comment="alerts", now=datetime.now(UTC)
            )
        await self.pipeline.recompute_step()  # finishes the (empty) recompute job

    def later(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    async def score(
        self,
        account: str,
        target: int,
        *,
        history: bool = False,
        source: str = "native",
        **attributes: str,
    ) -> None:
        """Rescore `account` at `target` (100 minus days since its last use). An account's first
        scoring tells nobody (first load), so a new account is declared, without use, first.
        Its record is sent again now (a live event), unless `history`: then only the use, long
        past, arrives (as a replay or an import of history would bring it)."""
        if account not in self.last_use:
            await self.declare(account, **attributes)
        # Never two rescores at one instant: the history is read as a step function of time.
        self.later(seconds=1)
        wanted = self.now - timedelta(days=100 - target)
        last = self.last_use.get(account)
        events: list[dict[str, object]] = []
        if last is None or wanted >= last:
            self.last_use[account] = wanted
            events.append(
                {"type": "usage", "account": account, "user": "u1", "at": wanted.isoformat()}
            )
        else:
            self.later(seconds=(last - wanted).total_seconds())
        if history:
            # A use older than the last one: the score is what time made it, the event old.
            events.append(
                {
                    "type": "usage",
                    "account": account,
                    "user": "u-old",
                    "at": (wanted - timedelta(days=10)).isoformat(),
                }
            )
        else:
            events.append(
                {
                    "type": "account",
                    "account": account,
                    "attributes": {"name": f"Account {account}", **attributes},
                    "at": self.now.isoformat(),
                }
            )
        await store_native(self.service.runtime, events, source=source)
        report = await self.pipeline.process_inbox()
        assert report.processed == len(events), report
        await self.pipeline.deliver_alerts()

    async def declare(self, account: str, **attributes: str) -> None:
        """The account's record arrives (its first scoring: no use yet, so no band)."""
        self.later(seconds=1)
        event: dict[str, object] = {
            "type": "account",
            "account": account,
            "attributes": {"name": f"Account {account}", **attributes},
            "at": self.now.isoformat(),
        }
        await store_native(self.service.runtime, [event])
        report = await self.pipeline.process_inbox()
        assert report.processed == 1, report

    async def alerts(self) -> list[Alert]:
        async with self.service.runtime.sessions() as session:
            return list((await session.execute(select(Alert).order_by(Alert.id))).scalars())

    async def reasons(self, alert_id: int) -> list[AlertReason]:
        async with self.service.runtime.sessions() as session:
            query = select(AlertReason).where(AlertReason.alert_id == alert_id)
            return list((await session.execute(query.order_by(AlertReason.id))).scalars())

    async def deliveries(self) -> list[AlertDelivery]:
        async with self.service.runtime.sessions() as session:
            query = select(AlertDelivery).order_by(AlertDelivery.id)
            return list((await session.execute(query)).scalars())


async def world(service_factory: Any, *channels: FakeChannel, **options: Any) -> World:
    service = await service_factory(**NO_CRM)
    return World(service, channels or [FakeChannel("ops")], **options)


# --- raising and resolving ----------------------------------------------------------------------


async def test_entering_at_risk_raises_one_alert_and_tells_the_channel_once(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    await w.score("7", 80)
    assert await w.alerts() == []
    await w.score("7", 35)
    [alert] = await w.alerts()
    assert (alert.rule, alert.key, alert.status, alert.score, alert.band) == (
        "entered-at-risk",
        "at_risk",
        "open",
        35,
        "at_risk",
    )
    assert (alert.previous_score, alert.previous_band) == (80, "healthy")
    assert alert.title == "Account 7 is at risk"
    [notice] = w.channels["ops"].notices
    assert (notice.kind, notice.record_id, notice.account_name, notice.score) == (
        "fired",
        "7",
        "Account 7",
        35,
    )
    assert notice.reason == "band healthy -> at risk, score 80 -> 35"

    await w.score("7", 30)  # still at risk: nothing new
    assert len(await w.alerts()) == 1
    assert len(w.channels["ops"].sent) == 1
    [delivery] = await w.deliveries()
    assert (delivery.status, delivery.kind, delivery.attempts) == ("sent", "fired", 0)
    assert delivery.sent_at is not None


async def test_leaving_the_band_resolves_the_alert(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    await w.score("7", 35)
    await w.score("7", 60)
    [alert] = await w.alerts()
    assert (alert.status, alert.resolved_at) == ("resolved", w.now)
    assert len(w.channels["ops"].sent) == 1, "no recovered notice unless the rule asks"


async def test_coming_back_within_the_cooldown_reopens_the_alert_silently(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(cooldown_days=7, notify_recovered=True))
    await w.score("7", 35)
    await w.score("7", 45)  # recovered: one "recovered" notice
    await w.score("7", 39)  # six days later: at risk again, within the cooldown
    [alert] = await w.alerts()
    assert (alert.status, alert.resolved_at, alert.notified) == ("open", None, False)
    assert [n.kind for n in w.channels["ops"].notices] == ["fired", "recovered"]
    await w.score("7", 50)  # and recovered again: nobody was told it came back
    assert [n.kind for n in w.channels["ops"].notices] == ["fired", "recovered"]
    assert len(await w.deliveries()) == 2


async def test_coming_back_after_the_cooldown_raises_a_new_alert(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(cooldown_days=2))
    await w.score("7", 35)
    await w.score("7", 45)
    await w.score("7", 39)  # six days after it was resolved
    first, second = await w.alerts()
    assert (first.status, second.status, second.notified) == ("resolved", "open", True)
    assert [d.alert_id for d in await w.deliveries()] == [first.id, second.id]
    assert len(w.channels["ops"].sent) == 2


async def test_a_score_wobbling_within_the_hysteresis_keeps_the_alert(service_factory) -> None:
    # At risk below 40; leaving the band needs 40 + 3 (the default hysteresis).
    w = await world(service_factory)
    await w.configure(at_risk_rule(cooldown_days=0))
    await w.score("7", 38)
    for wobble in (41, 39, 42, 38, 41):
        await w.score("7", wobble)
    [alert] = await w.alerts()
    assert alert.status == "open"
    assert len(w.channels["ops"].sent) == 1
    await w.score("7", 43)
    [alert] = await w.alerts()
    assert alert.status == "resolved"


async def test_a_score_drop_within_the_window_raises_an_alert(service_factory) -> None:
    w = await world(service_factory)
    await w.configure({"name": "score-drop", "when": "score_drop", "points": 15, "days": 30})
    await w.score("7", 100)
    await w.score("7", 90)  # ten points in ten days: not enough
    assert await w.alerts() == []
    await w.score("7", 69)  # 31 days after the first score of 100
    [alert] = await w.alerts()
    assert (alert.rule, alert.key, alert.band) == ("score-drop", "drop-30d", "neutral")
    assert "from 100 to 69 within 30 days" in alert.reason


async def test_each_score_drop_rule_reads_its_own_window(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(
        {"name": "week-drop", "when": "score_drop", "points": 15, "days": 7},
        {"name": "month-drop", "when": "score_drop", "points": 35, "days": 30},
    )
    await w.score("7", 100)
    await w.score("7", 90)  # day 10
    await w.score("7", 80)  # day 20: a week before, it was 90 (day 10)
    assert await w.alerts() == []
    await w.score("7", 60)  # day 40: a week before, 80 (day 20); a month before, 90
    [week] = await w.alerts()
    assert (week.rule, week.key) == ("week-drop", "drop-7d")
    assert "from 80 to 60 within 7 days" in week.reason
    await w.score("7", 55)  # day 45: a month before, still 90 (day 10)
    # One episode of the account, with both reasons.
    [episode] = await w.alerts()
    assert (episode.rule, episode.status) == ("week-drop", "open")
    assert [(r.rule, r.resolved_at) for r in await w.reasons(episode.id)] == [
        ("week-drop", None),
        ("month-drop", None),
    ]


async def test_an_indicator_at_its_at_risk_threshold_raises_an_alert(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(
        {
            "name": "gone-quiet",
            "when": "indicator_at_risk",
            "indicator": "active_use.recency_days",
            "channels": ["ops"],
        }
    )
    await w.score("7", 20)
    assert await w.alerts() == []
    await w.score("7", 0)
    [alert] = await w.alerts()
    assert (alert.key, alert.title) == (
        "active_use.recency_days",
        "Account 7: recency days at risk",
    )


GONE_QUIET: dict[str, object] = {
    "name": "gone-quiet",
    "when": "indicator_at_risk",
    "indicator": "active_use.recency_days",
    "channels": ["ops"],
}


async def test_an_indicator_never_fine_raises_nothing_lost_means_lost(service_factory) -> None:
    """Issue 21: "executive access lost" fired on accounts that never had an executive. An
    indicator at risk from its first scoring on, and through later rescores, was never lost."""
    w = await world(service_factory)
    await w.configure(GONE_QUIET)
    await w.score("7", 0)
    await w.score("7", 0)
    assert await w.alerts() == []
    # Once it has been fine, losing it again is a loss.
    await w.score("7", 30)
    await w.score("7", 0)
    [alert] = await w.alerts()
    assert alert.key == "active_use.recency_days"


async def test_a_state_trigger_raises_while_the_indicator_is_at_risk(service_factory) -> None:
    w = await world(service_factory)
    await w.configure({**GONE_QUIET, "trigger": "state"})
    await w.score("7", 0)
    [alert] = await w.alerts()
    assert alert.status == "open"


async def test_an_open_loss_stays_open_while_it_lasts_and_resolves_after(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(GONE_QUIET)
    await w.score("7", 40)
    await w.score("7", 0)
    await w.score("7", 0)  # still lost: the alert stays, nothing new
    [alert] = await w.alerts()
    assert alert.status == "open"
    await w.score("7", 50)
    [alert] = await w.alerts()
    assert alert.status == "resolved"
    assert [n.rule for n in w.channels["ops"].notices] == ["gone-quiet"]


async def test_a_threshold_change_is_no_loss(service_factory) -> None:
    """An indicator the new thresholds put at risk was not lost by the customer: a
    configuration change rebases the comparison like it rebases hysteresis."""
    w = await world(service_factory)
    await w.configure(GONE_QUIET)
    await w.score("7", 60)  # 40 days since the last use: fine under recency 100..0
    stricter = RECENCY_ONLY["signals"]["active_use"]["indicators"]["recency_days"]
    await w.configure(
        GONE_QUIET,
        signals={
            **RECENCY_ONLY["signals"],
            "active_use": {
                **RECENCY_ONLY["signals"]["active_use"],
                "indicators": {
                    **RECENCY_ONLY["signals"]["active_use"]["indicators"],
                    "recency_days": {**stricter, "at_risk": 30},
                },
            },
        },
    )
    await w.score("7", 60)
    assert await w.alerts() == []


def test_a_state_trigger_is_only_for_indicator_rules() -> None:
    with pytest.raises(ValueError, match="trigger: state is only for indicator_at_risk rules"):
        HealthConfig.model_validate(
            {"alerts": [{"name": "x", "when": "band_entered", "trigger": "state"}]}
        )


async def test_an_account_without_data_raises_no_indicator_alert(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(
        {"name": "gone-quiet", "when": "indicator_at_risk", "indicator": "active_use.recency_days"}
    )
    await store_native(
        w.service.runtime, [{"type": "account", "account": "8", "attributes": {"name": "New"}}]
    )
    await w.pipeline.process_inbox()
    assert await w.alerts() == []


async def test_a_near_renewal_of_an_unhealthy_account_raises_an_alert(service_factory) -> None:
    w = await world(service_factory)
    await w.configure({"name": "renewal", "when": "renewal_near", "days": 60, "channels": ["ops"]})
    renewal = (w.now + timedelta(days=45)).date().isoformat()
    await w.score("7", 90, renewal_date=renewal)
    assert await w.alerts() == [], "healthy accounts renew fine"
    await w.score("7", 55)
    [alert] = await w.alerts()
    assert alert.key == f"renewal-{renewal}"
    assert "renews in" in alert.title


async def test_a_renewal_date_in_epoch_milliseconds_is_understood(service_factory) -> None:
    w = await world(service_factory)
    await w.configure({"name": "renewal", "when": "renewal_near", "days": 60})
    day = (w.now + timedelta(days=10)).replace(hour=0, minute=0, second=0)
    await w.score("7", 50, renewal_date=str(int(day.timestamp() * 1000)))
    [alert] = await w.alerts()
    assert alert.key == f"renewal-{day.date().isoformat()}"


async def test_rules_limited_to_a_segment_skip_other_accounts(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(segments=["enterprise"]))
    await w.score("7", 30, segment="smb")
    await w.score("8", 30, segment="enterprise")
    [alert] = await w.alerts()
    assert alert.title == "Account 8 is at risk"


async def test_a_config_change_records_alerts_while_recomputing_and_tells_nobody(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    await w.score("7", 50)
    assert await w.alerts() == []
    await w.configure(at_risk_rule(), bands={"at_risk_below": 60, "healthy_min": 80})
    await w.pipeline.deliver_alerts()
    [alert] = await w.alerts()
    assert (alert.band, alert.score, alert.previous_band) == ("at_risk", 50, "neutral")
    assert (alert.cause, alert.notified) == ("configuration", False)
    assert await w.deliveries() == []
    assert w.channels["ops"].sent == []
    # Rolled back: the recorded alert ends, and still nobody hears of either.
    await w.configure(at_risk_rule())
    await w.pipeline.deliver_alerts()
    [alert] = await w.alerts()
    assert alert.status == "resolved"
    assert await w.deliveries() == []


# --- one episode per account --------------------------------------------------------------------


def week_drop_rule(**changes: object) -> dict[str, object]:
    return {
        "name": "week-drop",
        "when": "score_drop",
        "points": 15,
        "days": 7,
        "channels": ["ops"],
        **changes,
    }


async def test_conditions_at_once_are_one_alert_titled_by_the_most_severe(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(week_drop_rule(), at_risk_rule())
    await w.score("7", 80)
    await w.score("7", 30)  # 50 points in 50 days... and 20 of them within the week
    [alert] = await w.alerts()
    assert (alert.rule, alert.severity, alert.title) == (
        "entered-at-risk",
        "high",
        "Account 7 is at risk",
    )
    assert sorted(r.rule for r in await w.reasons(alert.id)) == ["entered-at-risk", "week-drop"]
    [notice] = w.channels["ops"].notices
    assert notice.kind == "fired"
    assert "health fell" in " ".join(notice.also)


async def test_a_more_severe_reason_updates_the_alert_and_tells_people_again(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(week_drop_rule(), at_risk_rule())
    await w.score("7", 100)
    await w.score("7", 90)  # day 10
    await w.score("7", 80)  # day 20
    await w.score("7", 60)  # day 40: 80 -> 60 within a week: a drop, still neutral
    [alert] = await w.alerts()
    assert (alert.rule, alert.severity) == ("week-drop", "medium")
    await w.score("7", 35)  # day 65: at risk, and fallen again within the week
    [alert] = await w.alerts()
    assert (alert.rule, alert.severity, alert.title) == (
        "entered-at-risk",
        "high",
        "Account 7 is at risk",
    )
    assert [n.kind for n in w.channels["ops"].notices] == ["fired", "escalated"]
    escalated = w.channels["ops"].notices[1]
    assert escalated.title == "Account 7 is at risk"
    assert escalated.alert_id == alert.id


async def test_a_less_severe_reason_joins_the_alert_without_telling_anyone(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(week_drop_rule(), at_risk_rule())
    for score in (100, 90, 80, 70, 60, 50, 40):  # 10 points every 10 days: no drop
        await w.score("7", score)
    await w.score("7", 35)  # day 65: at risk
    [alert] = await w.alerts()
    assert alert.rule == "entered-at-risk"
    await w.score("7", 15)  # day 85: 20 more points within the week: a drop, less severe
    [alert] = await w.alerts()
    assert alert.rule == "entered-at-risk"
    assert sorted(r.rule for r in await w.reasons(alert.id)) == ["entered-at-risk", "week-drop"]
    assert [n.kind for n in w.channels["ops"].notices] == ["fired"]


async def test_the_alert_resolves_with_its_last_reason(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(week_drop_rule(), at_risk_rule(notify_recovered=True))
    await w.score("7", 80)
    await w.score("7", 30)  # at risk and a drop
    await w.score("7", 20)  # day 80: a week before it was 30: the drop ends, at risk holds
    [alert] = await w.alerts()
    reasons = {r.rule: r.resolved_at for r in await w.reasons(alert.id)}
    assert alert.status == "open"
    assert reasons["week-drop"] is not None
    assert reasons["entered-at-risk"] is None
    assert alert.rule == "entered-at-risk"
    await w.score("7", 60)  # neutral: the last reason ends
    [alert] = await w.alerts()
    assert (alert.status, alert.resolved_at) == ("resolved", w.now)
    assert all(r.resolved_at is not None for r in await w.reasons(alert.id))
    assert [n.kind for n in w.channels["ops"].notices] == ["fired", "recovered"]


# --- never from history -------------------------------------------------------------------------


async def test_events_older_than_the_age_limit_record_the_alert_and_tell_nobody(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    await w.score("7", 80)
    await w.score("7", 30, history=True)  # 50 days on, only a use 80 days old arrives
    [alert] = await w.alerts()
    assert (alert.status, alert.cause, alert.notified) == ("open", "history", False)
    assert await w.deliveries() == []
    assert w.channels["ops"].sent == []


async def test_a_backfill_records_the_alert_and_tells_nobody(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    await w.score("7", 80)
    # Read from the CRM by a backfill, however recent the records' own times.
    await w.score("7", 30, source=BACKFILL_SOURCE)
    [alert] = await w.alerts()
    assert (alert.status, alert.cause, alert.notified) == ("open", "backfill", False)
    assert await w.deliveries() == []
    # A live event later changes nothing for the open alert: still nobody is told of it.
    await w.score("7", 28)
    assert await w.deliveries() == []


async def test_the_age_limit_is_a_setting(service_factory) -> None:
    w = await world(service_factory, alert_max_event_age=timedelta(days=365))
    await w.configure(at_risk_rule())
    await w.score("7", 80)
    await w.score("7", 30, history=True)  # 80 days old, within a year: live
    [alert] = await w.alerts()
    assert alert.cause == "live"
    assert [n.kind for n in w.channels["ops"].notices] == ["fired"]


async def test_an_accounts_first_scoring_records_its_alert_and_tells_nobody(
    service_factory,
) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    w.last_use["7"] = w.now - timedelta(days=70)  # skip the harness's declaration
    await w.score("7", 30)
    [alert] = await w.alerts()
    assert (alert.cause, alert.notified) == ("first_load", False)
    assert await w.deliveries() == []


# --- delivery -----------------------------------------------------------------------------------


async def test_recovered_notices_are_sent_when_the_rule_asks(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(notify_recovered=True))
    await w.score("7", 30)
    await w.score("7", 60)
    fired, recovered = w.channels["ops"].notices
    assert (fired.kind, recovered.kind) == ("fired", "recovered")
    assert (recovered.alert_id, recovered.score, recovered.band) == (fired.alert_id, 60, "neutral")
    assert [(d.kind, d.status) for d in await w.deliveries()] == [
        ("fired", "sent"),
        ("recovered", "sent"),
    ]


async def test_a_digest_channel_sends_the_periods_alerts_in_one_message(service_factory) -> None:
    digest = FakeChannel("ops", digest="hourly")
    w = await world(service_factory, digest)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    await w.score("8", 20)
    assert digest.sent == [], "waits for the end of the hour"
    assert [d.status for d in await w.deliveries()] == ["pending", "pending"]
    hour_end = w.now.replace(minute=0, second=0) + timedelta(hours=1)
    w.now = hour_end
    assert await w.pipeline.deliver_alerts() == 2
    [message] = digest.sent
    assert sorted(n.record_id for n in message) == ["7", "8"]
    assert {d.status for d in await w.deliveries()} == {"sent"}


async def test_a_retryable_failure_is_retried_after_the_backoff(service_factory) -> None:
    flaky = FakeChannel("ops", failures=[ChannelError("503 from Slack", retryable=True)])
    w = await world(service_factory, flaky, retry_base_seconds=10)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    [delivery] = await w.deliveries()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error == "503 from Slack"
    assert delivery.available_at == w.now + timedelta(seconds=10)
    w.later(seconds=9)
    assert await w.pipeline.deliver_alerts() == 0, "not before the backoff"
    w.later(seconds=1)
    assert await w.pipeline.deliver_alerts() == 1
    [delivery] = await w.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, None)
    assert flaky.tries == 2
    assert len(flaky.sent) == 1


async def test_the_backoff_doubles_and_is_capped(service_factory) -> None:
    down = FakeChannel("ops", always=ChannelError("timeout", retryable=True))
    w = await world(service_factory, down, retry_base_seconds=10, retry_max_seconds=30)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    waits = []
    for _ in range(3):
        [delivery] = await w.deliveries()
        waits.append((delivery.available_at - w.now).total_seconds())
        w.now = delivery.available_at
        await w.pipeline.deliver_alerts()
    assert waits == [10, 20, 30]


async def test_one_failing_channel_does_not_stop_another(service_factory) -> None:
    broken = FakeChannel("broken", always=RuntimeError("bug in https://hooks.slack.test/T0/secret"))
    good = FakeChannel("good")
    w = await world(service_factory, broken, good)
    await w.configure(at_risk_rule(channels=["broken", "good"]))
    await w.score("7", 30)
    await w.score("8", 30)
    assert [n.record_id for n in good.notices] == ["7", "8"]
    failed = [d for d in await w.deliveries() if d.channel == "broken"]
    assert [(d.status, d.attempts) for d in failed] == [("pending", 1), ("pending", 1)]
    assert failed[0].last_error == "RuntimeError: bug in <url>", "no URL, no secret"


async def test_a_non_retryable_failure_fails_the_delivery_at_once(service_factory) -> None:
    w = await world(
        service_factory, FakeChannel("ops", always=ChannelError("400 invalid", retryable=False))
    )
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    [delivery] = await w.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed",
        1,
        "400 invalid",
    )


async def test_after_the_last_attempt_it_fails_and_retry_makes_it_pending(
    service_factory,
) -> None:
    down = FakeChannel("ops", always=ChannelError("503", retryable=True))
    w = await world(service_factory, down, max_attempts=2, retry_base_seconds=10)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    w.later(seconds=10)
    await w.pipeline.deliver_alerts()
    [delivery] = await w.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 2, "503")
    w.later(hours=5)
    assert await w.pipeline.deliver_alerts() == 0, "failed for good: no more tries"

    async with w.service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name="ops-admin", role="admin", connection="default", now=datetime.now(UTC)
        )
    response = await w.service.client.post(
        f"/api/v1/alerts/{delivery.alert_id}/retry", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    assert response.json() == {"retried": 1}
    [delivery] = await w.deliveries()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    down.always = None
    w.later(seconds=1)
    await w.pipeline.deliver_alerts()
    [delivery] = await w.deliveries()
    assert delivery.status == "sent"


async def test_a_rule_naming_an_unknown_channel_gets_a_failed_delivery(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(channels=["ops", "pager"]))
    await w.score("7", 30)
    ops, pager = await w.deliveries()
    assert ops.status == "sent"
    assert (pager.channel, pager.status) == ("pager", "failed")
    assert "'pager' is not configured" in (pager.last_error or "")


async def test_a_channel_removed_before_delivery_fails_it_with_the_reason(
    service_factory,
) -> None:
    w = await world(service_factory, FakeChannel("ops", digest="daily"))
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    w.pipeline = w.worker(channels=[])  # restarted without the channel
    w.later(days=1)
    await w.pipeline.deliver_alerts()
    [delivery] = await w.deliveries()
    assert delivery.status == "failed"
    assert "'ops' is not configured any more" in (delivery.last_error or "")


async def test_a_hubspot_notice_links_to_the_record_and_names_the_owner(service_factory) -> None:
    service = await service_factory(**NO_CRM, hubspot_portal_id=62515)
    w = World(service, [FakeChannel("ops")])
    await w.configure(at_risk_rule())
    await w.score("7", 30, owner="owner-42")
    [notice] = w.channels["ops"].notices
    assert notice.record_url == "https://app.hubspot.com/contacts/62515/record/0-2/7"
    assert (notice.owner_id, notice.connection, notice.crm) == ("owner-42", "default", "hubspot")


async def test_without_a_portal_id_a_notice_has_no_link(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    [notice] = w.channels["ops"].notices
    assert notice.record_url is None


# --- the daily limit of a channel and its overflow digest ----------------------------------------


def morning(w: World) -> datetime:
    """Move the worker's clock to 09:10 UTC of a day ahead, far from a midnight."""
    w.now = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=9, minute=10, second=0, microsecond=0
    )
    return w.now


def next_midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


async def test_over_the_daily_limit_the_rest_waits_for_the_midnight_overflow_digest(
    service_factory,
) -> None:
    ops = FakeChannel("ops", daily_limit=2)
    w = await world(service_factory, ops)
    await w.configure(at_risk_rule())
    start = morning(w)
    for account in ("1", "2", "3", "4", "5"):
        await w.score(account, 30)
    assert [len(message) for message in ops.sent] == [1, 1]
    held = [d for d in await w.deliveries() if d.overflow]
    assert len(held) == 3
    assert {(d.status, d.available_at) for d in held} == {("pending", next_midnight(start))}
    assert [a.notified for a in await w.alerts()] == [True, True, False, False, False]

    w.now = next_midnight(start) - timedelta(seconds=1)
    assert await w.pipeline.deliver_alerts() == 0, "held until midnight"
    w.now = next_midnight(start)
    assert await w.pipeline.deliver_alerts() == 3
    overflow = ops.sent[-1]
    assert sorted(notice.record_id for notice in overflow) == ["3", "4", "5"]
    assert {notice.over_daily_limit for notice in overflow} == {2}
    assert words.digest_title(overflow) == (
        "Customer health: 3 more alerts over the daily limit of 2"
    )
    assert {d.status for d in await w.deliveries()} == {"sent"}, "nothing dropped"
    assert all(a.notified for a in await w.alerts())


async def test_the_overflow_digest_counts_as_one_of_the_new_days_messages(
    service_factory,
) -> None:
    ops = FakeChannel("ops", daily_limit=2)
    w = await world(service_factory, ops)
    await w.configure(at_risk_rule())
    start = morning(w)
    for account in ("1", "2", "3"):
        await w.score(account, 30)
    w.now = next_midnight(start)
    await w.pipeline.deliver_alerts()  # the overflow digest: one message of the new day
    await w.score("4", 30)  # the second
    await w.score("5", 30)  # over the limit again
    assert [len(message) for message in ops.sent] == [1, 1, 1, 1]
    [held] = [d for d in await w.deliveries() if d.status == "pending"]
    assert held.overflow
    assert held.available_at == next_midnight(w.now)


async def test_a_digest_message_counts_as_one(service_factory) -> None:
    ops = FakeChannel("ops", digest="hourly", daily_limit=1)
    w = await world(service_factory, ops)
    await w.configure(at_risk_rule())
    start = morning(w)
    for account in ("1", "2", "3"):
        await w.score(account, 30)
    w.now = start.replace(minute=0) + timedelta(hours=1)
    await w.pipeline.deliver_alerts()
    assert [len(message) for message in ops.sent] == [3], "three notices, one message"
    await w.score("4", 30)
    w.now = w.now.replace(minute=0, second=0) + timedelta(hours=1)
    await w.pipeline.deliver_alerts()
    assert len(ops.sent) == 1, "the next hour's digest is over the limit"
    [held] = [d for d in await w.deliveries() if d.status == "pending"]
    assert (held.overflow, held.available_at) == (True, next_midnight(start))
    w.now = next_midnight(start)
    await w.pipeline.deliver_alerts()
    assert [n.record_id for n in ops.sent[-1]] == ["4"]


async def test_each_channel_has_its_own_daily_limit(service_factory) -> None:
    ops, pager = FakeChannel("ops", daily_limit=1), FakeChannel("pager", daily_limit=3)
    w = await world(service_factory, ops, pager)
    await w.configure(at_risk_rule(channels=["ops", "pager"]))
    morning(w)
    for account in ("1", "2", "3"):
        await w.score(account, 30)
    assert (len(ops.sent), len(pager.sent)) == (1, 3)
    held = [(d.channel, d.overflow) for d in await w.deliveries() if d.status == "pending"]
    assert held == [("ops", True), ("ops", True)]


async def test_a_channel_without_a_limit_sends_everything(service_factory) -> None:
    ops = FakeChannel("ops", daily_limit=None)
    w = await world(service_factory, ops)
    await w.configure(at_risk_rule())
    morning(w)
    for account in ("1", "2", "3"):
        await w.score(account, 30)
    assert len(ops.sent) == 3
    assert not any(d.overflow for d in await w.deliveries())


async def test_the_api_shows_a_delivery_held_for_the_overflow_digest(service_factory) -> None:
    w = await world(service_factory, FakeChannel("ops", daily_limit=1))
    await w.configure(at_risk_rule())
    start = morning(w)
    await w.score("1", 30)
    await w.score("2", 30)
    _, second = await w.alerts()
    item = await manage.get_alert(
        w.service.runtime.sessions, connection="default", alert_id=second.id, now=w.now
    )
    [delivery] = item.deliveries
    assert (delivery.status, delivery.overflow) == ("pending", True)
    assert delivery.available_at == next_midnight(start)
    assert item.notified is False


async def test_two_workers_together_send_no_more_than_the_limit(service_factory) -> None:
    """Both claim at once (one delivery each, per turn): the channel's row for the day makes
    the second wait for the first's count. Failed tries give their leave back."""
    ops = FakeChannel("ops", daily_limit=3, always=ChannelError("down", retryable=True))
    w = await world(service_factory, ops, retry_base_seconds=60)
    await w.configure(at_risk_rule())
    morning(w)
    for account in ("1", "2", "3", "4", "5", "6"):
        await w.score(account, 30)
    assert ops.sent == []
    assert {d.status for d in await w.deliveries()} == {"pending"}
    ops.always = None
    w.later(minutes=5)
    first, second = w.worker(batch_size=1), w.worker(batch_size=1)
    for _ in range(4):
        await asyncio.gather(first.deliver_alerts(), second.deliver_alerts())
    assert len(ops.sent) == 3
    deliveries = await w.deliveries()
    assert sorted((d.status, d.overflow) for d in deliveries) == [
        *[("pending", True)] * 3,
        *[("sent", False)] * 3,
    ]


# --- what `notified` means ----------------------------------------------------------------------


async def test_an_alert_whose_rule_names_no_channel_is_not_notified(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(channels=[]))
    await w.score("7", 30)
    [alert] = await w.alerts()
    assert alert.notified is False
    assert await w.deliveries() == []


async def test_an_alert_whose_delivery_failed_is_not_notified(service_factory) -> None:
    broken = FakeChannel("ops", always=ChannelError("404 from Slack", retryable=False))
    w = await world(service_factory, broken)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    [alert] = await w.alerts()
    [delivery] = await w.deliveries()
    assert (delivery.status, alert.notified) == ("failed", False)


async def test_an_alert_is_notified_once_a_delivery_is_sent(service_factory) -> None:
    flaky = FakeChannel("ops", failures=[ChannelError("503 from Slack", retryable=True)])
    w = await world(service_factory, flaky, retry_base_seconds=10)
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    [alert] = await w.alerts()
    assert alert.notified is False, "still retrying"
    w.later(seconds=10)
    await w.pipeline.deliver_alerts()
    [alert] = await w.alerts()
    assert alert.notified is True


async def test_an_alert_waiting_for_a_digest_still_owes_its_recovery(service_factory) -> None:
    daily = FakeChannel("ops", digest="daily")
    w = await world(service_factory, daily)
    await w.configure(at_risk_rule(notify_recovered=True))
    start = morning(w)
    await w.score("7", 30)
    [alert] = await w.alerts()
    assert alert.notified is False
    await w.score("7", 60)
    w.now = next_midnight(start)
    await w.pipeline.deliver_alerts()
    [message] = daily.sent
    assert [notice.kind for notice in message] == ["fired", "recovered"]
    [alert] = await w.alerts()
    assert alert.notified is True


async def test_a_recovery_is_not_owed_for_an_alert_nobody_was_told_of(service_factory) -> None:
    broken = FakeChannel("ops", always=ChannelError("404 from Slack", retryable=False))
    w = await world(service_factory, broken)
    await w.configure(at_risk_rule(notify_recovered=True))
    await w.score("7", 30)
    await w.score("7", 60)
    assert [(d.kind, d.status) for d in await w.deliveries()] == [("fired", "failed")]


# --- the channels file, from start-up to delivery -------------------------------------------------


async def test_channels_of_the_file_deliver_the_workers_alerts(service_factory, tmp_path) -> None:
    posted: list[httpx.Request] = []

    def slack(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(200, text="ok")

    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n  - {name: ops, type: slack, url: 'https://hooks.slack.test/T0/B0/secret'}\n"
    )
    service = await service_factory(
        **NO_CRM, alert_channels_file=path, crm_transport=httpx.MockTransport(slack)
    )
    channels = service.runtime.channels
    assert {name: channel.kind for name, channel in channels.items()} == {"ops": "slack"}
    w = World(service, [])
    w.pipeline = w.worker(channels=list(channels.values()))
    await w.configure(at_risk_rule())
    await w.score("7", 30)
    [request] = posted
    assert request.url.host == "hooks.slack.test"
    assert "Account 7" in request.content.decode()
    [delivery] = await w.deliveries()
    assert delivery.status == "sent"


async def test_a_bad_channels_file_stops_the_service_naming_the_setting(
    service_factory, tmp_path
) -> None:
    with pytest.raises(ChannelsFileError, match=r"^CRM_HEALTH_ALERT_CHANNELS_FILE: .*missing"):
        await service_factory(**NO_CRM, alert_channels_file=tmp_path / "missing.yaml")


def test_a_bad_channels_file_stops_the_cli_naming_the_setting(tmp_path, monkeypatch) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - {name: ops, type: sms}\n")
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CRM_HEALTH_ALERT_CHANNELS_FILE", str(path))
    result = CliRunner().invoke(cli, ["keys", "list"])
    assert result.exit_code == 2
    assert "CRM_HEALTH_ALERT_CHANNELS_FILE" in result.stderr
    assert "channels.0.type" in result.stderr


def test_the_smtp_settings_an_email_channel_needs_are_named_as_they_are(tmp_path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - {name: mail, type: email, to: [cs@example.com]}\n")
    settings = make_settings("sqlite+aiosqlite://", alert_channels_file=path)
    with pytest.raises(ChannelsFileError) as raised:
        check_configuration(settings)
    assert "CRM_HEALTH_SMTP_HOST" in str(raised.value)
    assert str(raised.value).startswith("CRM_HEALTH_ALERT_CHANNELS_FILE: ")


async def test_deleting_an_account_resolves_its_open_alerts_silently(service_factory) -> None:
    w = await world(service_factory)
    await w.configure(at_risk_rule(notify_recovered=True))
    await w.score("7", 80)
    await w.score("7", 35)
    [alert] = await w.alerts()
    assert alert.status == "open"
    w.later(seconds=1)
    await store_native(
        w.service.runtime,
        [{"type": "account_deleted", "account": "7", "at": w.now.isoformat()}],
    )
    await w.pipeline.process_inbox()
    await w.pipeline.deliver_alerts()
    [alert] = await w.alerts()
    assert alert.status == "resolved"
    assert alert.resolved_at == w.now
    # Only the "fired" notice: a deleted account did not recover.
    assert [notice.kind for notice in w.channels["ops"].notices] == ["fired"]
