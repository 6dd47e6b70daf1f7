"""The alert outbox step of the worker: claim due deliveries, send them through their channels
(a digest channel's notices together, in one message), record what happened.

Each channel sends at most its daily limit of messages per UTC day. What would exceed it is
held, not dropped: it waits for the channel's overflow digest, one message at the next UTC
midnight with every notice held back that day.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType

import structlog

from webhooks.alerts.channels.owner import OWNER_KIND, owner_key
from webhooks.alerts.notice import AlertNotice, Channel, ChannelError
from webhooks.alerts.rules import attribute_value
from webhooks.clock import Clock
from webhooks.connections import ConnectionRegistry
from webhooks.metrics import Metrics
from webhooks.store import alerts
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import Account, Alert, AlertReason
from webhooks.worker.options import WorkerOptions

log = structlog.get_logger(__name__)

NO_CHANNELS: Mapping[str, Channel] = MappingProxyType({})


# Unexpected exceptions may quote a URL, and channel URLs (Slack, Teams, webhooks) carry their
# secret in the path: never store or log one.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


@dataclass(frozen=True, kw_only=True)
class _Claimed:
    """One claimed delivery with its notice, built before any channel is called."""

    id: int
    alert_id: int
    attempts: int
    notice: AlertNotice
    overflow: bool = False


@dataclass(kw_only=True)
class _Outcome:
    sent: list[int]
    # {delivery id: (error, retry at or None for failed)}
    failed: dict[int, tuple[str, datetime | None]]
    # Messages not sent, by channel: the leave they took from the daily limit is given back.
    unsent: Counter[str] = field(default_factory=Counter)


async def deliver_alerts(
    *,
    sessions: SessionFactory,
    channels: Mapping[str, Channel],
    connections: ConnectionRegistry,
    options: WorkerOptions,
    clock: Clock,
    metrics: Metrics,
) -> int:
    """Send the due alert deliveries; returns how many were claimed. No transaction is held
    while a channel is called; every channel is tried on its own, whatever the others do."""
    now = clock()
    today = now.astimezone(UTC).date()
    async with sessions() as session, session.begin():
        due = await alerts.claim_due(
            session, now=now, limit=options.batch_size, lease_seconds=options.lease_seconds
        )
        found = await alerts.alerts_with_accounts(
            session, alert_ids={delivery.alert_id for delivery in due}
        )
        reasons = await alerts.reasons_of(session, alert_ids=list(found))
        held = await hold_over_daily_limits(
            session,
            due=[d for d in due if d.alert_id in found and d.channel in channels],
            channels=channels,
            today=today,
            now=now,
        )
    if not due:
        return 0
    _report_held(held, channels, metrics=metrics, now=now)
    held_ids = {delivery_id for ids in held.values() for delivery_id in ids}
    sending = [delivery for delivery in due if delivery.id not in held_ids]
    outcome = _Outcome(sent=[], failed={})
    by_channel: dict[str, list[_Claimed]] = defaultdict(list)
    for delivery in sending:
        pair = found.get(delivery.alert_id)
        channel = channels.get(delivery.channel)
        if pair is None:
            outcome.failed[delivery.id] = ("the alert no longer exists", None)
        elif channel is None:
            outcome.failed[delivery.id] = (
                f"channel {delivery.channel!r} is not configured any more "
                "(CRM_HEALTH_ALERT_CHANNELS_FILE)",
                None,
            )
        else:
            alert, account = pair
            by_channel[delivery.channel].append(
                _Claimed(
                    id=delivery.id,
                    alert_id=delivery.alert_id,
                    attempts=delivery.attempts,
                    notice=notice_for(
                        alert,
                        account,
                        kind=delivery.kind,
                        connections=connections,
                        reasons=reasons.get(alert.id, ()),
                    ),
                    overflow=delivery.overflow,
                )
            )
    for name, claimed in by_channel.items():
        channel = channels[name]
        for group in _messages(channel, claimed):
            await _send(channel, group, outcome, options=options, clock=clock)
    async with sessions() as session, session.begin():
        await alerts.mark_sent(session, delivery_ids=outcome.sent, now=clock())
        for delivery_id, (error, retry_at) in outcome.failed.items():
            await alerts.mark_failed_attempt(
                session, delivery_id=delivery_id, error=error, retry_at=retry_at
            )
        await _give_back_leave(session, outcome.unsent, channels, day=today)
    for delivery in sending:
        channel = channels.get(delivery.channel)
        channel_type = "unknown" if channel is None else channel.kind
        if delivery.id not in outcome.failed:
            metrics.alert_delivery(channel_type, "sent")
        else:
            error, retry_at = outcome.failed[delivery.id]
            metrics.alert_delivery(channel_type, "failed" if retry_at is None else "retried")
            log.warning(
                "alert_delivery_failed",
                delivery_id=delivery.id,
                alert_id=delivery.alert_id,
                channel=delivery.channel,
                attempts=delivery.attempts + 1,
                retry_at=None if retry_at is None else retry_at.isoformat(),
                error=error,
            )
    log.info(
        "alert_deliveries",
        claimed=len(due),
        sent=len(outcome.sent),
        failed=len(outcome.failed),
        held=len(held_ids),
    )
    return len(due)


def _messages(channel: Channel, claimed: Sequence[_Claimed]) -> list[list[_Claimed]]:
    """The messages the claimed deliveries of one channel make, as hold_over_daily_limits
    counts them: the held-back notices in one (the overflow digest); the others in one for a
    digest channel (everything of its period), else one each. An owner channel's digests are
    one per owner, who reads only their own accounts."""
    overflow = [
        replace(one, notice=replace(one.notice, over_daily_limit=channel.daily_limit))
        for one in claimed
        if one.overflow
    ]
    regular = [one for one in claimed if not one.overflow]
    if channel.digest == "none":
        return _per_owner(channel, overflow) + [[one] for one in regular]
    return _per_owner(channel, overflow) + _per_owner(channel, regular)


def _per_owner(channel: Channel, digest: Sequence[_Claimed]) -> list[list[_Claimed]]:
    """A digest as messages: one, or for an owner channel one per owner."""
    if not digest:
        return []
    if channel.kind != OWNER_KIND:
        return [list(digest)]
    by_owner: dict[tuple[str, str | None], list[_Claimed]] = defaultdict(list)
    for one in digest:
        by_owner[owner_key(one.notice)].append(one)
    return list(by_owner.values())


async def hold_over_daily_limits(
    session: AsyncSession,
    *,
    due: Sequence[alerts.DueDelivery],
    channels: Mapping[str, Channel],
    today: date,
    now: datetime,
) -> dict[str, list[int]]:
    """Take each channel's leave for today's messages among the claimed deliveries (in the
    claiming transaction); hold those beyond its daily limit for the overflow digest at the
    next UTC midnight. Returns the held delivery ids by channel.

    The overflow digest itself is always sent (holding it again would put it off for ever);
    it counts as one of the new day's messages."""
    by_channel: dict[str, list[alerts.DueDelivery]] = defaultdict(list)
    for delivery in due:
        if channels[delivery.channel].daily_limit is not None:
            by_channel[delivery.channel].append(delivery)
    if not by_channel:
        return {}
    await alerts.forget_leave_before(session, day=today)
    held: dict[str, list[int]] = {}
    # One order for every worker: each waits for the other's channel rows, never in a cycle.
    for name in sorted(by_channel):
        channel = channels[name]
        limit = channel.daily_limit
        assert limit is not None  # only limited channels were gathered
        regular = [delivery for delivery in by_channel[name] if not delivery.overflow]
        if channel.digest != "none":
            messages = [regular] if regular else []
        else:
            messages = [[delivery] for delivery in regular]
        has_overflow = len(regular) < len(by_channel[name])
        granted = await alerts.take_leave(
            session,
            channel=name,
            day=today,
            wanted=len(messages),
            forced=1 if has_overflow else 0,
            limit=limit,
        )
        over = [delivery.id for message in messages[granted:] for delivery in message]
        if over:
            held[name] = over
    if held:
        await alerts.hold_for_overflow(
            session,
            delivery_ids=[delivery_id for ids in held.values() for delivery_id in ids],
            until=alerts.next_digest_time(now, "daily"),
        )
    return held


