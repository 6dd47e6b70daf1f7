"""Accounts as the API shows them: a filtered, sorted list with score sparklines, and one
account in detail (indicators, drivers, coverage, 90-day history). Every call is scoped to one
connection: another connection's account does not exist here."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, create_model

from signals.model import Band
from signals.registry import SIGNAL_NAMES
from signals.scoring import score
from webhooks.alerts.rules import attribute_value, parse_renewal_date
from webhooks.errors import InvalidFields, NotFound
from webhooks.store import account_views, configs, facts
from webhooks.store.account_views import AccountFilter, Point, SortKey
from webhooks.store.db import SessionFactory
from webhooks.store.models import AccountRow, SentimentFact

HISTORY_DAYS = 90
SENTIMENT_HISTORY = 20
BANDS = tuple(band.value for band in Band)


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
    name: str | None
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
    drivers: list[str]
    coverage: CoverageOut
    updated_at: datetime | None = Field(
        description="When the account's health last changed (a rescore giving the same health "
        "leaves it as it was)."
    )
    trend_30d: int | None = Field(description="Score change over 30 days, as last scored.")
    segment: str | None
    owner: str | None
    sparkline: list[tuple[date, int | None]] = Field(
        description="The last 90 days of scores: [day, score] per day the score changed, "
        "starting with the score in force 90 days ago and ending today."
    )


class AccountPage(BaseModel):
    items: list[AccountItem]
    total: int
    limit: int
    offset: int


class IndicatorOut(BaseModel):
    name: str
    raw: float = Field(description="The measured value (ratio, days, count...).")
    score: float = Field(description="0..100 after the configured thresholds.")
    weight: float = Field(description="Share of the composite score this indicator carries.")


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
    indicators: dict[str, list[IndicatorOut]] = Field(
        description="Per signal, its indicators with data: measured now from the account's "
        "facts with the configuration in force (read-only)."
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


def _item(account: AccountRow, points: Sequence[Point], now: datetime) -> AccountItem:
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
        sparkline=_sparkline(points, account, now),
    )


async def list_accounts(
    sessions: SessionFactory,
    *,
    connection: str,
    bands: Collection[str],
    segments: Collection[str],
    owners: Collection[str],
    score_min: int | None,
    customer: bool | None = None,
    score_max: int | None,
    trend: account_views.Trend | None,
    name_contains: str | None,
    sort: SortKey,
    limit: int,
    offset: int,
    now: datetime,
) -> AccountPage:
    """The connection's live accounts matching every filter given, sorted, one page."""
    if score_min is not None and score_max is not None and score_min > score_max:
        raise InvalidFields("score_min, score_max: score_min must not be above score_max")
    where = AccountFilter(
        connection=connection,
        bands=parse_bands(bands),
        customer=customer,
        segments=_split(segments),
        owners=_split(owners),
        score_min=score_min,
        score_max=score_max,
        trend=trend,
        name_contains=name_contains or None,
    )
    async with sessions() as session:
        rows, total = await account_views.page(
            session, where=where, sort=sort, limit=limit, offset=offset
        )
        points = await account_views.history(
            session, account_ids=[a.id for a in rows], since=now - timedelta(days=HISTORY_DAYS)
        )
    return AccountPage(
        items=[_item(account, points.get(account.id, []), now) for account in rows],
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
    sessions: SessionFactory, *, connection: str, record_id: str, now: datetime
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
    # Measured again, never stored: only the indicators are read from this health.
    measured = score(snapshot, config.for_connection(connection), previous_band=Band(account.band))
    indicators: dict[str, list[IndicatorOut]] = {name: [] for name in SIGNAL_NAMES}
    for result in measured.indicators:
        indicators.setdefault(result.signal, []).append(
            IndicatorOut(
                name=result.name,
                raw=round(result.raw, 4),
                score=round(result.score, 1),
                weight=round(result.weight, 4),
            )
        )
    mine = points.get(account.id, [])
    return AccountDetail(
        **_item(account, mine, now).model_dump(),
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
    )


def _record(row: SentimentFact) -> SentimentRecord:
    return SentimentRecord(
        rating=row.rating,
        reason=row.reason,
        note=row.note,
        author=row.author,
        at=row.at,
        until=row.until,
    )
