"""HealthConfig: every threshold, weight, band edge and segment override an admin can tune.

Defaults follow docs/signals.md. Validation is strict (unknown keys are refused) and errors
name the field path, e.g. `signals.active_use.indicators.seat_utilization.healthy`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from signals.model import FEATURE_LENGTH, IndicatorSpec, Unit, feature_key
from signals.registry import SIGNALS

_STRICT = ConfigDict(frozen=True, extra="forbid")
# An indicator whose two thresholds are equal has no direction. Named on `healthy`, the one an
# editor shows second, so the admin page marks that input (the other is the reference); no
# value in it: the admin page shows ratios as percentages, the document as ratios.
SAME_THRESHOLDS = "healthy: must differ from at_risk"


class IndicatorConfig(BaseModel):
    """Raw value that scores 0 (`at_risk`) and 100 (`healthy`), and the weight in its signal."""

    model_config = _STRICT

    at_risk: float = Field(allow_inf_nan=False)
    healthy: float = Field(allow_inf_nan=False)
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.at_risk == self.healthy:
            raise ValueError(SAME_THRESHOLDS)
        return self


class IndicatorsConfig(BaseModel):
    """One signal's indicators by name; a subclass per signal (see `_signal_models`)."""

    model_config = _STRICT

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if not any(indicator.weight > 0 for indicator in self.items().values()):
            raise ValueError("at least one indicator needs a weight above 0")
        return self

    def items(self) -> dict[str, IndicatorConfig]:
        return {name: getattr(self, name) for name in type(self).model_fields}


class SignalConfig(BaseModel):
    """One signal's weight in the composite and its indicators; a subclass per signal sets
    the defaults its module declares."""

    model_config = _STRICT

    weight: float = Field(ge=0, allow_inf_nan=False)
    indicators: IndicatorsConfig


class _SignalsConfig(BaseModel):
    """Every registered signal's configuration, by signal name (see `_signal_models`)."""

    model_config = _STRICT

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if not any(signal.weight > 0 for signal in self.items().values()):
            raise ValueError("at least one signal needs a weight above 0")
        return self

    def items(self) -> dict[str, SignalConfig]:
        return {name: getattr(self, name) for name in type(self).model_fields}


def _indicator(spec: IndicatorSpec) -> Any:
    return Field(
        default_factory=lambda: IndicatorConfig(
            at_risk=spec.at_risk, healthy=spec.healthy, weight=spec.weight
        )
    )


def _default(model: type[BaseModel]) -> Any:
    return Field(default_factory=model)


def _signal_models() -> type[_SignalsConfig]:
    """The configuration classes of the registered signals, with the defaults their modules
    declare: `ActiveUseIndicators` and `ActiveUseConfig` per signal, then `SignalsConfig`
    (their names are the OpenAPI schema names)."""
    signal_fields: dict[str, Any] = {}
    for signal in SIGNALS:
        title = "".join(part.capitalize() for part in signal.name.split("_"))
        indicator_fields: dict[str, Any] = {
            spec.name: (IndicatorConfig, _indicator(spec)) for spec in signal.indicators
        }
        indicators = create_model(
            f"{title}Indicators",
            __base__=IndicatorsConfig,
            __module__=__name__,
            **indicator_fields,
        )
        signal_model = create_model(
            f"{title}Config",
            __base__=SignalConfig,
            __module__=__name__,
            weight=(float, Field(default=signal.weight, ge=0, allow_inf_nan=False)),
            indicators=(indicators, _default(indicators)),
        )
        signal_fields[signal.name] = (signal_model, _default(signal_model))
    return create_model(
        "SignalsConfig", __base__=_SignalsConfig, __module__=__name__, **signal_fields
    )


if TYPE_CHECKING:
    # Made from the registry at import; code relies only on what the base offers (items()).
    SignalsConfig = _SignalsConfig
else:
    SignalsConfig = _signal_models()