async def _give_back_leave(
    session: AsyncSession, unsent: Mapping[str, int], channels: Mapping[str, Channel], *, day: date
) -> None:
    """The daily limit counts messages sent: those that failed may be tried again today."""
    for name, count in unsent.items():
        channel = channels.get(name)
        if channel is not None and channel.daily_limit is not None:
            await alerts.give_back_leave(session, channel=name, day=day, count=count)


def _report_held(
    held: Mapping[str, Sequence[int]],
    channels: Mapping[str, Channel],
    *,
    metrics: Metrics,
    now: datetime,
) -> None:
    for name, ids in held.items():
        channel = channels[name]
        for _ in ids:
            metrics.alert_delivery(channel.kind, "held")
        log.warning(
            "alert_deliveries_held_over_daily_limit",
            channel=name,
            daily_limit=channel.daily_limit,
            held=len(ids),
            delivery_ids=list(ids),
            until=alerts.next_digest_time(now, "daily").isoformat(),
        )


async def _send(
    channel: Channel,
    group: Sequence[_Claimed],
    outcome: _Outcome,
    *,
    options: WorkerOptions,
    clock: Clock,
) -> None:
    try:
        await channel.send([claimed.notice for claimed in group])
    except ChannelError as exc:
        # Channels word their errors themselves: channel, host, status, never the URL.
        error, retryable = str(exc), exc.retryable
    except Exception as exc:
        # A bug or an unforeseen failure of one channel must not stop the others.
        error, retryable = _redacted(exc), True
    else:
        outcome.sent.extend(claimed.id for claimed in group)
        for claimed in group:
            log.info(
                "alert_delivered",
                delivery_id=claimed.id,
                alert_id=claimed.alert_id,
                channel=channel.name,
                kind=claimed.notice.kind,
            )
        return
    now = clock()
    outcome.unsent[channel.name] += 1
    for claimed in group:
        outcome.failed[claimed.id] = (error, _retry_at(claimed.attempts, retryable, options, now))


