"""The words every channel uses for a notice: headline, score, trend, owner, time, digest title.

Pure functions of an AlertNotice, so Slack, Teams, e-mail and CRM tasks say the same thing.
`readable` and `plain` clean the text a CRM, a product or a person wrote before any channel
formats it; each channel then escapes it for its own markup.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from webhooks.alerts.notice import AlertNotice

_BAND_WORDS: Final = {"at_risk": "at risk", "neutral": "neutral", "healthy": "healthy"}

FIRED_AT_RISK: Final = "\U0001f534"  # red circle
FIRED_OTHER: Final = "\U0001f7e0"  # orange circle
RECOVERED: Final = "\u2705"  # white heavy check mark


# Whitespace controls stay (one_line folds them where a line must stay one line); every other
# control character goes.
_KEPT_CONTROLS: Final = frozenset("\t\n\r")
# A scheme followed by "//": what renderers and mail clients turn into a link on their own.
_URL_SCHEME: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}):(?=//)")


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    # Cf: bidi embeddings, overrides, isolates and marks (U+202A..U+202E, U+2066..U+2069,
    # U+200E/U+200F, U+061C), zero-width spaces and joiners, soft hyphens, BOMs: they reorder
    # or hide what a reader sees (a right-to-left override turns "exe.pdf" around).
    return category == "Cf" or (category == "Cc" and char not in _KEPT_CONTROLS)


def strip_invisible(text: str) -> str:
    """`text` without invisible format characters (bidi controls included) and controls."""
    return "".join(char for char in text if not _invisible(char))


def defang(text: str) -> str:
    """A URL someone else wrote, shown but never followed: "https://x" as "https[:]//x".

    Slack, Teams and mail clients make a link of any "scheme://" in text, whatever the markup
    says, so a name like "[re-verify your login](https://evil.example)" would still be a link.
    The links crm-health builds itself (the CRM record) are passed apart and stay links."""
    return _URL_SCHEME.sub(r"\1[:]", text)


def _cleaned(notice: AlertNotice, clean: Callable[[str], str]) -> AlertNotice:
    def optional(text: str | None) -> str | None:
        return None if text is None else clean(text)

    return dataclasses.replace(
        notice,
        rule=clean(notice.rule),
        title=clean(notice.title),
        reason=clean(notice.reason),
        connection=clean(notice.connection),
        crm=clean(notice.crm),
        record_id=clean(notice.record_id),
        account_name=optional(notice.account_name),
        owner_id=optional(notice.owner_id),
        drivers=tuple(clean(driver) for driver in notice.drivers),
        also=tuple(clean(other) for other in notice.also),
    )


def readable(notice: AlertNotice) -> AlertNotice:
    """The notice as people will read it (Slack, Teams, e-mail, CRM tasks): every text field
    without invisible characters and with others' URLs defanged; `record_url` untouched."""
    return _cleaned(notice, lambda text: defang(strip_invisible(text)))


def plain(notice: AlertNotice) -> AlertNotice:
    """The notice as data (the JSON webhook): text kept as written, less invisible characters."""
    return _cleaned(notice, strip_invisible)


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
    text = notice.reason
    if notice.kind == "escalated":
        text = f"Now more severe ({notice.severity}): {text}"
    if notice.also:
        text += ". Also: " + "; ".join(notice.also)
    return text


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


def digest_counts(notices: Sequence[AlertNotice]) -> str:
    """e.g. "2 alerts, 1 recovered"."""
    recovered = sum(1 for notice in notices if is_recovered(notice))
    fired = len(notices) - recovered
    parts = []
    if fired:
        parts.append(f"{fired} alert{'s' if fired != 1 else ''}")
    if recovered:
        parts.append(f"{recovered} recovered")
    return ", ".join(parts)


def digest_title(notices: Sequence[AlertNotice]) -> str:
    """e.g. "Customer health: 2 alerts, 1 recovered"; for a channel's overflow digest
    "Customer health: 12 more alerts over the daily limit of 50"."""
    counts = digest_counts(notices)
    limits = {notice.over_daily_limit for notice in notices}
    if len(limits) != 1 or None in limits:
        return f"Customer health: {counts}"
    [limit] = limits
    more = f"{len(notices)} more"
    if not any(is_recovered(notice) for notice in notices):
        alerts = "alert" if len(notices) == 1 else "alerts"
        return f"Customer health: {more} {alerts} over the daily limit of {limit}"
    return f"Customer health: {more} over the daily limit of {limit} ({counts})"


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def one_line(text: str) -> str:
    """Line breaks and runs of spaces as single spaces (subjects, headers, fallbacks)."""
    return " ".join(text.split())
