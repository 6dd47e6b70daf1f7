"""Raising and resolving alerts when accounts are rescored, inside the worker's transaction,
and queueing what each channel is owed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from signals.config import SEVERITY_RANK, AlertRule
from signals.model import Health
from webhooks.alerts.notice import Digest
from webhooks.alerts.rules import (
    LIVE,
    AccountState,
    Cause,
    Condition,
    attribute_value,
    conditions,
    parse_renewal_date,
)
from webhooks.store import alerts
from webhooks.store.db import AsyncSession
from webhooks.store.models import AccountRow, Alert, AlertReason

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class AlertChanges:
    raised: int = 0
    reopened: int = 0
    escalated: int = 0
    resolved: int = 0
    queued: int = 0


@dataclass(kw_only=True)
class _Episode:
    """An account's open (or re-openable) alert with its reasons, as the rescore works on it."""

    alert: Alert
    reasons: list[AlertReason]

    def open_reasons(self) -> list[AlertReason]:
        return [reason for reason in self.reasons if reason.resolved_at is None]


@dataclass(kw_only=True)
class _Work:
    """What one rescore pass decides for the accounts' existing episodes: reasons to insert,
    notices owed as (alert id, channels, kind)."""

    changes: AlertChanges
    now: datetime
    # Alerts not yet notified whose deliveries are still owed (see update_alerts).
    being_told: Collection[int] = ()
    reasons: list[dict[str, Any]] = field(default_factory=list)
    owed: list[tuple[int, Sequence[str], str]] = field(default_factory=list)

    def update(
        self,
        episodes: Sequence[_Episode],
        holding: Mapping[tuple[str, str], Condition],
        by_name: Mapping[str, AlertRule],
        state: AccountState,
    ) -> list[Condition]:
        """Bring one account's episodes up to date with the conditions `holding` now; returns
        the conditions that start a new episode (none when an open one takes them)."""
        changes, now = self.changes, self.now
        live = [episode for episode in episodes if episode.alert.status != alerts.RESOLVED]
        for episode in live:
            changes.resolved += self._end_reasons(episode, holding, by_name, state)
        still_open = [episode for episode in live if episode.alert.status != alerts.RESOLVED]
        held = {
            (reason.rule, reason.key) for episode in still_open for reason in episode.open_reasons()
        }
        # Only a condition that started now is a new reason: one that merely holds (an
        # indicator never fine) adds nothing.
        starting = [c for key, c in holding.items() if key not in held and c.raises]
        if not starting:
            return []
        if still_open:
            episode = still_open[-1]
            raised = _add_reasons(episode, starting, state, now, self.reasons)
            if raised and state.cause == LIVE:
                changes.escalated += 1
                self.owed.append((episode.alert.id, _channels(raised), "escalated"))
            return []
        last = episodes[-1] if episodes else None
        if last is not None and _reopens(last, starting, now):
            _add_reasons(last, starting, state, now, self.reasons)
            last.alert.status, last.alert.resolved_at, last.alert.notified = (
                alerts.OPEN, None, False,
            )  # fmt: skip
            changes.reopened += 1
            return []
        return starting

    def _end_reasons(
        self,
        episode: _Episode,
        holding: Mapping[tuple[str, str], Condition],
        by_name: Mapping[str, AlertRule],
        state: AccountState,
    ) -> int:
        """End the episode's reasons whose condition no longer holds; while reasons remain, it
        is titled by the most severe of them. With its last one the episode is resolved, owing
        a recovered notice to the rules that ask for one if people were (or are going to be)
        told of it and the rescore is live. Returns 1 if it was resolved."""
        ended = [r for r in episode.open_reasons() if (r.rule, r.key) not in holding]
        for reason in ended:
            reason.resolved_at = self.now
        remaining = episode.open_reasons()
        alert = episode.alert
        if remaining:
            if ended:
                _title_by(alert, max(remaining, key=lambda r: SEVERITY_RANK.get(r.severity, 0)))
            return 0
        alert.status, alert.resolved_at = alerts.RESOLVED, self.now
        named = dict.fromkeys(reason.rule for reason in episode.reasons)
        asking = [
            rule
            for rule in (by_name.get(name) for name in named)
            if rule is not None and rule.notify_recovered
        ]
        told = alert.notified or alert.id in self.being_told
        if asking and told and state.cause == LIVE:
            alert.score, alert.band = state.health.score, state.health.band.value
            channels = list(dict.fromkeys(channel for rule in asking for channel in rule.channels))
            self.owed.append((alert.id, channels, "recovered"))
        return 1