class Bands(BaseModel):
    """Cutoffs on the 0..100 score; moving to a better band needs `hysteresis` points more."""

    model_config = _STRICT

    healthy_min: float = Field(default=70, ge=0, le=100)
    at_risk_below: float = Field(default=40, ge=0, le=100)
    hysteresis: float = Field(default=3, ge=0, le=50)
    # The share of the configured weight that must have data for a band: below it the band
    # is "unknown" and the drivers name what is missing, rather than a verdict on no evidence.
    min_coverage: float = Field(default=0.5, ge=0, le=1)
    # Customers younger than this many days (from their customer-since date, else their first
    # record) get the band "onboarding": scored and shown, never judged at-risk on windows of
    # 90 and 180 days they have not lived through.
    onboarding_days: int = Field(default=90, ge=0, le=730)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.at_risk_below > self.healthy_min:
            raise ValueError(
                f"at_risk_below ({self.at_risk_below:g}) must not exceed "
                f"healthy_min ({self.healthy_min:g})"
            )
        return self


MAX_KEY_FEATURES = 50


class ProductConfig(BaseModel):
    """What the product's usage events mean. `key_features` are the features (a usage event's
    `feature`, Segment's event or page name) whose adoption by an account's active users
    marks real use; matched without regard to case or repeated spaces."""

    model_config = _STRICT

    key_features: tuple[
        Annotated[
            str, StringConstraints(strip_whitespace=True, min_length=1, max_length=FEATURE_LENGTH)
        ],
        ...,
    ] = Field(default=(), max_length=MAX_KEY_FEATURES)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        keys = [feature_key(name) for name in self.key_features]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"key_features: {', '.join(map(repr, repeated))} listed twice")
        return self

    @property
    def key_feature_keys(self) -> tuple[str, ...]:
        """The key features as stored (signals.model.feature_key)."""
        return tuple(feature_key(name) for name in self.key_features)


FeatureName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=FEATURE_LENGTH)
]
# snake_case: keys of the configuration and parts of CRM field names.
SnakeName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$", max_length=40)
]
Aggregation = Literal[
    "events", "users", "events_per_user", "events_per_seat", "users_per_seat",
    "share_of_active_users",
]  # fmt: skip
MAX_CUSTOM_INDICATORS = 50
MAX_CUSTOM_SIGNALS = 10


class ProductEventsSource(BaseModel):
    """Usage events naming any of `features` (a usage event's `feature`, Segment's event or
    page name; case and repeated spaces aside) in the `days` to the moment scored, aggregated:

    - events: how many; users: how many distinct users;
    - events_per_user: events / those users; events_per_seat, users_per_seat: / seats;
    - share_of_active_users: those users / the account's active users (30 days only)."""

    model_config = _STRICT

    kind: Literal["product_events"] = "product_events"
    features: tuple[FeatureName, ...] = Field(min_length=1, max_length=20)
    aggregation: Aggregation
    days: int = Field(default=30, ge=1, le=180)

    @field_validator("days")
    @classmethod
    def _days_fit(cls, days: int, info: ValidationInfo) -> int:
        if info.data.get("aggregation") == "share_of_active_users" and days != 30:
            raise ValueError(
                f"share_of_active_users compares with the 30-day active users, not {days}"
            )
        return days

    @property
    def feature_keys(self) -> tuple[str, ...]:
        """The features as stored (signals.model.feature_key), sorted, once each."""
        return tuple(sorted({feature_key(name) for name in self.features}))

    @property
    def key(self) -> str:
        """What the facts hold its value under (AccountFacts.custom): equal sources, one key."""
        return "|".join((self.kind, self.aggregation, str(self.days), *self.feature_keys))

    @property
    def unit(self) -> Unit:
        if self.aggregation == "share_of_active_users":
            return Unit.PERCENT
        return Unit.COUNT if self.aggregation in ("events", "users") else Unit.NUMBER

    @property
    def description(self) -> str:
        """What the value is, in words: "Usage events of Report Exported per paid seat in
        the last 30 days" (the start of a custom indicator's explanation)."""
        named = _listed(self.features)
        window = f"in the last {self.days} days"
        return {
            "events": f"Usage events of {named} {window}",
            "users": f"People who used {named} {window}",
            "events_per_user": f"Usage events of {named} per person using them {window}",
            "events_per_seat": f"Usage events of {named} per paid seat {window}",
            "users_per_seat": f"People who used {named} per paid seat {window}",
            "share_of_active_users": f"Share of the active people who used {named} {window}",
        }[self.aggregation]


SurveyAggregation = Literal["mean", "latest", "nps", "responses"]


