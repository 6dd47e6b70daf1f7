"""The composite health score, its band (with hysteresis), the trend and the drivers.

`score()` runs for every account on every rescore and for every account in a configuration
preview, so a configuration is first compiled into a plan of plain numbers and the hot path
only measures and adds; the explanation (indicators, drivers, coverage) is worked out on
first access.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from signals.config import Bands, CustomIndicator, HealthConfig, IndicatorConfig
from signals.indicators import threshold_text, value_formatter
from signals.model import (
    BAND_RANK,
    AccountFacts,
    Band,
    Coverage,
    Explanation,
    Health,
    IndicatorResult,
    IndicatorSpec,
    Measure,
    Rating,
    Unit,
)
from signals.registry import SIGNAL_BY_NAME, SIGNAL_NAMES

# (signal name, signal weight, expected indicator weight, measure,
#  ((at_risk, scale, weight, optional) each))
_HotSignal = tuple[str, float, float, Measure, tuple[tuple[float, float, float, bool], ...]]

MAX_DRIVERS = 3

_NOT_A_CUSTOMER = Explanation(
    indicators=(), drivers=("Not a customer: not scored",), coverage=Coverage(ratio=0.0)
)

# (available signal weight, weighted sum of signal scores, signal scores, covered weight)
_Sums = tuple[float, float, dict[str, float | None], float]


@dataclass(frozen=True, slots=True)
class _Indicator:
    spec: IndicatorSpec
    at_risk: float
    scale: float  # 100 / (healthy - at_risk): negative when lower is better
    weight: float
    # Driver text pieces, fixed per configuration: only the value changes per account.
    format_value: Callable[[float], str]
    at_risk_text: str
    healthy_text: str

    @classmethod
    def compile(cls, spec: IndicatorSpec, config: IndicatorConfig) -> _Indicator:
        return cls(
            spec=spec,
            at_risk=config.at_risk,
            scale=100.0 / (config.healthy - config.at_risk),
            weight=config.weight,
            format_value=value_formatter(spec.unit),
            at_risk_text=threshold_text(spec.unit, config, at_risk=True),
            healthy_text=threshold_text(spec.unit, config, at_risk=False),
        )

    def interpolate(self, raw: float) -> float:
        """0 at the at-risk value, 100 at the healthy value, linear between, clamped.

        The direction follows from which end is larger, so "lower is better" indicators such
        as recency need no special case. (score() inlines the same arithmetic for speed.)
        """
        return max(0.0, min(100.0, (raw - self.at_risk) * self.scale))

    def describe(self, raw: float, score: float) -> str:
        """e.g. "Seat utilization 22% (at-risk <= 40%)": the at-risk threshold while in the
        at-risk zone, otherwise the healthy target the account has to reach."""
        threshold = self.at_risk_text if score <= 0.0 else self.healthy_text
        return f"{self.spec.label} {self.format_value(raw)} {threshold}"


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    weight: float
    measure: Measure
    # What it needs, named in the "not enough evidence" driver when it has no data at all.
    evidence: str
    # Aligned with what `measure` returns; an indicator with weight 0 is None (left out).
    indicators: tuple[_Indicator | None, ...]
    # The weight of the indicators that are not optional: what coverage expects to have data.
    indicator_weight: float

    def coverage_weight(self, used: Sequence[_Indicator]) -> float:
        """What coverage divides the indicators with data by: the expected weight plus the
        optional indicators' that have data."""
        return self.indicator_weight + sum(i.weight for i in used if i.spec.optional)

    @property
    def hot(self) -> _HotSignal:
        """The signal as plain tuples for the scoring loop: (at_risk, scale, weight, optional)
        each.

        A left-out indicator gets weight 0, which adds nothing to either sum.
        """
        return (
            self.name,
            self.weight,
            self.indicator_weight,
            self.measure,
            tuple((0.0, 0.0, 0.0, False) if i is None
                  else (i.at_risk, i.scale, i.weight, i.spec.optional)
                  for i in self.indicators),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Plan:
    signals: tuple[_Signal, ...]
    total_weight: float
    bands: Bands
    version: str
    healthy_min: float
    at_risk_below: float
    min_coverage: float
    onboarding_days: float
    sentiment_mode: str
    # (segment name, ((attribute, casefolded value), ...), plan), most specific first.
    segments: tuple[tuple[str, tuple[tuple[str, str], ...], _Plan], ...] = ()
    sums: Callable[[AccountFacts], _Sums] = field(default=lambda facts: (0.0, 0.0, {}, 0.0))

    def for_attributes(self, attributes: Mapping[str, str]) -> tuple[_Plan, str | None]:
        for name, match, plan in self.segments:
            for key, value in match:
                actual = attributes.get(key)
                if actual is None or actual.casefold() != value:
                    break
            else:
                return plan, name
        return self, None


# The CSM's sentiment as an indicator (HealthConfig.sentiment, mode "indicator"): red 0,
# amber half, green full marks. Optional: most accounts have none.
SENTIMENT_INDICATOR = "csm_sentiment"
_SENTIMENT_RAW = {Rating.RED: 0.0, Rating.AMBER: 0.5, Rating.GREEN: 1.0}
SENTIMENT_SPEC = IndicatorSpec(
    SENTIMENT_INDICATOR,
    "CSM sentiment",
    Unit.NUMBER,
    explanation="The customer success manager's judgement while it lasts: red 0, amber 0.5, "
    "green 1; higher is better.",
    at_risk=0.0,
    healthy=1.0,
    optional=True,
)
# The band a sentiment caps or overrides with (modes "cap" and "override").
_SENTIMENT_BAND = {Rating.RED: Band.AT_RISK, Rating.AMBER: Band.NEUTRAL, Rating.GREEN: Band.HEALTHY}
_VERDICTS = frozenset({Band.AT_RISK, Band.NEUTRAL, Band.HEALTHY})


def _sentiment_raw(facts: AccountFacts) -> float | None:
    sentiment = facts.sentiment
    return None if sentiment is None else _SENTIMENT_RAW[sentiment.rating]


def _with_custom(measure: Measure | None, keys: tuple[str, ...], *, sentiment: bool) -> Measure:
    """A signal's measure followed by its custom indicators' values, read from the facts, and
    the CSM sentiment's when it is an indicator of this signal."""
    if not keys and not sentiment:
        assert measure is not None  # a signal without custom indicators is a built-in one
        return measure
    builtin: Measure = measure if measure is not None else lambda _facts: ()
    if not sentiment:
        return lambda facts: (*builtin(facts), *map(facts.custom.get, keys))
    return lambda facts: (*builtin(facts), *map(facts.custom.get, keys), _sentiment_raw(facts))


def _compile_signal(
    *,
    name: str,
    weight: float,
    evidence: str,
    measure: Measure | None,
    parts: Sequence[tuple[IndicatorSpec, IndicatorConfig]],
    custom: Sequence[CustomIndicator],
    sentiment_weight: float = 0.0,
) -> _Signal | None:
    """One signal of the plan: its built-in indicators (`parts`, with `measure`), then its
    custom ones, then the CSM sentiment when it weighs something here; None when the signal
    weighs nothing."""
    parts = [
        *parts,
        *((i.spec, IndicatorConfig(at_risk=i.at_risk, healthy=i.healthy, weight=i.weight))
          for i in custom),
    ]  # fmt: skip
    if sentiment_weight > 0:
        spec = replace(SENTIMENT_SPEC, weight=sentiment_weight)
        parts.append((spec, IndicatorConfig(at_risk=0.0, healthy=1.0, weight=sentiment_weight)))
    indicators = tuple(
        _Indicator.compile(spec, config) if config.weight > 0 else None for spec, config in parts
    )
    if weight <= 0 or not any(i is not None for i in indicators):
        return None
    return _Signal(
        name=name,
        weight=weight,
        measure=_with_custom(
            measure, tuple(i.source.key for i in custom), sentiment=sentiment_weight > 0
        ),
        evidence=evidence,
        indicators=indicators,
        # Coverage expects data of the indicators that are not optional.
        indicator_weight=sum(i.weight for i in indicators if i is not None and not i.spec.optional),
    )


def _compile(config: HealthConfig) -> _Plan:
    custom: dict[str, list[CustomIndicator]] = {}
    for indicator in config.custom_indicators:
        custom.setdefault(indicator.signal, []).append(indicator)
    sentiment = config.sentiment
    # {signal: the sentiment's weight in it}, when it is an indicator.
    felt = {sentiment.signal: sentiment.weight} if sentiment.mode == "indicator" else {}
    compiled: list[_Signal | None] = []
    for name, signal_config in config.signals.items().items():
        spec = SIGNAL_BY_NAME[name]
        configs = signal_config.indicators.items()
        compiled.append(
            _compile_signal(
                name=name,
                weight=signal_config.weight,
                evidence=spec.evidence,
                measure=spec.measure,
                parts=[(indicator, configs[indicator.name]) for indicator in spec.indicators],
                custom=custom.get(name, []),
                sentiment_weight=felt.get(name, 0.0),
            )
        )
    for signal in config.custom_signals:
        compiled.append(
            _compile_signal(
                name=signal.name,
                weight=signal.weight,
                evidence=f"{signal.label} data",
                measure=None,
                parts=[],
                custom=custom.get(signal.name, []),
                sentiment_weight=felt.get(signal.name, 0.0),
            )
        )
    signals = [signal for signal in compiled if signal is not None]
    segments = sorted(
        (
            (
                segment.name,
                tuple((key, value.casefold()) for key, value in segment.match.items()),
                _compile(effective),
            )
            for segment, effective in config.resolved_segments()
        ),
        # Most specific first; sorted() is stable, so equals keep their listed order.
        key=lambda entry: -len(entry[1]),
    )
    return _Plan(
        signals=tuple(signals),
        total_weight=sum(signal.weight for signal in signals),
        bands=config.bands,
        version=config.version,
        healthy_min=config.bands.healthy_min,
        at_risk_below=config.bands.at_risk_below,
        min_coverage=config.bands.min_coverage,
        onboarding_days=config.bands.onboarding_days,
        sentiment_mode=sentiment.mode,
        segments=tuple(segments),
        sums=_generate_sums(
            tuple(signal.hot for signal in signals),
            (*SIGNAL_NAMES, *(signal.name for signal in config.custom_signals)),
        ),
    )


def _generate_sums(
    signals: tuple[_HotSignal, ...], names: tuple[str, ...]
) -> Callable[[AccountFacts], _Sums]:
    """Write the scoring loop out for one configuration, its numbers as constants.

    The same technique the standard library's dataclasses use for __init__: the generated
    function does exactly what `Indicator.interpolate` and a weighted mean do, without loop,
    tuple and attribute overhead (about a third of the time of the plain loop). A test pins
    its results to the reference computation of `_explain`.
    """
    lines = ["def sums(facts):", f"    scores = {dict.fromkeys(names)!r}"]
    lines.append("    available = total = covered = 0.0")
    namespace: dict[str, object] = {}
    for position, (name, signal_weight, indicator_weight, measure, indicators) in enumerate(
        signals
    ):
        namespace[f"measure_{position}"] = measure
        raws = [f"r{position}_{i}" for i in range(len(indicators))]
        lines.append(f"    {', '.join(raws)}, = measure_{position}(facts)")
        lines.append("    weighted = weight_sum = optional_sum = 0.0")
        for raw, (at_risk, scale, weight, optional) in zip(raws, indicators, strict=True):
            if weight <= 0.0:
                continue
            lines += [
                f"    if {raw} is not None:",
                f"        value = ({raw} - {at_risk!r}) * {scale!r}",
                "        value = 0.0 if value < 0.0 else (100.0 if value > 100.0 else value)",
                f"        weighted += value * {weight!r}",
                f"        weight_sum += {weight!r}",
            ]
            if optional:
                lines.append(f"        optional_sum += {weight!r}")
        lines += [
            "    if weight_sum > 0.0:",
            "        signal_score = weighted / weight_sum",
            f"        scores[{name!r}] = signal_score",
            f"        available += {signal_weight!r}",
            f"        total += {signal_weight!r} * signal_score",
            f"        covered += {signal_weight!r} * weight_sum"
            f" / ({indicator_weight!r} + optional_sum)",
        ]
    lines.append("    return available, total, scores, covered")
    exec(compile("\n".join(lines), "<crm-health scoring plan>", "exec"), namespace)  # noqa: S102
    generated: Callable[[AccountFacts], _Sums] = namespace["sums"]  # type: ignore[assignment]
    return generated


# Compiled plans by config identity; the config is kept in the value so its id stays unique.
_PLANS: OrderedDict[int, tuple[HealthConfig, _Plan]] = OrderedDict()
_PLAN_CACHE_SIZE = 64


def _plan_for(config: HealthConfig) -> _Plan:
    cached = _PLANS.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    plan = _compile(config)
    _PLANS[id(config)] = (config, plan)
    if len(_PLANS) > _PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return plan


def band_for(score: float | None, bands: Bands, previous: Band | None = None) -> Band:
    """The band for a score; a move up from `previous` needs the cutoff plus the hysteresis.

    Moves down happen at the cutoff itself: a warning should not wait.
    """
    if score is None:
        return Band.UNKNOWN
    plain = _band(score, bands.healthy_min, bands.at_risk_below)
    if previous is None or previous is Band.UNKNOWN or BAND_RANK[plain] <= BAND_RANK[previous]:
        return plain
    margin = bands.hysteresis
    raised = _band(score, bands.healthy_min + margin, bands.at_risk_below + margin)
    return raised if BAND_RANK[raised] > BAND_RANK[previous] else previous


def _band(score: float, healthy_min: float, at_risk_below: float) -> Band:
    if score >= healthy_min:
        return Band.HEALTHY
    if score < at_risk_below:
        return Band.AT_RISK
    return Band.NEUTRAL


def score(
    facts: AccountFacts,
    config: HealthConfig,
    *,
    previous_band: Band | None = None,
    score_30d_ago: int | None = None,
) -> Health:
    """Score one account. Pure: the same inputs always give the same health.

    A signal is the weighted mean of its indicators that have data; the composite is the
    weighted mean of the signals that have data (weights renormalise). A verdict needs
    evidence: when less than `bands.min_coverage` of the configured weight has data, there is
    no score and the band is "unknown", its first driver naming what is missing, never a
    score dragged down by absent records. A customer younger than `bands.onboarding_days`
    (from `facts.customer_since`) gets the band "onboarding" whatever its score. `config` is
    what applies to the account's connection (`HealthConfig.for_connection`): settings of other
    connections would be lost.
    """
    if config.connections:
        raise ValueError("score() needs one connection's configuration: config.for_connection()")
    if not config.customers.is_customer(facts.crm, facts.attributes.get("lifecycle")):
        return Health(
            score=None,
            band=Band.UNKNOWN,
            signals=dict.fromkeys(SIGNAL_NAMES),
            config_version=config.version,
            explain=lambda: _NOT_A_CUSTOMER,
            customer=False,
        )
    plan = _plan_for(config)
    segment: str | None = None
    if plan.segments:
        plan, segment = plan.for_attributes(facts.attributes)
    available_weight, weighted_signals, signal_scores, covered = plan.sums(facts)
    onboarding = (
        facts.customer_since is not None
        and (facts.as_of - facts.customer_since).total_seconds() < plan.onboarding_days * 86400
    )
    # The tolerance keeps a coverage of exactly the minimum (e.g. 0.5) on the side of a verdict.
    if available_weight == 0.0 or covered < plan.min_coverage * plan.total_weight - 1e-9:
        return Health(
            score=None,
            band=_felt(plan, facts, Band.ONBOARDING if onboarding else Band.UNKNOWN),
            sentiment=facts.sentiment,
            signals=signal_scores,
            segment=segment,
            config_version=plan.version,
            explain=lambda: _explain(plan, facts, enough_evidence=False),
        )
    rounded = round(weighted_signals / available_weight)
    if rounded >= plan.healthy_min:
        band = Band.HEALTHY
    elif rounded < plan.at_risk_below:
        band = Band.AT_RISK
    else:
        band = Band.NEUTRAL
    if previous_band is not None and BAND_RANK[band] > BAND_RANK[previous_band]:
        band = band_for(rounded, plan.bands, previous_band)
    if onboarding:
        band = Band.ONBOARDING
    return Health(
        score=rounded,
        band=_felt(plan, facts, band),
        sentiment=facts.sentiment,
        signals=signal_scores,
        trend_30d=None if score_30d_ago is None else rounded - score_30d_ago,
        segment=segment,
        config_version=plan.version,
        explain=lambda: _explain(plan, facts),
    )


def _felt(plan: _Plan, facts: AccountFacts, band: Band) -> Band:
    """The band under the CSM's sentiment: capped at the sentiment's (a verdict only: no
    evidence stays no verdict), or replaced by it, as the configuration says."""
    sentiment = facts.sentiment
    if sentiment is None or plan.sentiment_mode == "indicator":
        return band
    felt = _SENTIMENT_BAND[sentiment.rating]
    if plan.sentiment_mode == "override":
        return felt
    if band in _VERDICTS and BAND_RANK[band] > BAND_RANK[felt]:
        return felt
    return band


def _explain(plan: _Plan, facts: AccountFacts, *, enough_evidence: bool = True) -> Explanation:
    """Indicators, drivers and coverage, measured again with every detail kept.

    Without enough evidence the first driver says so and names what has no data: a whole
    signal by what it needs ("no product usage"), else its indicators by label.
    """
    measured: list[tuple[_Signal, float, list[tuple[_Indicator, float, float]]]] = []
    missing: list[str] = []
    for signal in plan.signals:
        raws = signal.measure(facts)
        used = [
            (indicator, raw, indicator.interpolate(raw))
            for indicator, raw in zip(signal.indicators, raws)  # noqa: B905
            if raw is not None and indicator is not None
        ]
        if used:
            measured.append((signal, sum(i.weight for i, _, _ in used), used))
            missing.extend(
                indicator.spec.label
                for indicator, raw in zip(signal.indicators, raws)  # noqa: B905
                if raw is None and indicator is not None and not indicator.spec.optional
            )
        else:
            missing.append(signal.evidence)
    available_weight = sum(signal.weight for signal, _, _ in measured)
    results: list[IndicatorResult] = []
    costs: list[tuple[float, _Indicator, float, float]] = []
    covered_weight = 0.0
    for signal, weight_sum, used in measured:
        covered_weight += (
            signal.weight * weight_sum / signal.coverage_weight([i for i, _, _ in used])
        )
        share = signal.weight / available_weight / weight_sum
        for indicator, raw, value in used:
            weight = share * indicator.weight
            results.append(IndicatorResult(signal.name, indicator.spec.name, raw, value, weight))
            if value < 100.0:
                costs.append((weight * (100.0 - value), indicator, raw, value))
    # Drivers: the indicators that cost the composite the most points (weight x shortfall);
    # the sentiment speaks for itself, first.
    costs = [entry for entry in costs if entry[1].spec.name != SENTIMENT_INDICATOR]
    costs.sort(key=lambda entry: entry[0], reverse=True)
    ratio = round(covered_weight / plan.total_weight, 4) if plan.total_weight else 0.0
    # Only the costliest are kept: the others are not worth putting into words.
    drivers = [ind.describe(raw, value) for _, ind, raw, value in costs[:MAX_DRIVERS]]
    if facts.sentiment is not None:
        drivers.insert(0, facts.sentiment.text)
    if not enough_evidence:
        drivers.insert(
            0,
            f"Not enough evidence ({ratio:.0%} of the weight has data, "
            f"{plan.min_coverage:.0%} needed): no {', '.join(missing)}",
        )
    return Explanation(
        indicators=tuple(results),
        drivers=tuple(drivers[:MAX_DRIVERS]),
        coverage=Coverage(
            ratio=ratio,
            signals=tuple(signal.name for signal, _, _ in measured),
            indicators=tuple(f"{result.signal}.{result.name}" for result in results),
        ),
    )