async def update_alerts(
    session: AsyncSession,
    *,
    states: Sequence[tuple[AccountRow, AccountState]],
    rules_for: Callable[[str], Sequence[AlertRule]],
    digests: Mapping[str, Digest],
    now: datetime,
) -> AlertChanges:
    """Raise, update and resolve the accounts' alert episodes after a rescore.

    One open alert per account: every rule condition that starts while it is open becomes one
    more reason of it; it is titled by its most severe reason, and people are told again only
    when a new reason raises its severity. A reason ends when its condition does; the alert is
    resolved with its last reason. Conditions that come back within their rules' cooldown re-open
    the last alert without telling anyone. Only a rescore caused by live events (the state's
    `cause`) tells anyone; any other records what it finds and says why nobody was told.
    `digests` maps the configured channels to their digest period; a rule naming another channel
    gets a failed delivery saying so. `rules_for` gives the rules that apply to a connection's
    accounts (its routing applied)."""
    changes = AlertChanges()
    if not states:
        return changes
    rules = {
        connection: rules_for(connection)
        for connection in {account.connection for account, _ in states}
    }
    by_name = {
        connection: {rule.name: rule for rule in theirs} for connection, theirs in rules.items()
    }
    longest = max((rule.cooldown_days for theirs in rules.values() for rule in theirs), default=0.0)
    existing = await alerts.recent(
        session,
        account_ids=[account.id for account, _ in states],
        resolved_since=now - timedelta(days=longest),
    )
    reasons = await alerts.reasons_of(session, alert_ids=[alert.id for alert in existing])
    # {account id: its episodes, oldest first}
    episodes: dict[int, list[_Episode]] = defaultdict(list)
    for alert in existing:
        episodes[alert.account_id].append(_Episode(alert=alert, reasons=reasons[alert.id]))
    # Alerts people have not been told of yet but will be (a digest, a retry, the overflow
    # digest): their recovery is owed too, or the message would report a condition that ended.
    being_told = await alerts.still_owed(
        session,
        alert_ids=[a.id for a in existing if a.status != alerts.RESOLVED and not a.notified],
    )
    today = now.date()
    work = _Work(changes=changes, now=now, being_told=being_told)
    fresh: list[tuple[AccountRow, AccountState, list[Condition]]] = []
    for account, state in states:
        holding = {
            (condition.rule.name, condition.key): condition
            for condition in conditions(rules[account.connection], state, today=today)
        }
        starting = work.update(episodes[account.id], holding, by_name[account.connection], state)
        if starting:
            fresh.append((account, state, starting))
    await alerts.insert_new(
        session, rows=[_new_alert(account, state, found, now) for account, state, found in fresh]
    )
    changes.raised = len(fresh)
    if fresh:
        ids = await alerts.ids_fired(
            session, account_ids={account.id for account, _, _ in fresh}, fired_at=now
        )
        for account, state, found in fresh:
            work.reasons.extend(_reason_row(ids[account.id], c, now) for c in found)
            if state.cause == LIVE:
                work.owed.append((ids[account.id], _channels(found), "fired"))
    await alerts.insert_reasons(session, rows=work.reasons)
    for alert_id, channels, kind in work.owed:
        for channel in channels:
            digest = digests.get(channel)
            alerts.queue(
                session,
                alert_id=alert_id,
                kind=kind,
                channel=channel,
                available_at=alerts.next_digest_time(now, digest or "none"),
                now=now,
                error=None
                if digest is not None
                else f"channel {channel!r} is not configured (CRM_HEALTH_ALERT_CHANNELS_FILE)",
            )
            changes.queued += 1
    if changes.raised or changes.resolved or changes.reopened or changes.escalated:
        log.info(
            "alerts_updated",
            raised=changes.raised,
            reopened=changes.reopened,
            escalated=changes.escalated,
            resolved=changes.resolved,
            queued=changes.queued,
        )
    return changes


def _channels(found: Sequence[Condition]) -> list[str]:
    """The channels any of these conditions' rules name, each once, in rule order."""
    return list(dict.fromkeys(channel for c in found for channel in c.rule.channels))


