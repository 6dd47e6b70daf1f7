"""Value types of the health domain: the facts snapshot going in, the health coming out."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple


class Band(StrEnum):
    HEALTHY = "healthy"
    NEUTRAL = "neutral"
    AT_RISK = "at_risk"
    UNKNOWN = "unknown"  # too little evidence for a verdict (see Bands.min_coverage)
    ONBOARDING = "onboarding"  # a customer younger than Bands.onboarding_days: scored, not judged


# How good a band is, for hysteresis: only moves to a better band need the margin. Unknown and
# onboarding are no verdict, so leaving them needs no margin.
BAND_RANK: Mapping[Band, int] = MappingProxyType(
    {Band.UNKNOWN: -1, Band.ONBOARDING: -1, Band.AT_RISK: 0, Band.NEUTRAL: 1, Band.HEALTHY: 2}
)

_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})
_NO_CUSTOM: Mapping[str, float | None] = MappingProxyType({})
# Signal and indicator names are keys of the configuration and parts of CRM field names.
_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


class Rating(StrEnum):
    """A CSM's judgement of an account, as traffic lights."""

    RED = "red"
    AMBER = "amber"
    GREEN = "green"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sentiment:
    """The CSM's voice on one account, in force until `until` (AccountFacts.sentiment)."""

    rating: Rating
    reason: str
    author: str
    until: datetime
    note: str | None = None

    @property
    def text(self) -> str:
        """The driver that says it: "CSM: red, champion left (A. Kim, until 2027-01-15)"."""
        return (
            f"CSM: {self.rating.value}, {self.reason} "
            f"({self.author}, until {self.until.date().isoformat()})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountFacts:
    """Everything scoring may look at for one account, read from the store at `as_of`.

    None means "no data" and is never read as zero: an indicator whose inputs are None is left
    out of the score instead of dragging it down.
    """

    account_id: str
    as_of: datetime
    # The CRM the record lives in ("hubspot", "salesforce", "dynamics", "native"): which list
    # of HealthConfig.customers applies to its `lifecycle` attribute.
    crm: str = "native"
    # Attributes segment overrides match on (tier, plan, segment...).
    attributes: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRIBUTES)
    seats: int | None = None
    active_users_30d: int | None = None
    active_users_prev_30d: int | None = None
    mean_daily_active_users_30d: float | None = None
    last_usage_at: datetime | None = None
    # Usage depth: the events of the 30 days and of the 30 before them, and the users of the
    # configuration's key features in the 30 days (None: no key features, or none named).
    usage_events_30d: float | None = None
    usage_events_prev_30d: float | None = None
    key_feature_users_30d: int | None = None
    customer_interactions_90d: int | None = None
    total_interactions_90d: int | None = None
    collaboration_events_180d: int | None = None
    contacts_engaged_90d: int | None = None
    executives_engaged_90d: int | None = None
    tickets_90d: int | None = None
    escalations_90d: int | None = None
    arr: float | None = None
    arr_12m_ago: float | None = None
    # Survey answers (signals.voice): the account's NPS and mean CSAT over 90 days (None below
    # the minimum of answers) and the latest answer of each.
    nps_90d: float | None = None
    nps_latest: float | None = None
    csat_90d: float | None = None
    csat_latest: float | None = None
    # The CSM's sentiment in force at `as_of` (none set, cleared or expired: None).
    sentiment: Sentiment | None = None
    # The raw values of the configuration's custom indicators, by their source's key
    # (signals.config.ProductEventsSource.key); missing or None is no data.
    custom: Mapping[str, float | None] = field(default_factory=lambda: _NO_CUSTOM)
    # Since when the account is a customer (the CRM's or a native customer-since date, else
    # its first record); None where unknown. Younger than the onboarding period: "onboarding".
    customer_since: datetime | None = None


# The longest product feature name kept (connector.bounds.FEATURE): a user id's length.
FEATURE_LENGTH = 200


def feature_key(name: str) -> str:
    """A product feature name as stored and matched: spaces collapsed, without regard to case,
    so Segment's "Report Exported" and a native "report exported" are one feature."""
    return " ".join(name.split()).casefold()[:FEATURE_LENGTH]


class Unit(StrEnum):
    """How an indicator's raw value reads in a driver text."""

    PERCENT = "percent"  # a 0..1 ratio shown as 22%
    CHANGE = "change"  # a relative change shown as -30% / +5%
    DAYS = "days"
    COUNT = "count"
    NUMBER = "number"  # one decimal


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """One indicator: its name, how its raw value reads in a driver text, and its default
    thresholds (the raw value scoring 0 and the one scoring 100: which is larger sets the
    direction) and weight within its signal."""

    name: str
    label: str
    unit: Unit
    _: KW_ONLY
    # One plain-English line for the people reading the account page: what the number is and
    # which way is good ("Share of paid seats used in the last 30 days; higher is better.").
    explanation: str
    at_risk: float
    healthy: float
    weight: float = 1.0
    # Evidence not every account or deployment has (survey answers, key features marked,
    # event counts from before an upgrade): where it has data it counts like any indicator;
    # where it has none, the account's coverage does not miss it, so adding such an indicator
    # moves no band of an account without it.
    optional: bool = False