class SurveySource(BaseModel):
    """Survey answers of one kind (`nps`, `csat`, `ces`; native `survey` events, Segment's
    "Survey Responded") in the `days` to the moment scored:

    - mean: the mean score; nps: % promoters - % detractors (NPS answers only); both need
      `min_responses` answers in the window, fewer is no data;
    - latest: the latest answer's score; responses: how many answers."""

    model_config = _STRICT

    kind: Literal["survey"] = "survey"
    survey: Literal["nps", "csat", "ces"]
    aggregation: SurveyAggregation
    days: int = Field(default=90, ge=1, le=365)
    min_responses: int = Field(default=3, ge=1, le=100)

    @field_validator("aggregation")
    @classmethod
    def _aggregation_fits(cls, aggregation: str, info: ValidationInfo) -> str:
        survey = info.data.get("survey")
        if aggregation == "nps" and survey is not None and survey != "nps":
            raise ValueError(f"nps is for NPS answers, not {survey}")
        return aggregation

    @property
    def key(self) -> str:
        return "|".join(
            (self.kind, self.survey, self.aggregation, str(self.days), str(self.min_responses))
        )

    @property
    def unit(self) -> Unit:
        return Unit.COUNT if self.aggregation == "responses" else Unit.NUMBER

    @property
    def description(self) -> str:
        survey, window = self.survey.upper(), f"in the last {self.days} days"
        least = f"at least {self.min_responses} answer{'' if self.min_responses == 1 else 's'}"
        return {
            "mean": f"Mean {survey} answer {window} ({least})",
            "nps": f"Net Promoter Score of the {survey} answers {window} ({least})",
            "latest": f"The latest {survey} answer {window}",
            "responses": f"{survey} answers received {window}",
        }[self.aggregation]


# A field's name in its CRM: a HubSpot property's internal name, a Salesforce field's API name
# (`NPS__c`), a Dynamics column's logical name.
CrmFieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=100)]
CrmPropertyValue = Literal["number", "days_since", "days_until"]


class CrmPropertySource(BaseModel):
    """A number or a date the CRM holds on the account record, named per CRM (`hubspot`,
    `salesforce`, `dynamics`; a CRM left out has no data), read whenever the record is:

    - number: the field's value;
    - days_since, days_until: days from the field's date to the moment scored, or from then
      to the date (a date already past is 0 days until it)."""

    model_config = _STRICT

    kind: Literal["crm_property"] = "crm_property"
    hubspot: CrmFieldName | None = None
    salesforce: CrmFieldName | None = None
    dynamics: CrmFieldName | None = None
    value: CrmPropertyValue = "number"

    @model_validator(mode="after")
    def _names_a_field(self) -> Self:
        if self.hubspot is None and self.salesforce is None and self.dynamics is None:
            raise ValueError("name the field in at least one CRM (hubspot, salesforce, dynamics)")
        return self

    def field_in(self, crm: str) -> str | None:
        """The field's name in `crm` (a registry name), None where it is not mapped."""
        return {
            "hubspot": self.hubspot,
            "salesforce": self.salesforce,
            "dynamics": self.dynamics,
        }.get(crm)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Its names in every CRM that maps it, once each."""
        return tuple(dict.fromkeys(n for n in (self.hubspot, self.salesforce, self.dynamics) if n))

    @property
    def key(self) -> str:
        names = (
            f"{crm}={self.field_in(crm) or ''}" for crm in ("hubspot", "salesforce", "dynamics")
        )
        return "|".join((self.kind, self.value, *names))

    @property
    def unit(self) -> Unit:
        return Unit.NUMBER if self.value == "number" else Unit.DAYS

    @property
    def description(self) -> str:
        crms = (("hubspot", "HubSpot"), ("salesforce", "Salesforce"), ("dynamics", "Dynamics"))
        named = _listed(
            [f"{name} ({label})" for crm, label in crms if (name := self.field_in(crm))]
        )
        return {
            "number": f"The value of the CRM field {named}",
            "days_since": f"Days since the date in the CRM field {named}",
            "days_until": f"Days until the date in the CRM field {named} (0 once it is past)",
        }[self.value]


def _listed(names: Sequence[str], most: int = 3) -> str:
    """ "a", "a and b", "a, b and c", "a, b, c and 2 more"."""
    if len(names) > most:
        return f"{', '.join(names[:most])} and {len(names) - most} more"
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


# Where a custom indicator's raw value comes from, told apart by `kind`.
AnySource = ProductEventsSource | SurveySource | CrmPropertySource
CustomSource = Annotated[AnySource, Field(discriminator="kind")]


class CustomIndicator(BaseModel):
    """An admin's own indicator, data in the configuration: scored like the built-in ones
    (0 at `at_risk`, 100 at `healthy`, `weight` within its signal), in one of the four
    signals or a custom signal (`custom_signals`). `optional`: an account without its data
    is not short of coverage (see IndicatorSpec.optional)."""

    model_config = _STRICT

    name: SnakeName
    label: str = Field(min_length=1, max_length=60)
    signal: SnakeName
    source: CustomSource
    at_risk: float = Field(allow_inf_nan=False)
    healthy: float = Field(allow_inf_nan=False)
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    optional: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.at_risk == self.healthy:
            raise ValueError(SAME_THRESHOLDS)
        return self

    @property
    def spec(self) -> IndicatorSpec:
        better = "higher" if self.healthy > self.at_risk else "lower"
        return IndicatorSpec(
            self.name,
            self.label,
            self.source.unit,
            explanation=f"{self.source.description}; {better} is better.",
            at_risk=self.at_risk,
            healthy=self.healthy,
            weight=self.weight,
            optional=self.optional,
        )


# Names a custom signal cannot take: its CRM field, `health_<name>`, would be one of the fixed
# health fields or the sentiment's picklists (connector.base).
RESERVED_SIGNAL_NAMES = frozenset(
    {"score", "band", "trend_30d", "drivers", "updated_at", "csm_sentiment", "csm_sentiment_reason"}
)


def _field_key(signal: str) -> str:
    """What a signal's CRM field name keeps of it in every CRM (Dynamics drops underscores)."""
    return signal.replace("_", "")