def _most_severe(found: Sequence[Condition]) -> Condition:
    """The first of the most severe: rules listed first win a tie."""
    return max(found, key=lambda c: SEVERITY_RANK[c.rule.level])


def _add_reasons(
    episode: _Episode,
    starting: Sequence[Condition],
    state: AccountState,
    now: datetime,
    rows: list[dict[str, Any]],
) -> list[Condition]:
    """Add conditions that started as reasons of an episode (its title follows the most severe
    reason); returns those that raised its severity (nobody is told of the others)."""
    alert = episode.alert
    before = max((SEVERITY_RANK.get(r.severity, 0) for r in episode.open_reasons()), default=0)
    rows.extend(_reason_row(alert.id, condition, now) for condition in starting)
    top = _most_severe(starting)
    if SEVERITY_RANK[top.rule.level] <= before:
        return []
    alert.rule, alert.key, alert.severity = top.rule.name, top.key, top.rule.level
    alert.title, alert.reason = top.title[:500], top.reason
    health = state.health
    alert.score, alert.band, alert.trend_30d = health.score, health.band.value, health.trend_30d
    alert.drivers = list(health.drivers)
    return [c for c in starting if SEVERITY_RANK[c.rule.level] > before]


def _title_by(alert: Alert, reason: AlertReason) -> None:
    alert.rule, alert.key, alert.severity = reason.rule, reason.key, reason.severity
    alert.title, alert.reason = reason.title, reason.reason


def _reopens(last: _Episode, starting: Sequence[Condition], now: datetime) -> bool:
    """Whether the account's last (resolved) episode comes back: each condition starting now was
    one of its reasons and ended less than its rule's cooldown ago."""
    resolved_at = last.alert.resolved_at
    if last.alert.status != alerts.RESOLVED or resolved_at is None:
        return False
    had = {(reason.rule, reason.key) for reason in last.reasons}
    return all(
        (c.rule.name, c.key) in had and now - resolved_at < timedelta(days=c.rule.cooldown_days)
        for c in starting
    )


def account_state(
    account: AccountRow,
    health: Health,
    *,
    scores_before: Mapping[int, int | None],
    scoring_version: str,
    cause: Cause = LIVE,
) -> AccountState:
    """What the rules look at for an account just scored as `health` under `scoring_version`,
    from its row, which still holds the health recorded before (the worker and the preview
    both build it here)."""
    scored_before = account.health_updated_at is not None
    comparable = scored_before and account.config_version == scoring_version
    fine_before = None
    if comparable and account.indicators_at_risk is not None:
        measured = (account.coverage or {}).get("indicators") or []
        fine_before = frozenset(measured) - frozenset(account.indicators_at_risk)
    return AccountState(
        name=account.name,
        health=health,
        previous_score=account.score,
        # A first scoring has no previous band ("unknown" is the row's default).
        previous_band=account.band if scored_before else None,
        scores_before=scores_before,
        renewal_date=parse_renewal_date(attribute_value(account.attributes, "renewal_date")),
        segment=attribute_value(account.attributes, "segment"),
        indicators_fine_before=fine_before,
        cause=cause,
    )


def _new_alert(
    account: AccountRow, state: AccountState, found: Sequence[Condition], now: datetime
) -> dict[str, Any]:
    health = state.health
    top = _most_severe(found)
    return {
        "account_id": account.id,
        "connection": account.connection,
        "rule": top.rule.name,
        "key": top.key,
        "severity": top.rule.level,
        "cause": state.cause,
        "status": alerts.OPEN,
        "title": top.title[:500],
        "reason": top.reason,
        "score": health.score,
        "band": health.band.value,
        "previous_score": state.previous_score,
        "previous_band": state.previous_band,
        "trend_30d": health.trend_30d,
        "drivers": list(health.drivers),
        # Until one of its deliveries is sent (alerts.mark_sent).
        "notified": False,
        "fired_at": now,
        "resolved_at": None,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "acknowledged_note": None,
        "snoozed_until": None,
    }


def _reason_row(alert_id: int, condition: Condition, now: datetime) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "rule": condition.rule.name,
        "key": condition.key,
        "severity": condition.rule.level,
        "title": condition.title[:500],
        "reason": condition.reason,
        "opened_at": now,
        "resolved_at": None,
    }
