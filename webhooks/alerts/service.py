"""Raising and resolving alerts when accounts are rescored, inside the worker's transaction,
and queueing what each channel is owed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from signals.config import AlertRule
from signals.model import Health
from webhooks.alerts.notice import Digest
from webhooks.alerts.rules import (
    AccountState,
    Condition,
    attribute_value,
    conditions,
    parse_renewal_date,
)
from webhooks.store import alerts
from webhooks.store.db import AsyncSession
from webhooks.store.models import Account, Alert

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class AlertChanges:
    raised: int = 0
    reopened: int = 0
    resolved: int = 0
    queued: int = 0


async def update_alerts(
    session: AsyncSession,
    *,
    states: Sequence[tuple[Account, AccountState]],
    rules_for: Callable[[str], Sequence[AlertRule]],
    digests: Mapping[str, Digest],
    now: datetime,
) -> AlertChanges:
    """Raise alerts whose condition started, resolve those whose condition ended.

    One alert per account, rule and key while the condition lasts (no repeats on every
    rescore); a condition that comes back within the rule's cooldown re-opens its alert
    without telling anyone again. `digests` maps the configured channels to their digest
    period; a rule naming another channel gets a failed delivery saying so. `rules_for`
    gives the rules that apply to a connection's accounts (its routing applied)."""
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
    # {account id: {(rule, key): newest episode}}: oldest first, so the newest one wins.
    latest: dict[int, dict[tuple[str, str], Alert]] = defaultdict(dict)
    for episode in existing:
        latest[episode.account_id][(episode.rule, episode.key)] = episode
    # Alerts people have not been told of yet but will be (a digest, a retry, the overflow
    # digest): their recovery is owed too, or the message would report a condition that ended.
    being_told = await alerts.still_owed(
        session,
        alert_ids=[a.id for a in existing if a.status != alerts.RESOLVED and not a.notified],
    )
    holding: dict[int, dict[tuple[str, str], Condition]] = defaultdict(dict)
    today = now.date()
    for account, state in states:
        for condition in conditions(rules[account.connection], state, today=today):
            holding[account.id][(condition.rule.name, condition.key)] = condition
    owed: list[tuple[int, AlertRule, str]] = []
    fresh: list[tuple[dict[str, Any], AlertRule]] = []
    for account, state in states:
        for (rule_name, key), condition in holding[account.id].items():
            alert = latest[account.id].get((rule_name, key))
            # Already raised (said once), or holding without having started now (an
            # indicator never fine is no loss): nothing new to raise.
            if (alert is not None and alert.status != alerts.RESOLVED) or not condition.raises:
                continue
            if _reopened(alert, condition.rule, now):
                changes.reopened += 1
                continue
            fresh.append((_new_alert(account, state, condition, now), condition.rule))
        recovered, resolved = _resolve_ended(
            state=state,
            latest=latest[account.id],
            holding=holding[account.id],
            by_name=by_name[account.connection],
            being_told=being_told,
            now=now,
        )
        owed.extend((alert.id, rule, kind) for alert, rule, kind in recovered)
        changes.resolved += resolved
    await alerts.insert_new(session, rows=[row for row, _ in fresh])
    changes.raised = len(fresh)
    # Ids are read back only when someone is to be told: rules without channels need none.
    told = [(row, rule) for row, rule in fresh if rule.channels]
    if told:
        ids = await alerts.ids_fired(
            session, account_ids={row["account_id"] for row, _ in told}, fired_at=now
        )
        owed.extend(
            (ids[(row["account_id"], row["rule"], row["key"])], rule, "fired") for row, rule in told
        )
    for alert_id, rule, kind in owed:
        for channel in rule.channels:
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
    if changes.raised or changes.resolved or changes.reopened:
        log.info(
            "alerts_updated",
            raised=changes.raised,
            reopened=changes.reopened,
            resolved=changes.resolved,
            queued=changes.queued,
        )
    return changes


def _reopened(alert: Alert | None, rule: AlertRule, now: datetime) -> bool:
    """Re-open the rule's last episode when its condition comes back within the cooldown;
    nobody is told it came back, so nobody is told when it ends again either."""
    if alert is None or alert.resolved_at is None:
        return False
    if now - alert.resolved_at >= timedelta(days=rule.cooldown_days):
        return False
    alert.status, alert.resolved_at, alert.notified = alerts.OPEN, None, False
    return True


def _resolve_ended(
    *,
    state: AccountState,
    latest: Mapping[tuple[str, str], Alert],
    holding: Mapping[tuple[str, str], Condition],
    by_name: Mapping[str, AlertRule],
    being_told: Collection[int],
    now: datetime,
) -> tuple[list[tuple[Alert, AlertRule, str]], int]:
    """Resolve the account's alerts (`latest`: its newest episode per rule and key) whose
    condition no longer holds; returns the recovered notices owed (for rules that ask for
    them, about alerts people were told of or are going to be: `being_told`) and how many
    were resolved."""
    owed: list[tuple[Alert, AlertRule, str]] = []
    resolved = 0
    for (rule_name, key), alert in latest.items():
        if alert.status == alerts.RESOLVED:
            continue
        if (rule_name, key) in holding:
            continue
        alert.status, alert.resolved_at = alerts.RESOLVED, now
        resolved += 1
        rule = by_name.get(rule_name)
        told = alert.notified or alert.id in being_told
        if rule is not None and rule.notify_recovered and told:
            alert.score, alert.band = state.health.score, state.health.band.value
            owed.append((alert, rule, "recovered"))
    return owed, resolved


def account_state(
    account: Account,
    health: Health,
    *,
    scores_before: Mapping[int, int | None],
    scoring_version: str,
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
    )


def _new_alert(
    account: Account, state: AccountState, condition: Condition, now: datetime
) -> dict[str, Any]:
    health = state.health
    return {
        "account_id": account.id,
        "connection": account.connection,
        "rule": condition.rule.name,
        "key": condition.key,
        "status": alerts.OPEN,
        "title": condition.title[:500],
        "reason": condition.reason,
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
