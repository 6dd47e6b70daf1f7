"""Accounts as the API shows them: a filtered, sorted list with score sparklines, the same
list as a CSV export, and one account in detail (indicators, drivers, coverage, 90-day
history). Every call is scoped to one connection: another connection's account does not exist
here."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, create_model

from connector import bounds
from signals.config import HealthConfig
from signals.explain import breakdown
from signals.model import Band, Health, Unit
from signals.registry import SIGNAL_NAMES
from signals.scoring import score
from webhooks.alerts.rules import attribute_value, parse_renewal_date
from webhooks.errors import InvalidFields, NotFound
from webhooks.store import account_story, account_views, configs, facts, owners
from webhooks.store.account_views import AccountFilter, Point, SortKey
from webhooks.store.db import SessionFactory
from webhooks.store.models import AccountRow, SentimentFact

HISTORY_DAYS = 90
CONTACTS_LIMIT = 200
LAST_INTERACTION_DAYS = 365
SENTIMENT_HISTORY = 20
BANDS = tuple(band.value for band in Band)
# The longest renewal window a filter takes (ten years).
MAX_RENEWAL_DAYS = 3650
# Accounts an export reads at a time.
EXPORT_PAGE = 1000
CSV_COLUMNS = (
    "id", "name", "band", "score", "trend_30d", "arr", "currency", "renewal_date", "segment",
    "owner", "owner_name", "updated_at", "record_url",
)  # fmt: skip

# A link to a record in the connection's CRM by record id (None: the CRM's address is unknown).
RecordLink = Callable[[str], str | None]


def no_link(_record_id: str) -> str | None:
    """The link of a connection without a CRM address (or none configured)."""
    return None


if TYPE_CHECKING:
    Signals = BaseModel
else:
    # Each registered signal's score, 0..100 or null: {"active_use": 62.5, ...}.
    Signals = create_model("Signals", **dict.fromkeys(SIGNAL_NAMES, (float | None, None)))


class CoverageOut(BaseModel):
    ratio: float | None = Field(description="Share of the configured weight that had data.")
    signals: list[str] = Field(description="Signals that had data.")
    indicators: list[str] = Field(description='Indicators that had data, as "signal.indicator".')


class AccountItem(BaseModel):
    id: str = Field(description="The CRM record id.")
    name: str | None = Field(description="The account's name in the CRM (untrusted text).")
    score: int | None = Field(description="0..100, null without data.")
    band: str = Field(
        description="healthy, neutral, at_risk, unknown (too little evidence, or not a "
        "customer) or onboarding (a customer younger than the onboarding period)."
    )
    customer: bool = Field(
        description="False: not a customer by the configured customer rule, so not scored, "
        "not alerted on, and its CRM health fields are left empty."
    )
    signals: Signals
    custom_signals: dict[str, float | None] = Field(
        description="The configuration's custom signals (custom_signals), 0..100 or null each."
    )
    drivers: list[str] = Field(
        description='What costs the score points, most first (the "why" text).'
    )
    coverage: CoverageOut
    updated_at: datetime | None = Field(
        description="When the account's health last changed (a rescore giving the same health "
        "leaves it as it was)."
    )
    trend_30d: int | None = Field(description="Score change over 30 days, as last scored.")
    segment: str | None = Field(description="The segment attribute.")
    owner: str | None = Field(description="The owner attribute (the CRM's owner id).")
    owner_name: str | None = Field(
        description="The owner's name as the CRM last gave it (the owner routing's cache); "
        "null when not known."
    )
    arr: float | None = Field(
        description="Annual recurring revenue (the arr attribute), in the service's currency; "
        "null when absent or unreadable."
    )
    renewal_date: date | None = Field(
        description="The next renewal (the renewal_date attribute); null when absent or unreadable."
    )
    record_url: str | None = Field(
        description="A link to the record in the CRM; null when the CRM's address is not known."
    )
    sparkline: list[tuple[date, int | None]] = Field(
        description="The last 90 days of scores: [day, score] per day the score changed, "
        "starting with the score in force 90 days ago and ending today."
    )


class AccountPage(BaseModel):
    items: list[AccountItem] = Field(description="This page of the matching accounts.")
    total: int = Field(description="How many accounts match in all.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="Accounts skipped before this page.")


class IndicatorOut(BaseModel):
    name: str
    label: str
    unit: Unit = Field(
        description="How the raw value reads: percent (a 0..1 ratio shown as 62%), change (a "
        "relative change shown as +5% / -30%), days, count, number."
    )
    explanation: str = Field(description="One plain line: what the number is, which way is good.")
    raw: float | None = Field(
        description="The measured value (ratio, days, count...); null: no data."
    )
    score: float | None = Field(description="0..100 after the thresholds; null: no data.")
    weight: float = Field(
        description="Share of the composite score this indicator carries (the same as share; "
        "kept for older clients)."
    )
    share: float = Field(description="Its share of the composite score, 0..1; 0 without data.")
    points: float = Field(
        description="The points it contributes to the 0..100 composite: share x score (the "
        "indicators' points add up to the unrounded score)."
    )
    at_risk: float = Field(
        description="The raw value scoring 0, as in force for this account (after its segment "
        "override)."
    )
    healthy: float = Field(description="The raw value scoring 100, as in force for this account.")
    weight_in_signal: float = Field(description="Its weight within its signal, as configured.")


class ConfigChangeOut(BaseModel):
    at: datetime
    version: int = Field(description="The version's id (GET /api/v1/config/versions/{id}).")
    author: str
    comment: str


class ContactOut(BaseModel):
    contact: str = Field(description="The contact as the source names it (untrusted text).")
    title: str | None = Field(description="Job title (untrusted text).")
    executive: bool
    first_seen_at: datetime | None = Field(description="When the contact was first told of.")
    left_at: datetime | None = Field(description="When the contact left; null: still there.")
    last_interaction_at: datetime | None = Field(
        description=f"The latest interaction with the contact in the last "
        f"{LAST_INTERACTION_DAYS} days; null: none."
    )


class HistoryPoint(BaseModel):
    at: datetime
    score: int | None
    band: str
    config_change: bool = Field(
        default=False,
        description="The scoring configuration changed here (score and band were computed "
        "under another configuration than the point before): a move at this point may be the "
        "configuration's, not the customer's.",
    )


class Attributes(BaseModel):
    name: str | None
    seats: int | None
    arr: float | None
    renewal_date: date | None
    segment: str | None
    owner: str | None
    domain: str | None


class SentimentRecord(BaseModel):
    rating: str | None = Field(description="red, amber, green; null: cleared.")
    reason: str | None
    note: str | None = Field(description="The CSM's own words (untrusted text).")
    author: str
    at: datetime = Field(description="When it was set or cleared.")
    until: datetime | None = Field(description="When it ends (null for a clearing).")


class AccountDetail(AccountItem):
    currency: str = Field(
        description="ISO 4217 code of the currency arr is in (CRM_HEALTH_CURRENCY)."
    )
    indicators: dict[str, list[IndicatorOut]] = Field(
        description="Per signal (every signal of the configuration), the indicators it counts "
        "(weight above 0, in a signal weighing above 0): those with data first, then those "
        "without (raw and score null, share and points 0), each in the configuration's order. "
        "Measured now from the account's facts with the configuration in force (read-only)."
    )
    indicators_as_of: datetime
    custom_signal_labels: dict[str, str] = Field(
        description="The labels of the configuration's custom signals, by name."
    )
    history: list[HistoryPoint] = Field(
        description="90 days of health changes, oldest first; the first point is the state in "
        "force 90 days ago, where there was one."
    )
    attributes: Attributes
    alerts_open: int = Field(description="Alerts reading as open (not acknowledged, snoozed "
                             "or resolved).")  # fmt: skip
    deleted_at: datetime | None
    not_found_in_crm: datetime | None = Field(
        description="When a write-back found no such record in the CRM (null: it has it). "
        "Such an account is neither scored, listed nor written back until the CRM sends it."
    )
    not_found_reason: str | None = Field(description="The CRM's answer, when not found.")
    sentiment: SentimentRecord | None = Field(
        description="The CSM sentiment in force now (none set, cleared or ended: null)."
    )
    sentiment_history: list[SentimentRecord] = Field(
        description=f"The last {SENTIMENT_HISTORY} sentiments set or cleared, newest first."
    )
    config_changes: list[ConfigChangeOut] = Field(
        description=f"Configuration versions applied in the last {HISTORY_DAYS} days that apply "
        "to the account's connection, oldest first (markers for the history chart)."
    )
    contacts: list[ContactOut] = Field(
        description=f"The contacts still there and those who left in the last {HISTORY_DAYS} "
        f"days: executives first, then by latest interaction; at most {CONTACTS_LIMIT}."
    )
    contacts_total: int = Field(description="How many contacts that is in all.")


@dataclass(frozen=True, kw_only=True)
class AccountQuery:
    """The list's filters and sort as asked (the list, its CSV export and the portfolio share
    them); empty and None mean "any". `account_filter` checks and reads them."""

    bands: Collection[str] = ()
    customer: bool | None = None
    segments: Collection[str] = ()
    owners: Collection[str] = ()
    score_min: int | None = None
    score_max: int | None = None
    trend: account_views.Trend | None = None
    name_contains: str | None = None
    renewal_within_days: int | None = None
    sort: SortKey = "score"


def account_filter(query: AccountQuery, *, connection: str, today: date) -> AccountFilter:
    """What `query` selects among the connection's live accounts; InvalidFields naming the
    field for a value that cannot be (an unknown band, score_min above score_max...)."""
    if (
        query.score_min is not None
        and query.score_max is not None
        and query.score_min > query.score_max
    ):
        raise InvalidFields("score_min, score_max: score_min must not be above score_max")
    within = query.renewal_within_days
    if within is not None and not 0 <= within <= MAX_RENEWAL_DAYS:
        raise InvalidFields(f"renewal_within_days: from 0 to {MAX_RENEWAL_DAYS} (got {within})")
    segments, owners_named = _split(query.segments), _split(query.owners)
    for field, values in (
        ("segment", segments),
        ("owner", owners_named),
        ("q", [query.name_contains] if query.name_contains else []),
    ):
        # Text no database can compare with (a NUL: PostgreSQL refuses the whole statement).
        problem = next(filter(None, map(bounds.text_problem, values)), None)
        if problem is not None:
            raise InvalidFields(f"{field}: {problem}")
    return AccountFilter(
        connection=connection,
        bands=parse_bands(query.bands),
        customer=query.customer,
        segments=segments,
        owners=owners_named,
        score_min=query.score_min,
        score_max=query.score_max,
        trend=query.trend,
        name_contains=query.name_contains or None,
        renewal_from=None if within is None else today,
        renewal_to=None if within is None else today + timedelta(days=within),
    )


def parse_bands(values: Iterable[str]) -> list[str]:
    """`band=a&band=b` and `band=a,b` alike; an unknown band is a 422 naming the field."""
    bands = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = sorted({band for band in bands if band not in BANDS})
    if unknown:
        raise InvalidFields(
            f"band: unknown value {', '.join(map(repr, unknown))} (expected {', '.join(BANDS)})"
        )
    return bands


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _signals(account: AccountRow) -> Signals:
    stored = account.signals or {}
    return Signals.model_validate({name: stored.get(name) for name in SIGNAL_NAMES})


def _custom_signals(account: AccountRow) -> dict[str, float | None]:
    stored = account.signals or {}
    return {name: value for name, value in stored.items() if name not in SIGNAL_NAMES}


def _coverage(account: AccountRow) -> CoverageOut:
    stored = account.coverage or {}
    return CoverageOut(
        ratio=stored.get("ratio"),
        signals=list(stored.get("signals") or []),
        indicators=list(stored.get("indicators") or []),
    )


def _sparkline(
    points: Sequence[Point], account: AccountRow, now: datetime
) -> list[tuple[date, int | None]]:
    by_day: dict[date, int | None] = {}
    for point in points:
        by_day[point.at.date()] = point.score  # the day's last score wins
    today = now.date()
    if by_day and max(by_day) < today:
        by_day[today] = account.score
    return sorted(by_day.items())


def _item(
    account: AccountRow,
    points: Sequence[Point],
    now: datetime,
    *,
    names: dict[str, str],
    record_url: RecordLink,
) -> AccountItem:
    return AccountItem(
        id=account.crm_id,
        name=account.name,
        score=account.score,
        band=account.band,
        customer=account.customer,
        signals=_signals(account),
        custom_signals=_custom_signals(account),
        drivers=list(account.drivers or []),
        coverage=_coverage(account),
        updated_at=account.health_updated_at,
        trend_30d=account.trend_30d,
        segment=account.segment,
        owner=account.owner,
        owner_name=None if account.owner is None else names.get(account.owner),
        arr=account.arr,
        renewal_date=account.renewal_date,
        record_url=record_url(account.crm_id),
        sparkline=_sparkline(points, account, now),
    )


async def list_accounts(
    sessions: SessionFactory,
    *,
    connection: str,
    query: AccountQuery,
    limit: int,
    offset: int,
    now: datetime,
    record_url: RecordLink = no_link,
) -> AccountPage:
    """The connection's live accounts matching every filter given, sorted, one page."""
    where = account_filter(query, connection=connection, today=now.astimezone(UTC).date())
    async with sessions() as session:
        rows, total = await account_views.page(
            session, where=where, sort=query.sort, limit=limit, offset=offset
        )
        points = await account_views.history(
            session, account_ids=[a.id for a in rows], since=now - timedelta(days=HISTORY_DAYS)
        )
        names = await owners.owner_names(
            session, connection=connection, owner_ids=[a.owner for a in rows]
        )
    return AccountPage(
        items=[
            _item(account, points.get(account.id, []), now, names=names, record_url=record_url)
            for account in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _attributes(account: AccountRow) -> Attributes:
    stored = account.attributes
    seats = _number(attribute_value(stored, "seats"))
    return Attributes(
        name=account.name,
        seats=None if seats is None else int(seats),
        arr=_number(attribute_value(stored, "arr")),
        renewal_date=parse_renewal_date(attribute_value(stored, "renewal_date")),
        segment=account.segment,
        owner=account.owner,
        domain=account.domain,
    )


async def get_account(
    sessions: SessionFactory,
    *,
    connection: str,
    record_id: str,
    now: datetime,
    record_url: RecordLink = no_link,
    currency: str = "USD",
) -> AccountDetail:
    """One account in detail; NotFound for a record id the connection does not have."""
    async with sessions() as session:
        account = await account_views.find(session, connection=connection, crm_id=record_id)
        if account is None:
            raise NotFound(f"no account {record_id!r}")
        points = await account_views.history(
            session, account_ids=[account.id], since=now - timedelta(days=HISTORY_DAYS)
        )
        _, config = await configs.current(session)
        snapshot = (
            await facts.read_facts(
                session,
                accounts=[account],
                as_of=now,
                reads=config.fact_reads,
            )
        )[account.id]
        alerts_open = await account_views.open_alerts(session, account_id=account.id, now=now)
        judged = await account_views.sentiment_history(
            session, account_id=account.id, limit=SENTIMENT_HISTORY
        )
        since = now - timedelta(days=HISTORY_DAYS)
        changes = await account_story.config_changes(
            session, connection=connection, since=since, until=now
        )
        people, people_total = await account_story.contacts(
            session,
            account_id=account.id,
            left_since=since,
            interactions_since=now - timedelta(days=LAST_INTERACTION_DAYS),
            limit=CONTACTS_LIMIT,
        )
        names = await owners.owner_names(session, connection=connection, owner_ids=[account.owner])
    # Measured again, never stored: only the indicators are read from this health.
    in_force = config.for_connection(connection)
    measured = score(snapshot, in_force, previous_band=Band(account.band))
    indicators = _indicators(measured, in_force)
    mine = points.get(account.id, [])
    return AccountDetail(
        **_item(account, mine, now, names=names, record_url=record_url).model_dump(),
        currency=currency,
        indicators=indicators,
        indicators_as_of=now,
        custom_signal_labels={signal.name: signal.label for signal in config.custom_signals},
        history=[
            HistoryPoint(
                at=p.at,
                score=p.score,
                band=p.band,
                config_change=index > 0
                and p.config_version is not None
                and mine[index - 1].config_version is not None
                and p.config_version != mine[index - 1].config_version,
            )
            for index, p in enumerate(mine)
        ],
        attributes=_attributes(account),
        alerts_open=alerts_open,
        deleted_at=account.deleted_at,
        not_found_in_crm=account.not_found_at,
        not_found_reason=account.not_found_reason,
        # In force: the latest one set, when the facts say it holds.
        sentiment=_record(judged[0]) if snapshot.sentiment is not None and judged else None,
        sentiment_history=[_record(row) for row in judged],
        config_changes=[
            ConfigChangeOut(at=c.at, version=c.version, author=c.author, comment=c.comment)
            for c in changes
        ],
        contacts=[ContactOut(**asdict(person)) for person in people],
        contacts_total=people_total,
    )


def _indicators(measured: Health, config: HealthConfig) -> dict[str, list[IndicatorOut]]:
    """Per signal, the indicators the configuration counts, as measured (signals.explain)."""
    return {
        signal.name: [
            IndicatorOut(
                name=m.entry.name,
                label=m.entry.spec.label,
                unit=m.entry.spec.unit,
                explanation=m.entry.spec.explanation,
                raw=None if m.raw is None else round(m.raw, 4),
                score=None if m.score is None else round(m.score, 1),
                weight=round(m.share, 4),
                share=round(m.share, 4),
                points=round(m.points, 2),
                at_risk=m.entry.at_risk,
                healthy=m.entry.healthy,
                weight_in_signal=m.entry.weight,
            )
            for m in lines
        ]
        for signal, lines in breakdown(measured, config)
    }


def _record(row: SentimentFact) -> SentimentRecord:
    return SentimentRecord(
        rating=row.rating,
        reason=row.reason,
        note=row.note,
        author=row.author,
        at=row.at,
        until=row.until,
    )


# --- the CSV export -----------------------------------------------------------------------------

# A cell starting with one of these is a formula to a spreadsheet (a tab or carriage return
# also hides what follows): CRM text is untrusted, so such a cell is written as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str | None) -> str:
    """A text cell as written: formulas neutralised with a leading apostrophe."""
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_number(value: float | None) -> float | int | str:
    if value is None:
        return ""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _csv_row(
    account: AccountRow, *, currency: str, names: dict[str, str], record_url: RecordLink
) -> list[object]:
    updated = account.health_updated_at
    return [
        csv_text(account.crm_id),
        csv_text(account.name),
        csv_text(account.band),
        "" if account.score is None else account.score,
        "" if account.trend_30d is None else account.trend_30d,
        _csv_number(account.arr),
        currency,
        "" if account.renewal_date is None else account.renewal_date.isoformat(),
        csv_text(account.segment),
        csv_text(account.owner),
        csv_text(None if account.owner is None else names.get(account.owner)),
        "" if updated is None else updated.isoformat(),
        csv_text(record_url(account.crm_id)),
    ]


def export_csv(
    sessions: SessionFactory,
    *,
    connection: str,
    query: AccountQuery,
    now: datetime,
    currency: str,
    record_url: RecordLink = no_link,
) -> AsyncIterator[str]:
    """Every account the list would show for `query`, in its order, as CSV text (a header
    row, then a chunk per EXPORT_PAGE accounts). The query is checked here, before anything is
    sent: InvalidFields as the list raises it."""
    where = account_filter(query, connection=connection, today=now.astimezone(UTC).date())
    return _csv_chunks(
        sessions, where=where, sort=query.sort, currency=currency, record_url=record_url
    )


async def _csv_chunks(
    sessions: SessionFactory,
    *,
    where: AccountFilter,
    sort: SortKey,
    currency: str,
    record_url: RecordLink,
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    # Sorted once; each page then has a short read of its own, so a slow download holds no
    # transaction open.
    async with sessions() as session:
        ids = await account_views.matching_ids(session, where=where, sort=sort)
    for start in range(0, len(ids), EXPORT_PAGE):
        async with sessions() as session:
            rows = await account_views.rows_by_id(session, ids=ids[start : start + EXPORT_PAGE])
            names = await owners.owner_names(
                session, connection=where.connection, owner_ids=[a.owner for a in rows]
            )
        buffer.seek(0)
        buffer.truncate()
        for account in rows:
            writer.writerow(
                _csv_row(account, currency=currency, names=names, record_url=record_url)
            )
        yield buffer.getvalue()