def _custom_signal_name_problems(custom_signals: Sequence[CustomSignal]) -> list[str]:
    """Custom signal names that are taken: a built-in signal's, another custom signal's, or
    one whose CRM field would be a fixed field's or another signal's."""
    problems = []
    builtin = {signal.name for signal in SIGNALS}
    # Dynamics names a column without the underscores (<prefix>_healthmutualvalue): names
    # equal but for them would be one CRM field.
    fields = {_field_key(name): name for name in (*RESERVED_SIGNAL_NAMES, *builtin)}
    seen: set[str] = set()
    for index, signal in enumerate(custom_signals):
        where = f"custom_signals.{index}.name: {signal.name!r}"
        clash = fields.setdefault(_field_key(signal.name), signal.name)
        if signal.name in RESERVED_SIGNAL_NAMES:
            problems.append(
                f"{where} is reserved: health_{signal.name} is a fixed CRM field (pick another)"
            )
        elif signal.name in builtin or signal.name in seen:
            problems.append(f"{where} is taken (pick another)")
        elif clash != signal.name:
            problems.append(
                f"{where} would have the CRM field of {clash!r} (names equal but for "
                "underscores; pick another)"
            )
        seen.add(signal.name)
    return problems


class CustomSignal(BaseModel):
    """A signal of the admin's own, made of custom indicators, with its weight in the
    composite beside the four built-in ones, and a CRM field of its own (`health_<name>`)."""

    model_config = _STRICT

    # At most 24 characters: the CRM field's name, prefixed, must fit every CRM's limit
    # (Salesforce's 40 for `Health_<Name>`, Dynamics' logical names).
    name: Annotated[SnakeName, StringConstraints(max_length=24)]
    label: str = Field(min_length=1, max_length=60)
    weight: float = Field(ge=0, allow_inf_nan=False)


class FactReads(NamedTuple):
    """What a configuration needs read beyond the built-in facts: its key features and the
    sources of its custom indicators (webhooks.store.facts.read_facts)."""

    key_features: tuple[str, ...] = ()
    sources: tuple[AnySource, ...] = ()


NO_READS = FactReads()


DEFAULT_SENTIMENT_REASONS = (
    "champion left",
    "executive sponsor lost",
    "budget cut",
    "reorganisation",
    "product gaps",
    "support frustration",
    "competitor evaluated",
    "expansion planned",
    "strong partnership",
    "other",
)


