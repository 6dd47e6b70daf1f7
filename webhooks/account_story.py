"""The account page's story, read-only: the catalog of what is measured (labels, units,
explanations, thresholds in force), why an account's score moved between two moments, and its
week-by-week timeline with the things that happened. Every call is scoped to one connection:
another connection's account does not exist here."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from signals.catalog import catalog
from signals.config import FactReads, HealthConfig
from signals.explain import BAND_LABELS, Movement, movement, rounded
from signals.model import AccountFacts, Band, Rating, Sentiment, Unit
from webhooks.errors import InvalidFields, NotFound
from webhooks.store import account_story, account_views, configs, facts
from webhooks.store.db import SessionFactory
from webhooks.store.models import AccountRow

# --- the catalog --------------------------------------------------------------------------------


class IndicatorInfo(BaseModel):
    name: str
    label: str
    unit: Unit = Field(
        description="How the raw value reads: percent (a 0..1 ratio shown as 62%), change (a "
        "relative change shown as +5% / -30%), days, count, number (one or two decimals)."
    )
    explanation: str = Field(description="One plain line: what the number is, which way is good.")
    at_risk: float = Field(description="The raw value scoring 0.")
    healthy: float = Field(
        description="The raw value scoring 100 (below at_risk: lower is better)."
    )
    weight: float = Field(description="Its weight within its signal (0: switched off).")
    optional: bool = Field(description="An account without its data is not short of coverage.")
    custom: bool = Field(description="An indicator of the configuration's own (custom_indicators).")


class SignalInfo(BaseModel):
    name: str
    label: str
    description: str
    question: str
    custom: bool = Field(description="A signal of the configuration's own (custom_signals).")
    weight: float = Field(description="Its weight in the composite score (0: switched off).")
    indicators: list[IndicatorInfo]


class IndicatorCatalog(BaseModel):
    signals: list[SignalInfo]


def catalog_of(config: HealthConfig) -> IndicatorCatalog:
    return IndicatorCatalog(
        signals=[
            SignalInfo(
                name=signal.name,
                label=signal.label,
                description=signal.description,
                question=signal.question,
                custom=signal.custom,
                weight=signal.weight,
                indicators=[
                    IndicatorInfo(
                        name=entry.name,
                        label=entry.spec.label,
                        unit=entry.spec.unit,
                        explanation=entry.spec.explanation,
                        at_risk=entry.at_risk,
                        healthy=entry.healthy,
                        weight=entry.weight,
                        optional=entry.spec.optional,
                        custom=entry.custom,
                    )
                    for entry in signal.indicators
                ],
            )
            for signal in catalog(config)
        ]
    )


async def indicator_catalog(sessions: SessionFactory, *, connection: str) -> IndicatorCatalog:
    """Every signal and indicator of the configuration in force for `connection` (the global
    one with the connection's settings; no segment override), custom ones included."""
    async with sessions() as session:
        _, config = await configs.current(session)
    return catalog_of(config.for_connection(connection))


# --- why it moved -------------------------------------------------------------------------------

DEFAULT_SPAN = timedelta(days=30)
MAX_BACK = timedelta(days=400)
# An end this far past the clock is still "now" (clocks of caller and service differ).
FUTURE_SLACK = timedelta(minutes=1)


class MovementMoment(BaseModel):
    at: datetime
    score: int | None = Field(description="Scored from the facts as of then; null: no score.")
    band: str = Field(description="The band of that score (no hysteresis: scored on its own).")
    config_version: int | None = Field(
        description="The configuration version in force then (GET /api/v1/config/versions/{id}); "
        "null: the built-in defaults."
    )


class SignalMove(BaseModel):
    signal: str
    label: str
    points: float = Field(description="Its indicators' points added up.")


class IndicatorMove(BaseModel):
    signal: str
    name: str
    label: str
    unit: Unit
    before: float | None = Field(description="The raw value at the start; null: no data.")
    after: float | None = Field(description="The raw value at the end; null: no data.")
    score_before: float | None
    score_after: float | None
    share_before: float = Field(description="Its share of the composite at the start, 0..1.")
    share_after: float
    points: float = Field(
        description="Its contribution (share x score) at the end minus at the start."
    )
    text: str


class MovementOut(BaseModel):
    start: MovementMoment
    end: MovementMoment
    change: int | None = Field(description="end.score - start.score; null without both.")
    configuration_points: float = Field(
        description="What the configuration change did: the end's facts scored under the end's "
        "configuration minus under the start's (0 when it did not change)."
    )
    configuration_changed: bool
    other_points: float | None = Field(
        description="What is left: rounding each score to whole points (and the rounding of the "
        "parts to 0.1). configuration_points + the signals' points + other_points = change."
    )
    other_text: str | None
    signals: list[SignalMove] = Field(
        description="Every signal of the start's configuration, with its indicators' points."
    )
    indicators: list[IndicatorMove] = Field(
        description="The indicators that moved the score by 0.05 points or more, largest first."
    )
    summary: str


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime


def parse_moment(value: str | None, *, name: str) -> datetime | None:
    """An ISO 8601 date (its midnight, UTC) or date and time (UTC when it names no offset);
    InvalidFields naming the parameter otherwise."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidFields(
            f"{name}: not an ISO 8601 date or date and time (2026-10-01, 2026-10-01T09:30:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidFields(f"{name}: out of range (years 1 to 9999 in UTC)") from None


def movement_window(*, start: str | None, end: str | None, now: datetime) -> Window:
    """The two moments asked for, checked: end by default now, start by default 30 days
    before end; start before end, end not in the future, start at most 400 days back."""
    last = parse_moment(end, name="end") or now
    first = parse_moment(start, name="start")
    if last > now + FUTURE_SLACK:
        raise InvalidFields("end: must not be in the future")
    if last <= now - MAX_BACK:
        raise InvalidFields(f"end: must be within the last {MAX_BACK.days} days, as start must")
    if first is None:
        first = last - DEFAULT_SPAN
    if first >= last:
        raise InvalidFields("start: must be before end")
    if first < now - MAX_BACK:
        raise InvalidFields(f"start: at most {MAX_BACK.days} days back")
    return Window(first, last)


def _merged(first: HealthConfig, second: HealthConfig) -> FactReads:
    """`second`'s reads with `first`'s custom sources too: one read of a moment serves both."""
    sources = {s.key: s for s in (*second.fact_reads.sources, *first.fact_reads.sources)}
    return FactReads(key_features=second.fact_reads.key_features, sources=tuple(sources.values()))


async def account_movement(
    sessions: SessionFactory,
    *,
    connection: str,
    record_id: str,
    start: str | None,
    end: str | None,
    now: datetime,
) -> MovementOut:
    """Why the account's score moved between two moments (see signals.explain.movement); each
    moment scored from its facts with the configuration in force then, read-only. NotFound
    for a record id the connection does not have."""
    window = movement_window(start=start, end=end, now=now)
    async with sessions() as session:
        account = await _account(session, connection=connection, record_id=record_id)
        start_id, first = await account_story.config_at(session, at=window.start)
        end_id, last = await account_story.config_at(session, at=window.end)
        start_config, end_config = first.for_connection(connection), last.for_connection(connection)
        historical = window.end < now - FUTURE_SLACK

        async def facts_at(at: datetime, *, past: bool, reads: FactReads) -> AccountFacts:
            found = await facts.read_facts(
                session, accounts=[account], as_of=at, historical=past, reads=reads
            )
            return found[account.id]

        start_facts = await facts_at(window.start, past=True, reads=start_config.fact_reads)
        end_facts = await facts_at(
            window.end, past=historical, reads=_merged(start_config, end_config)
        )
        end_for_start = None
        if start_config.fact_reads.key_features != end_config.fact_reads.key_features:
            # Other key features are another adoption figure: the end read for each.
            end_for_start = await facts_at(
                window.end, past=historical, reads=start_config.fact_reads
            )
    found = rounded(
        movement(
            start=start_facts,
            end=end_facts,
            start_config=start_config,
            end_config=end_config,
            end_for_start_config=end_for_start,
        )
    )
    return _movement_out(found, start_id=start_id, end_id=end_id)


async def _account(session: Any, *, connection: str, record_id: str) -> AccountRow:
    account = await account_views.find(session, connection=connection, crm_id=record_id)
    if account is None:
        raise NotFound(f"no account {record_id!r}")
    return account


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _movement_out(found: Movement, *, start_id: int | None, end_id: int | None) -> MovementOut:
    return MovementOut(
        start=MovementMoment(
            at=found.start.at,
            score=found.start.score,
            band=found.start.band.value,
            config_version=start_id,
        ),
        end=MovementMoment(
            at=found.end.at, score=found.end.score, band=found.end.band.value, config_version=end_id
        ),
        change=found.change,
        configuration_points=found.configuration_points,
        configuration_changed=found.configuration_changed,
        other_points=found.other_points,
        other_text=found.other_text,
        signals=[
            SignalMove(signal=part.signal, label=part.label, points=part.points)
            for part in found.signals
        ],
        indicators=[
            IndicatorMove(
                signal=part.signal,
                name=part.name,
                label=part.label,
                unit=part.unit,
                before=_r(part.before, 4),
                after=_r(part.after, 4),
                score_before=_r(part.score_before, 1),
                score_after=_r(part.score_after, 1),
                share_before=round(part.share_before, 4),
                share_after=round(part.share_after, 4),
                points=part.points,
                text=part.text,
            )
            for part in found.indicators
        ],
        summary=found.summary,
    )


# --- the timeline -------------------------------------------------------------------------------

EVENT_LIMIT = 300
EventKind = Literal[
    "interaction", "ticket", "collaboration", "contact_gained", "contact_left", "survey",
    "sentiment", "band_change", "config_change", "outcome", "alert",
]  # fmt: skip


class Week(BaseModel):
    week: date = Field(description="Its Monday (weeks run Monday to Sunday, UTC).")
    active_users: int = Field(description="Distinct people who used the product that week.")
    interactions_ours: int = Field(description="Interactions we started.")
    interactions_customer: int = Field(description="Interactions the customer started.")
    tickets: int = Field(description="Support tickets opened.")
    escalations: int = Field(description="Of those, high or urgent ones.")
    collaborations: int = Field(description="Co-innovation events (feedback, betas...).")


class TimelineEvent(BaseModel):
    at: datetime
    kind: EventKind
    text: str = Field(
        description="One plain sentence. CRM and people's text in it is untrusted: show it as "
        "text, never as markup."
    )
    detail: dict[str, Any] = Field(description="The event's own fields, by kind.")


class Timeline(BaseModel):
    days: int
    weeks: list[Week] = Field(
        description="Every week of the window, oldest first, zeros included; the first starts "
        "on the Monday on or before the window's first day, the last is the current week."
    )
    events: list[TimelineEvent] = Field(
        description=f"What happened in the window, newest first; at most {EVENT_LIMIT}."
    )
    truncated: bool = Field(description=f"More than {EVENT_LIMIT} events: the oldest left out.")


def _weeks(today: date, days: int) -> list[date]:
    first = today - timedelta(days=days - 1)
    monday = first - timedelta(days=first.weekday())
    return [monday + timedelta(weeks=n) for n in range((today - monday).days // 7 + 1)]


async def account_timeline(
    sessions: SessionFactory, *, connection: str, record_id: str, days: int, now: datetime
) -> Timeline:
    """The account's last `days` days week by week, and the things that happened in them.
    NotFound for a record id the connection does not have."""
    today = now.astimezone(UTC).date()
    weeks = _weeks(today, days)
    since = now - timedelta(days=days)
    async with sessions() as session:
        account = await _account(session, connection=connection, record_id=record_id)
        counted = await account_story.daily_counts(
            session,
            account_id=account.id,
            since=datetime.combine(weeks[0], time.min, tzinfo=UTC),
            until=now,
        )
        users = await account_story.weekly_active_users(
            session, account_id=account.id, weeks=weeks, until=today
        )
        stored = await account_story.events(
            session, account_id=account.id, since=since, until=now, limit=EVENT_LIMIT + 1
        )
        points = (await account_views.history(session, account_ids=[account.id], since=since)).get(
            account.id, []
        )
        changes = await account_story.config_changes(
            session, connection=connection, since=since, until=now
        )
    rows = {week: Week(week=week, active_users=users.get(week, 0), interactions_ours=0,
                       interactions_customer=0, tickets=0, escalations=0, collaborations=0)
            for week in weeks}  # fmt: skip
    for day, counts in counted.items():
        week = rows.get(day - timedelta(days=day.weekday()))
        if week is not None:
            week.interactions_ours += counts.interactions_ours
            week.interactions_customer += counts.interactions_customer
            week.tickets += counts.tickets
            week.escalations += counts.escalations
            week.collaborations += counts.collaborations
    found = [_event(event) for event in stored]
    found.extend(_band_changes(points))
    found.extend(
        TimelineEvent(
            at=change.at,
            kind="config_change",
            text=f"Configuration changed by {change.author}"
            + (f": {change.comment}" if change.comment else ""),
            detail={"version": change.version, "author": change.author, "comment": change.comment},
        )
        for change in changes
    )
    found.sort(key=lambda event: event.at, reverse=True)
    return Timeline(
        days=days,
        weeks=list(rows.values()),
        events=found[:EVENT_LIMIT],
        truncated=len(found) > EVENT_LIMIT,
    )


def _band_changes(points: list[account_views.Point]) -> list[TimelineEvent]:
    found = []
    for before, after in itertools.pairwise(points):
        if before.band == after.band:
            continue
        was, now = Band(before.band), Band(after.band)
        found.append(
            TimelineEvent(
                at=after.at,
                kind="band_change",
                text=f"Band: {BAND_LABELS[was]} \N{RIGHTWARDS ARROW} {BAND_LABELS[now]} "
                f"(score {_score(before.score)} \N{RIGHTWARDS ARROW} {_score(after.score)})",
                detail={
                    "band_before": before.band,
                    "band_after": after.band,
                    "score_before": before.score,
                    "score_after": after.score,
                },
            )
        )
    return found


def _score(value: int | None) -> str:
    return "none" if value is None else str(value)


_CHANNELS = {"email": "Email", "call": "Call", "meeting": "Meeting", "note": "Note"}
_DIRECTIONS = {"ours": "we reached out", "customer": "they reached out"}
_COLLABORATIONS = {
    "feedback": "Feedback",
    "feature_request": "Feature request",
    "beta": "Beta",
    "referral": "Referral",
    "case_study": "Case study",
    "joint_plan": "Joint plan",
}
_OUTCOMES = {"renewed": "Renewed", "churned": "Churned"}


def _words(value: str) -> str:
    text = value.replace("_", " ")
    return text[:1].upper() + text[1:]


def _person(contact: str, title: str | None, executive: bool) -> str:
    about = [part for part in (title, "executive" if executive else None) if part]
    return f"{contact} ({', '.join(about)})" if about else contact


def _event(event: account_story.StoredEvent) -> TimelineEvent:
    v = event.values
    text: str
    match event.kind:
        case "interaction":
            channel = _CHANNELS.get(v["channel"], _words(v["channel"]))
            who = f"{channel} with {v['contact']}" if v["contact"] else channel
            text = f"{who} \N{EM DASH} {_DIRECTIONS.get(v['direction'], v['direction'])}"
        case "ticket":
            text = f"Ticket {v['ticket']} opened ({v['priority']})"
        case "collaboration":
            text = _COLLABORATIONS.get(v["kind"], _words(v["kind"]))
        case "contact_gained":
            text = f"Contact gained: {_person(v['contact'], v['title'], v['executive'])}"
        case "contact_left":
            text = f"Contact left: {_person(v['contact'], v['title'], v['executive'])}"
        case "survey":
            text = f"{v['kind'].upper()} answer {v['score']:g} from {v['respondent']}"
        case "sentiment":
            text = _sentiment_text(v)
        case "outcome":
            text = _OUTCOMES.get(v["outcome"], _words(v["outcome"]))
            if v["arr"] is not None:
                text += f" (ARR {v['arr']:,.0f})"
        case _:  # alert
            text = f"Alert: {v['title']}"
    return TimelineEvent(at=event.at, kind=event.kind, text=text, detail=v)


def _sentiment_text(values: dict[str, Any]) -> str:
    """As the drivers say it ("CSM: red, champion left (A. Kim, until 2027-01-15)")."""
    rating, until = values["rating"], values["until"]
    if rating is None or until is None:
        return f"CSM sentiment cleared ({values['author']})"
    if rating not in Rating._value2member_map_:
        return f"CSM: {rating} ({values['author']})"
    return Sentiment(
        rating=Rating(rating), reason=values["reason"] or "", author=values["author"], until=until
    ).text
