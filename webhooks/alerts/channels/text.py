"""The words every channel uses for a notice: headline, score, trend, owner, time, digest title.

Pure functions of an AlertNotice, so Slack, Teams, e-mail and CRM tasks say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from webhooks.alerts.notice import AlertNotice

_BAND_WORDS: Final = {"at_risk": "at risk", "neutral": "neutral", "healthy": "healthy"}

FIRED_AT_RISK: Final = "\U0001f534"  # red circle
FIRED_OTHER: Final = "\U0001f7e0"  # orange circle
RECOVERED: Final = "\u2705"  # white heavy check mark


def band_words(band: str | None) -> str:
    """`at_risk` as people say it; an unknown or missing band as "unknown"."""
    if not band:
        return "unknown"
    return _BAND_WORDS.get(band, band.replace("_", " "))


def account_label(notice: AlertNotice) -> str:
    """The account's name, or its CRM record id when the name is not known."""
    return notice.account_name or f"record {notice.record_id}"


def is_recovered(notice: AlertNotice) -> bool:
    return notice.kind == "recovered"


def marker(notice: AlertNotice) -> str:
    """A coloured sign that tells a recovery from an alert at a glance."""
    if is_recovered(notice):
        return RECOVERED
    return FIRED_AT_RISK if notice.band == "at_risk" else FIRED_OTHER


def _mentions_recovery(notice: AlertNotice) -> bool:
    return "recover" in notice.title.lower()


def headline(notice: AlertNotice) -> str:
    """The one line a notice is known by: the rule's title, or "<account> recovered"."""
    if is_recovered(notice) and not _mentions_recovery(notice):
        return f"{account_label(notice)} recovered"
    return notice.title


def explanation(notice: AlertNotice) -> str:
    """The sentence under the headline: the reason, and for a recovery what it ended."""
    if is_recovered(notice) and not _mentions_recovery(notice):
        return f"Resolved: {notice.title}. {notice.reason}"
    return notice.reason


def score_text(notice: AlertNotice) -> str:
    """e.g. "38 (at risk), was 64 (neutral)"."""
    score = "n/a" if notice.score is None else str(notice.score)
    text = f"{score} ({band_words(notice.band)})"
    if notice.previous_score is not None or notice.previous_band is not None:
        before = "n/a" if notice.previous_score is None else str(notice.previous_score)
        if notice.previous_band:
            before += f" ({band_words(notice.previous_band)})"
        text += f", was {before}"
    return text


def trend_text(trend: int | None) -> str:
    """Points gained or lost over 30 days, signed: "+5", "-12", "0"; "n/a" when unknown."""
    if trend is None:
        return "n/a"
    return f"{trend:+d}" if trend else "0"


def owner_text(notice: AlertNotice) -> str:
    return notice.owner_id if notice.owner_id else "unassigned"


def when_text(at: datetime) -> str:
    """e.g. "2026-11-23 12:00 UTC" (a naive time is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def link(notice: AlertNotice) -> str | None:
    """The record's URL when it is an http(s) link; anything else is never made clickable."""
    url = notice.record_url
    if url and url.lower().startswith(("https://", "http://")):
        return url
    return None


def compact_line(notice: AlertNotice) -> str:
    """One line of the facts, for digests: score, trend, owner, rule."""
    return (
        f"score {score_text(notice)} · trend {trend_text(notice.trend_30d)} · "
        f"owner {owner_text(notice)} · rule {notice.rule}"
    )


def context_line(notice: AlertNotice) -> str:
    """Where the notice comes from, for the small print."""
    return (
        f"rule {notice.rule} · {notice.connection} ({notice.crm}) · alert {notice.alert_id} · "
        f"{when_text(notice.at)}"
    )


def digest_title(notices: Sequence[AlertNotice]) -> str:
    """e.g. "Customer health: 2 alerts, 1 recovered"."""
    recovered = sum(1 for notice in notices if is_recovered(notice))
    fired = len(notices) - recovered
    parts = []
    if fired:
        parts.append(f"{fired} alert{'s' if fired != 1 else ''}")
    if recovered:
        parts.append(f"{recovered} recovered")
    return "Customer health: " + ", ".join(parts)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def one_line(text: str) -> str:
    """Line breaks and runs of spaces as single spaces (subjects, headers, fallbacks)."""
    return " ".join(text.split())