class SentimentConfig(BaseModel):
    """How the CSM's voice counts (AccountFacts.sentiment): the reasons a CSM picks from, how
    long a sentiment lasts by default, and what it does while it lasts:

    - indicator: an indicator of `signal` with `weight` (red 0, amber 50, green 100);
    - cap: the band is no better than the sentiment's (red: at risk, amber: neutral);
    - override: the band is the sentiment's (red at risk, amber neutral, green healthy).
    In every mode the first driver says it ("CSM: red, champion left (A. Kim, until ...)")."""

    model_config = _STRICT

    mode: Literal["indicator", "cap", "override"] = "indicator"
    signal: str = "collaboration"
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    reasons: tuple[
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)], ...
    ] = Field(default=DEFAULT_SENTIMENT_REASONS, min_length=1, max_length=30)
    default_days: int = Field(default=30, ge=1, le=365)
    # Provision picklists for the rating and the reason on the CRM's account record, so CSMs
    # set the sentiment where they work; a change there sets it like the API (its author the
    # CRM user where the CRM tells, its length default_days). Off: no fields are added.
    crm_field: bool = False

    @model_validator(mode="after")
    def _valid(self) -> Self:
        folded = [reason.casefold() for reason in self.reasons]
        repeated = sorted({r for r in folded if folded.count(r) > 1})
        if repeated:
            raise ValueError(f"reasons: {', '.join(map(repr, repeated))} listed twice")
        return self


class CustomerRule(BaseModel):
    """Which accounts are customers, and so scored: per CRM, the values of its lifecycle field
    (the `lifecycle` attribute each connector reads) that mean "customer", compared without
    regard to case. Others are listed as not a customer, get no band and no alerts, and their
    CRM health fields are left empty.

    - hubspot: the company's `lifecyclestage` (internal values, e.g. customer, evangelist);
    - salesforce: the Account's `Type` picklist (e.g. "Customer - Direct");
    - dynamics: the account's relationship type `customertypecode` (option value, 3 Customer);
    - native: the `lifecycle` attribute of native `account` events.
    A record without the field counts as `missing` says (a customer by default), so setups
    that never filled it in keep working.
    """

    model_config = _STRICT

    hubspot: tuple[str, ...] = ("customer", "evangelist")
    salesforce: tuple[str, ...] = ("Customer - Direct", "Customer - Channel")
    dynamics: tuple[str, ...] = ("3",)
    native: tuple[str, ...] = ("customer",)
    missing: Literal["customer", "not_customer"] = "customer"

    def is_customer(self, crm: str, lifecycle: str | None) -> bool:
        if lifecycle is None or not lifecycle.strip():
            return self.missing == "customer"
        values: tuple[str, ...] = getattr(self, crm, self.native)
        wanted = lifecycle.strip().casefold()
        return any(value.casefold() == wanted for value in values)


class SegmentOverride(BaseModel):
    """Settings for accounts whose attributes match, e.g. {"tier": "enterprise"}.

    `changes` holds only what differs from the base configuration, in the same shape
    ({"signals": {"active_use": {"weight": 0.5}}, "bands": {"healthy_min": 75}}).
    """

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=100)
    match: dict[str, str] = Field(min_length=1)
    changes: dict[str, Any] = Field(default_factory=dict)


AlertWhen = Literal[
    "band_entered", "score_drop", "indicator_at_risk", "renewal_near", "sentiment_ending"
]
Severity = Literal["low", "medium", "high"]
# Ranks severities for "the most severe reason" and "severity rose".
SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3}