Measure = Callable[[AccountFacts], tuple[float | None, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSpec:
    """One signal, declared once in its own module; signals.registry lists them and the
    configuration, the CRM fields and the labels shown are derived from that list.

    `description` says what it measures and `question` what it answers, both as the middle of
    a sentence ("seat use, usage trend, stickiness, recency"; "do people actually use what was
    sold?"): CRM field descriptions and help texts are made of them. `evidence` names what it
    needs, for the "not enough evidence" driver. `measure` returns the raw values in
    `indicators` order, None where the inputs are missing.
    """

    name: str
    label: str
    description: str
    question: str
    evidence: str
    weight: float
    indicators: tuple[IndicatorSpec, ...]
    measure: Measure

    def __post_init__(self) -> None:
        if not _SNAKE_CASE.fullmatch(self.name):
            raise ValueError(f"signal name {self.name!r}: lowercase words joined by _")
        names = [indicator.name for indicator in self.indicators]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"signal {self.name}: indicators need distinct names, {names}")
        for indicator in self.indicators:
            if not _SNAKE_CASE.fullmatch(indicator.name):
                raise ValueError(f"indicator name {indicator.name!r}: lowercase words joined by _")

    @property
    def label_in_sentence(self) -> str:
        """The label inside a sentence: "active use"; one starting with an acronym as is."""
        if self.label[:2].isupper():
            return self.label
        return self.label[:1].lower() + self.label[1:]


class IndicatorResult(NamedTuple):
    """One indicator as measured for one account."""

    signal: str
    name: str
    raw: float
    score: float
    # Share of the composite this indicator carried (signal share x share within the signal).
    weight: float

    @property
    def cost(self) -> float:
        """Points of the composite lost to this indicator."""
        return self.weight * (100.0 - self.score)


class Coverage(NamedTuple):
    """What the score rests on: the share of configured weight that had data, and which parts."""

    ratio: float
    signals: tuple[str, ...] = ()
    indicators: tuple[str, ...] = ()  # "signal.indicator"


class Explanation(NamedTuple):
    indicators: tuple[IndicatorResult, ...]
    drivers: tuple[str, ...]
    coverage: Coverage


_NOTHING_MEASURED = Explanation(indicators=(), drivers=(), coverage=Coverage(ratio=0.0))


class Health:
    """The verdict for one account: composite score, band, per-signal scores and the why.

    The explanation (indicators, drivers, coverage) is worked out on first access: a preview
    over every account needs only scores and bands, and should not pay for the text.
    """

    __slots__ = (
        "_explain",
        "_explanation",
        "band",
        "config_version",
        "customer",
        "score",
        "segment",
        "sentiment",
        "signals",
        "trend_30d",
    )

    def __init__(
        self,
        *,
        score: int | None,
        band: Band,
        signals: Mapping[str, float | None],
        trend_30d: int | None = None,
        segment: str | None = None,
        config_version: str = "",
        explain: Callable[[], Explanation] | None = None,
        customer: bool = True,
        sentiment: Sentiment | None = None,
    ) -> None:
        self.score = score
        # The CSM's sentiment the health was scored with (alert rules remind of its end).
        self.sentiment = sentiment
        # False: not a customer by HealthConfig.customers, so not scored, alerted or written.
        self.customer = customer
        self.band = band
        self.signals = signals
        self.trend_30d = trend_30d
        self.segment = segment
        self.config_version = config_version
        self._explain = explain
        self._explanation: Explanation | None = None if explain else _NOTHING_MEASURED

    def _explained(self) -> Explanation:
        if self._explanation is None:
            assert self._explain is not None
            self._explanation = self._explain()
        return self._explanation

    @property
    def indicators(self) -> tuple[IndicatorResult, ...]:
        return self._explained().indicators

    @property
    def drivers(self) -> tuple[str, ...]:
        """Why: the indicators that cost the most points, as short text for a CRM field."""
        return self._explained().drivers

    @property
    def coverage(self) -> Coverage:
        return self._explained().coverage

    def __repr__(self) -> str:
        return (
            f"Health(score={self.score!r}, band={self.band.value!r}, signals={self.signals!r}, "
            f"trend_30d={self.trend_30d!r}, segment={self.segment!r})"
        )