def _retry_at(
    attempts: int, retryable: bool, options: WorkerOptions, now: datetime
) -> datetime | None:
    """When to try again after attempt number `attempts + 1` failed; None: failed for good."""
    if not retryable or attempts + 1 >= options.max_attempts:
        return None
    return now + timedelta(seconds=options.schedule.delay(attempts + 1))


def _redacted(exc: Exception) -> str:
    return f"{type(exc).__name__}: {_URL.sub('<url>', str(exc))}".rstrip(": ")


def notice_for(
    alert: Alert,
    account: Account,
    *,
    kind: str,
    connections: ConnectionRegistry,
    reasons: Sequence[AlertReason] = (),
) -> AlertNotice:
    """The notice people read for one alert: account, health, what changed and why (the reason
    it is titled by, and its other reasons still open)."""
    recovered = kind == "recovered"
    also = (
        ()
        if recovered
        else tuple(
            f"{reason.title} ({reason.reason})"
            for reason in reasons
            if reason.resolved_at is None and (reason.rule, reason.key) != (alert.rule, alert.key)
        )
    )
    return AlertNotice(
        alert_id=alert.id,
        kind="recovered" if recovered else "escalated" if kind == "escalated" else "fired",
        severity=alert.severity,
        also=also,
        rule=alert.rule,
        title=alert.title,
        reason=alert.reason,
        connection=account.connection,
        crm=account.crm,
        record_id=account.crm_id,
        account_name=account.name,
        owner_id=attribute_value(account.attributes, "owner"),
        score=alert.score,
        band=alert.band,
        previous_score=alert.previous_score,
        previous_band=alert.previous_band,
        trend_30d=alert.trend_30d,
        drivers=tuple(alert.drivers or ()),
        record_url=record_url(account, connections),
        # When it happened, not when it is sent: a digest lists each at its own time.
        at=(alert.resolved_at or alert.fired_at) if recovered else alert.fired_at,
    )


def record_url(account: Account, connections: ConnectionRegistry) -> str | None:
    """A link to the account in its CRM, when the CRM's address for it is known."""
    connection = connections.get(account.connection)
    return None if connection is None else connection.record_url(account.crm_id)