class AlertRule(BaseModel):
    """When to tell people about an account, and whom (channel names of the channels file).

    - band_entered: the account's band became `band` (bands already have hysteresis);
    - score_drop: the score fell at least `points` within `days`;
    - indicator_at_risk: `indicator` ("signal.indicator") reached its at-risk threshold: raised
      when it was measured and above the threshold at the account's previous scoring (under
      the same scoring configuration): a thing lost, not a thing never had. `trigger: state`
      raises it whenever the indicator is at risk;
    - renewal_near: the renewal date is within `days` and the account's band is one of
      `bands` (by default neutral or at risk: not healthy).
    - sentiment_ending: the CSM sentiment in force ends within `days`: a reminder to its author
      (through the rule's channels) to renew it or let the computed health apply.
    Conditions of one account that hold at the same time are reasons of one alert (an episode),
    titled by the most severe; a condition that ends and comes back within `cooldown_days`
    re-opens the episode without telling anyone again. `severity` defaults by kind (see
    `level`).
    """

    model_config = _STRICT

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    when: AlertWhen
    band: Literal["at_risk", "neutral"] = "at_risk"
    points: float = Field(default=15, gt=0, le=100, allow_inf_nan=False)
    days: int = Field(default=30, ge=1, le=730)
    indicator: str | None = None
    # renewal_near only: the bands in which a near renewal is raised.
    bands: tuple[Literal["neutral", "at_risk"], ...] = Field(
        default=("neutral", "at_risk"), min_length=1
    )
    # indicator_at_risk only: "transition" (it was fine and is at risk now) or "state".
    trigger: Literal["transition", "state"] = "transition"
    # Empty: every account. Otherwise a segment override's name or the account's segment.
    segments: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    cooldown_days: float = Field(default=7, ge=0, le=365, allow_inf_nan=False)
    notify_recovered: bool = False
    enabled: bool = True
    # None: by kind (see `level`); set it to rank one rule's reasons above or below the others.
    severity: Severity | None = None

    @property
    def level(self) -> Severity:
        """The rule's severity: as set, else entering at risk and an unhealthy renewal are high,
        entering neutral and a score drop medium, one indicator at risk and a sentiment's end
        low."""
        if self.severity is not None:
            return self.severity
        if self.when == "renewal_near" or (self.when == "band_entered" and self.band == "at_risk"):
            return "high"
        return "low" if self.when in ("indicator_at_risk", "sentiment_ending") else "medium"

    @model_validator(mode="after")
    def _indicator_named(self) -> Self:
        if self.when == "indicator_at_risk":
            # Which indicators exist depends on the configuration's custom ones: the whole
            # configuration checks the name (HealthConfig._alert_indicators_exist).
            if self.indicator is None:
                raise ValueError("indicator: an indicator_at_risk rule names its indicator")
        elif self.indicator is not None:
            raise ValueError(f"indicator: only for indicator_at_risk rules, not {self.when}")
        if self.when != "renewal_near" and set(self.bands) != {"neutral", "at_risk"}:
            raise ValueError(f"bands: only for renewal_near rules, not {self.when}")
        if self.trigger == "state" and self.when != "indicator_at_risk":
            raise ValueError(f"trigger: state is only for indicator_at_risk rules, not {self.when}")
        return self


def _indicator_names(custom: Sequence[CustomIndicator] = ()) -> set[str]:
    """The indicators an alert rule may name: "signal.indicator", custom ones included."""
    return {
        *(f"{signal.name}.{spec.name}" for signal in SIGNALS for spec in signal.indicators),
        *(f"{indicator.signal}.{indicator.name}" for indicator in custom),
    }


DEFAULT_ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule(name="entered-at-risk", when="band_entered", band="at_risk", notify_recovered=True),
    AlertRule(name="score-drop", when="score_drop", points=15, days=30),
    AlertRule(
        name="no-co-innovation", when="indicator_at_risk", indicator="collaboration.co_innovation"
    ),
    AlertRule(
        name="executive-access-lost",
        when="indicator_at_risk",
        indicator="collaboration.executive_access",
    ),
    # At risk only: an account renewing soon and merely neutral is the renewal process's business
    # (the CRM lists renewals); one at risk needs someone now. Its renewal is a reason of the
    # account's at-risk alert, so it adds no second alert.
    AlertRule(name="renewal-at-risk", when="renewal_near", days=60, bands=("at_risk",)),
    # A week before a CSM sentiment ends: renew it, or the computed health applies again.
    AlertRule(name="sentiment-ending", when="sentiment_ending", days=7),
)


class AlertRoute(BaseModel):
    """Where one alert rule's alerts of one connection go: other channels than the rule's
    (`channels`; None keeps the rule's own, empty tells nobody), or not raised at all."""

    model_config = _STRICT

    channels: tuple[str, ...] | None = None
    enabled: bool = True


# The names API keys and connection files allow.
ConnectionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class ConnectionSettings(BaseModel):
    """What applies to one connection's accounts only, and what an admin key bound to that
    connection may change: its own segment overrides (tried before the global ones, and named
    apart from them) and the routing of the global alert rules, by rule name."""

    model_config = _STRICT

    segments: tuple[SegmentOverride, ...] = ()
    alerts: dict[str, AlertRoute] = Field(default_factory=dict)


