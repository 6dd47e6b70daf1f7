"""Which alert conditions hold for a freshly scored account. Pure: the store and the worker
decide what that means (raise, keep, resolve) in webhooks.alerts.service."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from connector import bounds
from signals.config import AlertRule
from signals.model import Band, Health

_BAND_WORDS = {"at_risk": "at risk", "neutral": "neutral", "healthy": "healthy"}

# What caused a rescore, and so whether its alerts tell anyone: only live events (newer than
# the age limit) do. The others record what they find, saying why nobody was told.
Cause = Literal["live", "history", "backfill", "first_load", "configuration"]
LIVE: Final = "live"
QUIET_BECAUSE: Final[dict[str, str]] = {
    "history": "caused by events older than the alert age limit (history, a replay or an import)",
    "backfill": "found by a backfill of CRM records",
    "first_load": "found at the account's first scoring",
    "configuration": "found by a rescore after a configuration change",
}


@dataclass(frozen=True, kw_only=True)
class AccountState:
    """What the rules look at for one account, after scoring."""

    name: str | None
    health: Health
    previous_score: int | None
    previous_band: str | None
    # {days: score that many days ago}, for score_drop rules.
    scores_before: Mapping[int, int | None]
    renewal_date: date | None
    segment: str | None  # the account's segment attribute
    # Indicators measured and above their at-risk threshold at the previous scoring under the
    # same scoring configuration; None when there is none to compare with (a first scoring, or
    # a configuration change): then no indicator was lost, whatever it reads now.
    indicators_fine_before: frozenset[str] | None = None
    cause: Cause = "live"


@dataclass(frozen=True, kw_only=True)
class Condition:
    """A rule's condition holding for an account; `key` tells episodes of one rule apart
    (the band entered, the indicator, the renewal date)."""

    rule: AlertRule
    key: str
    title: str
    reason: str
    # False: the condition holds (an open alert of it stays open) but did not start now, so
    # it raises nothing: an indicator at risk that was never fine is no loss.
    raises: bool = True


def band_words(band: str | None) -> str:
    return _BAND_WORDS.get(band or "", band or "unknown")


def applies(rule: AlertRule, state: AccountState) -> bool:
    if not rule.enabled:
        return False
    if not rule.segments:
        return True
    return bool({state.health.segment, state.segment} & set(rule.segments))


def conditions(rules: Sequence[AlertRule], state: AccountState, *, today: date) -> list[Condition]:
    """Every enabled rule whose condition holds for this account now.

    None for an account that is not a customer (it has no health to judge) or is onboarding
    (its windows are not yet lived through): no score, band, indicator or renewal alert, and
    open ones resolve.
    """
    health = state.health
    if not health.customer or health.band is Band.ONBOARDING:
        return []
    found = (
        _CHECKS[rule.when](rule, state, state.name or "The account", today)
        for rule in rules
        if applies(rule, state)
    )
    return [condition for condition in found if condition is not None]


def _band_entered(
    rule: AlertRule, state: AccountState, label: str, _today: date
) -> Condition | None:
    if state.health.band.value != rule.band:
        return None
    return Condition(
        rule=rule,
        key=rule.band,
        title=f"{label} is {band_words(rule.band)}",
        reason=_band_reason(state),
    )


def _score_drop(rule: AlertRule, state: AccountState, label: str, _today: date) -> Condition | None:
    score, before = state.health.score, state.scores_before.get(rule.days)
    if score is None or before is None or before - score < rule.points:
        return None
    return Condition(
        rule=rule,
        key=f"drop-{rule.days}d",
        title=f"{label}: health fell {before - score} points",
        reason=(
            f"score fell from {before} to {score} within {rule.days} days "
            f"(rule: {rule.points:g} points)"
        ),
    )


def _indicator_at_risk(
    rule: AlertRule, state: AccountState, label: str, _today: date
) -> Condition | None:
    name = str(rule.indicator)
    indicator = _at_risk_indicator(state.health, name)
    if indicator is None:
        return None
    fine_before = state.indicators_fine_before
    return Condition(
        rule=rule,
        key=name,
        title=f"{label}: {_indicator_words(name)} at risk",
        reason=indicator,
        raises=rule.trigger == "state" or (fine_before is not None and name in fine_before),
    )


def _renewal_near(
    rule: AlertRule, state: AccountState, label: str, today: date
) -> Condition | None:
    health, renewal = state.health, state.renewal_date
    if renewal is None or not 0 <= (renewal - today).days <= rule.days:
        return None
    if health.band.value not in rule.bands:
        return None
    days = (renewal - today).days
    return Condition(
        rule=rule,
        key=f"renewal-{renewal.isoformat()}",
        title=f"{label} renews in {days} days and is "
        + ("at risk" if health.band is Band.AT_RISK else "not healthy"),
        reason=(
            f"renewal on {renewal.isoformat()}, band {band_words(health.band.value)}, "
            f"score {health.score}"
        ),
    )


def _sentiment_ending(
    rule: AlertRule, state: AccountState, label: str, today: date
) -> Condition | None:
    felt = state.health.sentiment
    if felt is None or not 0 <= (felt.until.date() - today).days <= rule.days:
        return None
    ends = felt.until.date().isoformat()
    return Condition(
        rule=rule,
        key=f"sentiment-{felt.until.isoformat()}",
        title=f"{label}: the CSM sentiment ends on {ends}",
        reason=(
            f"{felt.rating.value} ({felt.reason}) set by {felt.author} ends on {ends}: set it "
            "again if it still holds, or the computed health applies"
        ),
    )


# Each kind of rule's check: the condition when it holds for the account, else None.
_CHECKS: dict[str, Callable[[AlertRule, AccountState, str, date], Condition | None]] = {
    "band_entered": _band_entered,
    "score_drop": _score_drop,
    "indicator_at_risk": _indicator_at_risk,
    "renewal_near": _renewal_near,
    "sentiment_ending": _sentiment_ending,
}


def _band_reason(state: AccountState) -> str:
    health = state.health
    if state.previous_band and state.previous_band != health.band.value:
        return (
            f"band {band_words(state.previous_band)} -> {band_words(health.band.value)}, score "
            f"{_score(state.previous_score)} -> {_score(health.score)}"
        )
    return f"band {band_words(health.band.value)}, score {_score(health.score)}"


def _score(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _at_risk_indicator(health: Health, name: str) -> str | None:
    """The driver-style text of the indicator when it scores 0 (at or past its at-risk
    threshold); None when it is healthier or was not measured (no data is not a risk)."""
    signal, _, indicator = name.partition(".")
    for result in health.indicators:
        if result.signal == signal and result.name == indicator and result.score <= 0:
            return f"{_indicator_words(name)}: {result.raw:g} (at or past its at-risk threshold)"
    return None


def _indicator_words(name: str) -> str:
    return name.partition(".")[2].replace("_", " ")


def attribute_value(attributes: Mapping[str, object] | None, name: str) -> str | None:
    """An account attribute's value as stored ({name: {"value": ..., "at": ...}}), or None."""
    entry = (attributes or {}).get(name)
    value = entry.get("value") if isinstance(entry, Mapping) else None
    return None if value is None or value == "" else str(value)


def parse_renewal_date(value: object) -> date | None:
    """A renewal date as CRMs hold it: ISO date or date-time, or epoch milliseconds (HubSpot
    date properties); None when absent or unreadable (intakes refuse unreadable ones)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return bounds.calendar_date(value)
    except ValueError:
        return None
