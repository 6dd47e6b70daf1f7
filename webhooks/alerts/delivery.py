"""The alert outbox step of the worker: claim due deliveries, send them through their channels
(a digest channel's notices together, in one message), record what happened."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog

from webhooks.alerts.channels.owner import OWNER_KIND, owner_key
from webhooks.alerts.notice import AlertNotice, Channel, ChannelError
from webhooks.alerts.rules import attribute_value
from webhooks.connections import ConnectionRegistry
from webhooks.metrics import Metrics
from webhooks.store import alerts
from webhooks.store.db import SessionFactory
from webhooks.store.models import Account, Alert

if TYPE_CHECKING:
    from webhooks.pipeline import WorkerOptions

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


@dataclass(kw_only=True)
class _Outcome:
    sent: list[int]
    # {delivery id: (error, retry at or None for failed)}
    failed: dict[int, tuple[str, datetime | None]]


async def deliver_alerts(
    *,
    sessions: SessionFactory,
    channels: Mapping[str, Channel],
    connections: ConnectionRegistry,
    options: WorkerOptions,
    clock: Callable[[], datetime],
    metrics: Metrics,
) -> int:
    """Send the due alert deliveries; returns how many were claimed. No transaction is held
    while a channel is called; every channel is tried on its own, whatever the others do."""
    now = clock()
    async with sessions() as session, session.begin():
        due = await alerts.claim_due(
            session, now=now, limit=options.batch_size, lease_seconds=options.lease_seconds
        )
        found = await alerts.alerts_with_accounts(
            session, alert_ids={delivery.alert_id for delivery in due}
        )
    if not due:
        return 0
    outcome = _Outcome(sent=[], failed={})
    by_channel: dict[str, list[_Claimed]] = defaultdict(list)
    for delivery in due:
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
                    notice=notice_for(alert, account, kind=delivery.kind, connections=connections),
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
    for delivery in due:
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
    )
    return len(due)


def _messages(channel: Channel, claimed: list[_Claimed]) -> list[list[_Claimed]]:
    """The claimed deliveries of one channel as messages: one per notice, or a digest of the
    period's; an owner channel's digest is one per owner, who reads only their accounts."""
    if channel.digest == "none":
        return [[one] for one in claimed]
    if channel.kind != OWNER_KIND:
        return [claimed]
    by_owner: dict[tuple[str, str | None], list[_Claimed]] = defaultdict(list)
    for one in claimed:
        by_owner[owner_key(one.notice)].append(one)
    return list(by_owner.values())


async def _send(
    channel: Channel,
    group: Sequence[_Claimed],
    outcome: _Outcome,
    *,
    options: WorkerOptions,
    clock: Callable[[], datetime],
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
    alert: Alert, account: Account, *, kind: str, connections: ConnectionRegistry
) -> AlertNotice:
    """The notice people read for one alert: account, health, what changed and why."""
    recovered = kind == "recovered"
    return AlertNotice(
        alert_id=alert.id,
        kind="recovered" if recovered else "fired",
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