class HealthConfig(BaseModel):
    model_config = _STRICT

    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    bands: Bands = Field(default_factory=Bands)
    customers: CustomerRule = Field(default_factory=CustomerRule)
    product: ProductConfig = Field(default_factory=ProductConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    custom_signals: tuple[CustomSignal, ...] = Field(default=(), max_length=MAX_CUSTOM_SIGNALS)
    custom_indicators: tuple[CustomIndicator, ...] = Field(
        default=(), max_length=MAX_CUSTOM_INDICATORS
    )
    segments: tuple[SegmentOverride, ...] = ()
    alerts: tuple[AlertRule, ...] = DEFAULT_ALERT_RULES
    connections: dict[ConnectionName, ConnectionSettings] = Field(default_factory=dict)

    _resolved: tuple[tuple[SegmentOverride, HealthConfig], ...] = PrivateAttr(default=())
    _by_connection: dict[str, HealthConfig] = PrivateAttr(default_factory=dict)
    # What applies to connections without settings of their own (None: self, having none).
    _everyone: HealthConfig | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _custom_parts_fit(self) -> Self:
        """Custom signals and indicators name what exists and nothing twice; each custom
        signal that weighs something has an indicator that does."""
        problems: list[str] = []
        builtin = {signal.name: signal for signal in SIGNALS}
        custom = {signal.name: index for index, signal in enumerate(self.custom_signals)}
        problems.extend(_custom_signal_name_problems(self.custom_signals))
        taken = {(signal.name, spec.name) for signal in SIGNALS for spec in signal.indicators}
        # The sentiment's indicator (signals.scoring.SENTIMENT_INDICATOR), in any mode and
        # signal: its drivers are the sentiment's own.
        taken.update((name, "csm_sentiment") for name in (*builtin, *custom))
        weighed: set[str] = set()
        for index, indicator in enumerate(self.custom_indicators):
            where = f"custom_indicators.{index}"
            if indicator.signal not in builtin and indicator.signal not in custom:
                known = ", ".join([*builtin, *custom])
                problems.append(f"{where}.signal: {indicator.signal!r} is not one of {known}")
            elif (indicator.signal, indicator.name) in taken:
                problems.append(
                    f"{where}.name: {indicator.signal} already has an indicator "
                    f"{indicator.name!r} (pick another)"
                )
            taken.add((indicator.signal, indicator.name))
            if indicator.weight > 0:
                weighed.add(indicator.signal)
        if self.sentiment.signal not in builtin and self.sentiment.signal not in custom:
            known = ", ".join([*builtin, *custom])
            problems.append(f"sentiment.signal: {self.sentiment.signal!r} is not one of {known}")
        elif self.sentiment.mode == "indicator" and self.sentiment.weight > 0:
            weighed.add(self.sentiment.signal)
        for name, index in custom.items():
            if self.custom_signals[index].weight > 0 and name not in weighed:
                problems.append(
                    f"custom_signals.{index}: {name} needs a custom indicator with a weight "
                    "above 0 (or a weight of 0 itself)"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _alert_indicators_exist(self) -> Self:
        known = _indicator_names(self.custom_indicators)
        problems = [
            f"alerts.{index}.indicator: {rule.indicator!r} is not one of {', '.join(sorted(known))}"
            for index, rule in enumerate(self.alerts)
            if rule.indicator is not None and rule.indicator not in known
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def fact_reads(self) -> FactReads:
        return FactReads(
            key_features=self.product.key_feature_keys,
            sources=tuple({i.source.key: i.source for i in self.custom_indicators}.values()),
        )

    @model_validator(mode="after")
    def _resolve_segments(self) -> Self:
        names = [segment.name for segment in self.segments]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"segments: duplicate names {duplicates}")
        rules = [rule.name for rule in self.alerts]
        duplicates = sorted({name for name in rules if rules.count(name) > 1})
        if duplicates:
            raise ValueError(f"alerts: duplicate rule names {duplicates}")
        base = self.model_dump(mode="json", exclude={"segments", "alerts"})
        resolved: list[tuple[SegmentOverride, HealthConfig]] = []
        problems: list[str] = []
        for index, segment in enumerate(self.segments):
            unknown = set(segment.changes) - {"signals", "bands"}
            if unknown:
                problems.append(
                    f"segments.{index}.changes: unknown keys {sorted(unknown)} "
                    "(only signals and bands can be overridden)"
                )
                continue
            try:
                effective = HealthConfig.model_validate(_deep_merge(base, segment.changes))
            except ValidationError as exc:
                problems.extend(
                    f"segments.{index}.changes.{path}: {message}"
                    for path, message in map(error_parts, exc.errors())
                )
                continue
            resolved.append((segment, effective))
        if problems:
            raise ValueError("; ".join(problems))
        self._resolved = tuple(resolved)
        self._by_connection = self._resolve_connections()
        return self

    def _resolve_connections(self) -> dict[str, HealthConfig]:
        """Each connection's effective configuration, validated as a whole, so a change that
        would break one connection's settings (its own or the global part) is refused with
        the path of the field that breaks."""
        effective: dict[str, HealthConfig] = {}
        problems: list[str] = []
        rules = {rule.name: rule for rule in self.alerts}
        global_segments = {segment.name for segment in self.segments}
        shared = self.model_dump(mode="json", exclude={"segments", "alerts", "connections"})
        for name, settings in self.connections.items():
            where = f"connections.{name}"
            found_before = len(problems)
            for index, segment in enumerate(settings.segments):
                if segment.name in global_segments:
                    problems.append(
                        f"{where}.segments.{index}.name: {segment.name!r} is the name of a "
                        "segment override that applies to every connection; pick another"
                    )
            for rule_name in settings.alerts:
                if rule_name not in rules:
                    problems.append(
                        f"{where}.alerts.{rule_name}: there is no alert rule by that name"
                    )
            if len(problems) > found_before:
                continue
            routed = tuple(
                rule
                if (route := settings.alerts.get(rule.name)) is None
                else rule.model_copy(
                    update={
                        "channels": rule.channels if route.channels is None else route.channels,
                        "enabled": rule.enabled and route.enabled,
                    }
                )
                for rule in self.alerts
            )
            try:
                effective[name] = HealthConfig.model_validate(
                    {
                        **shared,
                        "segments": [
                            segment.model_dump(mode="json")
                            for segment in (*settings.segments, *self.segments)
                        ],
                        "alerts": [rule.model_dump(mode="json") for rule in routed],
                    }
                )
            except ValidationError as exc:
                for path, message in map(error_parts, exc.errors()):
                    if path:
                        problems.append(f"{where}.{path}: {message}")
                    else:  # the segments' own validator: already "path: message; ..."
                        problems.extend(f"{where}.{part}" for part in message.split("; "))
        if problems:
            raise ValueError("; ".join(problems))
        if self.connections:
            self._everyone = HealthConfig.model_validate(
                self.model_dump(mode="json", exclude={"connections"})
            )
        return effective

    def resolved_segments(self) -> tuple[tuple[SegmentOverride, HealthConfig], ...]:
        """Each segment override with the full configuration it results in."""
        return self._resolved

    def for_connection(self, connection: str) -> HealthConfig:
        """The configuration that applies to the accounts of `connection`: the global one with
        that connection's segment overrides first and its alert routing applied."""
        found = self._by_connection.get(connection, self._everyone)
        return self if found is None else found

    @property
    def version(self) -> str:
        """A stable hash of the content: equal configurations have equal versions."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def scoring_version(self) -> str:
        """A stable hash of what decides scores and bands: everything but the alert rules
        (and other connections' settings). A band's hysteresis and a score-drop comparison
        hold only between scores computed under equal scoring versions."""
        content = self.model_dump(mode="json", exclude={"alerts", "connections"})
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> HealthConfig:
        return cls.model_validate_json(text)


def _deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


# The `kind` tag of every custom source, as pydantic puts it into error locations.
_SOURCE_KINDS = frozenset(source.model_fields["kind"].default for source in get_args(AnySource))


def error_path(location: tuple[int | str, ...]) -> str:
    """A validation error's location as the dotted path of the field, as the document and the
    admin page name it: pydantic puts a custom source's `kind` after `source`
    (`source.survey.days`), which is no field of the document (`source.days`)."""
    parts = [
        str(part)
        for index, part in enumerate(location)
        if not (index and location[index - 1] == "source" and part in _SOURCE_KINDS)
    ]
    return ".".join(parts)


def error_parts(error: ErrorDetails) -> tuple[str, str]:
    """A validation error as (its field path, "" for the whole document; its message without
    pydantic's "Value error, " before a validator's own words)."""
    return error_path(error["loc"]), error["msg"].removeprefix("Value error, ")
