"""Scores that predict: how well a health configuration ranked known churn below renewals
(`evaluate`), and the thresholds and weights a book's own outcomes support (`suggest`).

Pure: the service reads each outcome's facts as of the horizon before it and hands over the
cases; everything here is rank statistics over `signals.scoring.score`.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from signals.config import HealthConfig, error_parts
from signals.model import AccountFacts, Band, Health
from signals.registry import SIGNAL_BY_NAME, SIGNAL_NAMES
from signals.scoring import score

Direction = Literal["higher", "lower"]

# The order bands are listed in: verdicts from best to worst, then no verdict.
BANDS_LISTED = (Band.HEALTHY, Band.NEUTRAL, Band.AT_RISK, Band.ONBOARDING, Band.UNKNOWN)
# λ, the share of the current weights a suggestion keeps: 0 is the fit alone, 1 the current.
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Below this AUC (oriented) a part says too little to move a threshold or earn weight.
MIN_POWER = 0.55
ROC_POINTS = 101
LEVEL = 0.95
# Why a case has no score (Evaluation.why).
NOT_A_CUSTOMER = "not a customer"
NO_DATA = "no data"
TOO_LITTLE_EVIDENCE = "too little evidence"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One known outcome: the account (bootstrap and folds group by it), whether it churned
    (else it renewed), and its facts as of the outcome minus the horizon."""

    account: str
    churned: bool
    facts: AccountFacts


# --- rank statistics --------------------------------------------------------------------------


def _tie_groups(values: Sequence[float]) -> list[list[int]]:
    """The positions of `values`, grouped by equal value, groups in ascending order."""
    groups: list[list[int]] = []
    last = 0.0
    for index in sorted(range(len(values)), key=values.__getitem__):
        value = values[index]
        if groups and value == last:
            groups[-1].append(index)
        else:
            groups.append([index])
            last = value
    return groups


def _rank_sum(groups: Iterable[tuple[int, int]]) -> float | None:
    """The AUC from (renewed, churned) counts of each tie group, in ascending order of value:
    each renewed case scores 1 for every churned case below it and 1/2 for each tied one (the
    Mann-Whitney rank sum). None without both outcomes."""
    numerator = 0.0
    churned_below = renewed_total = 0
    for group_renewed, group_churned in groups:
        numerator += group_renewed * (churned_below + group_churned / 2)
        churned_below += group_churned
        renewed_total += group_renewed
    if not renewed_total or not churned_below:
        return None
    return numerator / (renewed_total * churned_below)


def auc(values: Sequence[float], churned: Sequence[bool]) -> float | None:
    """P(a renewed case's value > a churned case's), ties counting one half: the area under
    the ROC curve, by one sort. None without both outcomes."""
    counts = []
    for group in _tie_groups(values):
        group_churned = sum(map(churned.__getitem__, group))
        counts.append((len(group) - group_churned, group_churned))
    return _rank_sum(counts)


def _weighted_auc(groups: Sequence[tuple[list[int], list[int]]], counts: list[int]) -> float | None:
    """The AUC with each case counted as often as its account was drawn: `groups` holds the
    account positions of the renewed and the churned cases of each tie group, ascending."""
    return _rank_sum(
        (sum(map(counts.__getitem__, renewed)), sum(map(counts.__getitem__, churned)))
        for renewed, churned in groups
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def auc_interval(
    values: Sequence[float],
    churned: Sequence[bool],
    accounts: Sequence[str],
    *,
    resamples: int,
    seed: int,
    level: float = LEVEL,
) -> tuple[float, float, int] | None:
    """The percentile bootstrap interval of `auc`: (low, high, resamples with an AUC).

    Accounts are drawn with replacement, each bringing all its cases: an account's outcomes
    are not independent evidence. One sort; each resample is one weighted pass.
    """
    if resamples <= 0:
        return None
    names = sorted(set(accounts))
    position = {name: index for index, name in enumerate(names)}
    groups = [
        (
            [position[accounts[i]] for i in group if not churned[i]],
            [position[accounts[i]] for i in group if churned[i]],
        )
        for group in _tie_groups(values)
    ]
    # Reproducible resampling, no secret: the same seed gives the same interval.
    rng = random.Random(seed)  # noqa: S311
    draws = range(len(names))
    found: list[float] = []
    for _ in range(resamples):
        counts = [0] * len(names)
        for drawn in rng.choices(draws, k=len(names)):
            counts[drawn] += 1
        value = _weighted_auc(groups, counts)
        if value is not None:
            found.append(value)
    if not found:
        return None
    found.sort()
    tail = (1.0 - level) / 2
    return _quantile(found, tail), _quantile(found, 1.0 - tail), len(found)


def youden_cut(
    values: Sequence[float], churned: Sequence[bool], direction: Direction
) -> tuple[float, float] | None:
    """The cut that maximises Youden's J = true positive rate - false positive rate of "at or
    below it predicts churn" (at or above for lower-is-healthier): (cut, J)."""
    oriented = values if direction == "higher" else [-value for value in values]
    churned_total = sum(churned)
    renewed_total = len(churned) - churned_total
    if not churned_total or not renewed_total:
        return None
    best: tuple[float, float] | None = None
    churned_below = renewed_below = 0
    for group in _tie_groups(oriented):
        group_churned = sum(map(churned.__getitem__, group))
        churned_below += group_churned
        renewed_below += len(group) - group_churned
        j = churned_below / churned_total - renewed_below / renewed_total
        if best is None or j > best[1]:
            best = (values[group[0]], j)
    return best


def normalise(weights: Mapping[str, float]) -> dict[str, float]:
    """Shares summing to 1; all zero stays all zero (nothing to share)."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, 0.0)
    return {key: weight / total for key, weight in weights.items()}


def separation(area: float | None) -> float:
    """A part's fitted weight before normalising: AUC - 0.5, none below MIN_POWER."""
    return 0.0 if area is None or area < MIN_POWER else area - 0.5


def blend_weights(
    fitted: Mapping[str, float], current: Mapping[str, float], keep: float
) -> dict[str, float]:
    """normalise((1 - keep) x fitted + keep x current), both as shares of the parts of
    `current`. Where nothing was fitted (all 0: no part separates) the fit is the current
    shares."""
    current_shares = normalise(current)
    fitted_shares = _fitted_or_current({key: fitted.get(key, 0.0) for key in current}, current)
    return normalise(
        {
            key: (1.0 - keep) * fitted_shares.get(key, 0.0) + keep * share
            for key, share in current_shares.items()
        }
    )


def _fitted_or_current(
    fitted: Mapping[str, float], current: Mapping[str, float]
) -> dict[str, float]:
    """The fitted shares; the current ones where no part separates (nothing to go by)."""
    shares = normalise(fitted)
    return shares if any(shares.values()) else normalise(current)


def _direction(area: float | None) -> Direction | None:
    if area is None or area == 0.5:
        return None
    return "higher" if area > 0.5 else "lower"


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _significant(value: float) -> float:
    """A threshold as an admin would write it: 4 significant digits."""
    return float(f"{value:.4g}")


def _significant_or_none(value: float | None) -> float | None:
    return None if value is None else _significant(value)


# --- results ----------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class Interval(_Result):
    """The percentile bootstrap interval of the AUC, over the resamples that had one."""

    low: float
    high: float
    level: float
    resamples: int


class RocPoint(_Result):
    """The false and true positive rates of reading a score at or below `threshold` as churn
    (the first point, before any threshold: 0, 0)."""

    threshold: float | None
    fpr: float
    tpr: float


class BandOutcomes(_Result):
    """One row of the band x outcome table: churn_rate = churned / cases (the precision of the
    band as a churn warning), recall = churned / all churned, lift = churn_rate / the overall
    churn rate; None where a denominator is 0."""

    band: Band
    cases: int
    churned: int
    renewed: int
    churn_rate: float | None
    recall: float | None
    lift: float | None


class SignalPower(_Result):
    """How well a signal's score ranked the outcomes, over the cases that have one."""

    name: str
    weight: float
    cases: int
    coverage: float
    auc: float | None


class IndicatorPower(_Result):
    """How well an indicator's raw value ranked the outcomes: `direction` is what the data
    say (AUC above 0.5: higher is healthier), `configured` what the thresholds assume;
    power = max(auc, 1 - auc)."""

    key: str
    signal: str
    name: str
    weight: float
    cases: int
    coverage: float
    auc: float | None
    power: float | None
    direction: Direction | None
    configured: Direction


class Evaluation(_Result):
    """How well a configuration ranked known churn below renewals (see `method`)."""

    cases: int
    churned: int
    renewed: int
    scored: int
    unscored: int
    why: dict[str, int]
    auc: float | None
    auc_interval: Interval | None
    roc: list[RocPoint]
    bands: list[BandOutcomes]
    signals: list[SignalPower]
    indicators: list[IndicatorPower]
    method: str


class Setting(_Result):
    """An indicator's thresholds and weight; `share` is the weight's share of the fitted
    indicators of its signal."""

    at_risk: float
    healthy: float
    weight: float
    share: float


class IndicatorSuggestion(_Result):
    """An indicator's evidence (fitted on all cases) and its current and suggested settings;
    `fitted_share` is its share of the signal by its separation alone (λ = 0), `note` why
    its thresholds moved or not."""

    key: str
    signal: str
    name: str
    cases: int
    coverage: float
    auc: float | None
    power: float | None
    direction: Direction | None
    configured: Direction
    median_churned: float | None
    median_renewed: float | None
    youden_cut: float | None
    youden_j: float | None
    fitted_share: float
    current: Setting
    suggested: Setting
    thresholds_changed: bool
    note: str


class SignalWeight(_Result):
    """A signal's weight as written and its share of all signals' weight."""

    weight: float
    share: float


class SignalSuggestion(_Result):
    """A signal's score's AUC under the suggested thresholds and indicator weights, and its
    current and suggested weight in the composite."""

    name: str
    cases: int
    coverage: float
    auc: float | None
    fitted_share: float
    current: SignalWeight
    suggested: SignalWeight


class BlendScore(_Result):
    """The cross-validated AUC of one λ (`blend`: the share of the current weights kept)."""

    blend: float
    auc: float | None
    scored: int


class CrossValidation(_Result):
    """The current and the suggested configuration's AUC over the same cases, and each λ's."""

    folds: int
    seed: int
    current_auc: float | None
    current_scored: int
    suggested_auc: float | None
    suggested_scored: int
    blend: float
    by_blend: list[BlendScore]


class Suggestion(_Result):
    """Thresholds and weights the outcomes support, and `config`: the whole candidate
    configuration, differing from the one given only in those (see `method`)."""

    status: Literal["suggested"] = "suggested"
    cases: int
    churned: int
    renewed: int
    improves: bool
    cross_validation: CrossValidation
    indicators: list[IndicatorSuggestion]
    signals: list[SignalSuggestion]
    notes: list[str]
    config: dict[str, Any]
    method: str


class Refusal(_Result):
    """Why nothing is suggested: too few outcomes (or accounts) to go by."""

    status: Literal["refused"] = "refused"
    reason: str
    cases: int
    churned: int
    renewed: int
    min_churned: int


# --- the book: the indicators looked at and their raw values ----------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """An indicator looked at: a built-in one with a weight above 0 or a custom one."""

    signal: str
    name: str
    at_risk: float
    healthy: float
    weight: float
    # Built-in: its position in the signal's measure; custom: in config.custom_indicators.
    position: int
    # Custom: where the facts hold its value (AccountFacts.custom); None for built-in ones.
    source_key: str | None = None

    @property
    def key(self) -> str:
        return f"{self.signal}.{self.name}"

    @property
    def builtin(self) -> bool:
        return self.source_key is None

    @property
    def direction(self) -> Direction:
        return "higher" if self.healthy > self.at_risk else "lower"


def signal_names(config: HealthConfig) -> tuple[str, ...]:
    return (*SIGNAL_NAMES, *(signal.name for signal in config.custom_signals))


def _signal_weights(config: HealthConfig) -> dict[str, float]:
    weights = {name: signal.weight for name, signal in config.signals.items().items()}
    weights.update((signal.name, signal.weight) for signal in config.custom_signals)
    return weights


def _parts(config: HealthConfig) -> tuple[_Part, ...]:
    """Each signal's indicators looked at, built-in ones first, signals in their order."""
    parts: list[_Part] = []
    builtin = config.signals.items()
    for signal in signal_names(config):
        if signal in builtin:
            configured = builtin[signal].indicators.items()
            for position, spec in enumerate(SIGNAL_BY_NAME[signal].indicators):
                found = configured[spec.name]
                if found.weight > 0:
                    parts.append(
                        _Part(
                            signal, spec.name, found.at_risk, found.healthy, found.weight, position
                        )
                    )
        parts.extend(
            _Part(i.signal, i.name, i.at_risk, i.healthy, i.weight, index, i.source.key)
            for index, i in enumerate(config.custom_indicators)
            if i.signal == signal
        )
    return tuple(parts)


def _measure(facts: AccountFacts, parts: Sequence[_Part]) -> list[float | None]:
    """The raw values of `parts` for one account, as scoring measures them."""
    measured: dict[str, tuple[float | None, ...]] = {}
    row: list[float | None] = []
    for part in parts:
        if part.source_key is not None:
            raw = facts.custom.get(part.source_key)
        else:
            values = measured.get(part.signal)
            if values is None:
                values = measured[part.signal] = SIGNAL_BY_NAME[part.signal].measure(facts)
            raw = values[part.position]
        # A value that cannot be ranked is no data, as an absent one.
        row.append(raw if raw is not None and math.isfinite(raw) else None)
    return row


@dataclass(frozen=True, slots=True)
class _Book:
    cases: Sequence[Case]
    churned: tuple[bool, ...]
    # Customers by the configuration: only they are scored, so only they are looked at.
    customer: tuple[bool, ...]
    parts: tuple[_Part, ...]
    # Per part, per case: the raw value (None: no data, or not a customer).
    columns: tuple[tuple[float | None, ...], ...]

    @classmethod
    def of(cls, cases: Sequence[Case], config: HealthConfig) -> _Book:
        parts = _parts(config)
        customer = tuple(
            config.customers.is_customer(case.facts.crm, case.facts.attributes.get("lifecycle"))
            for case in cases
        )
        nothing: list[float | None] = [None] * len(parts)
        rows = [
            _measure(case.facts, parts) if is_customer else nothing
            for case, is_customer in zip(cases, customer, strict=True)
        ]
        return cls(
            cases=cases,
            churned=tuple(case.churned for case in cases),
            customer=customer,
            parts=parts,
            columns=tuple(tuple(row[k] for row in rows) for k in range(len(parts))),
        )

    def present(
        self, column: Sequence[float | None], members: Iterable[int]
    ) -> tuple[list[float], list[bool]]:
        """The values of `column` that have data among `members`, with their outcomes."""
        values: list[float] = []
        outcomes: list[bool] = []
        for index in members:
            raw = column[index]
            if raw is not None:
                values.append(raw)
                outcomes.append(self.churned[index])
        return values, outcomes


def _signal_values(
    healths: Iterable[tuple[int, Health]], names: Sequence[str], churned: Sequence[bool]
) -> dict[str, tuple[list[float], list[bool]]]:
    """Each signal's scores, with their outcomes, over the cases that have one."""
    found: dict[str, tuple[list[float], list[bool]]] = {name: ([], []) for name in names}
    for index, health in healths:
        for name in names:
            value = health.signals.get(name)
            if value is not None:
                found[name][0].append(value)
                found[name][1].append(churned[index])
    return found


# --- evaluate ---------------------------------------------------------------------------------


def _unscored_reason(health: Health) -> str:
    if not health.customer:
        return NOT_A_CUSTOMER
    if all(value is None for value in health.signals.values()):
        return NO_DATA
    return TOO_LITTLE_EVIDENCE


def roc_curve(
    values: Sequence[float], churned: Sequence[bool], *, points: int = ROC_POINTS
) -> list[RocPoint]:
    """From (0, 0) to (1, 1): for each value t, the false and true positive rates of "at or
    below t predicts churn"; thinned evenly to at most `points` (the ends kept)."""
    churned_total = sum(churned)
    renewed_total = len(churned) - churned_total
    if not churned_total or not renewed_total:
        return []
    curve = [RocPoint(threshold=None, fpr=0.0, tpr=0.0)]
    churned_below = renewed_below = 0
    for group in _tie_groups(values):
        group_churned = sum(map(churned.__getitem__, group))
        churned_below += group_churned
        renewed_below += len(group) - group_churned
        curve.append(
            RocPoint(
                threshold=values[group[0]],
                fpr=round(renewed_below / renewed_total, 4),
                tpr=round(churned_below / churned_total, 4),
            )
        )
    if len(curve) <= points:
        return curve
    last = len(curve) - 1
    return [curve[round(k * last / (points - 1))] for k in range(points)]


def _bands(healths: Sequence[Health], churned: Sequence[bool]) -> list[BandOutcomes]:
    cases = dict.fromkeys(BANDS_LISTED, 0)
    churned_in = dict.fromkeys(BANDS_LISTED, 0)
    for health, outcome in zip(healths, churned, strict=True):
        cases[health.band] += 1
        churned_in[health.band] += outcome
    churned_total = sum(churned)
    overall = churned_total / len(healths) if healths else None
    found = []
    for band in BANDS_LISTED:
        rate = churned_in[band] / cases[band] if cases[band] else None
        found.append(
            BandOutcomes(
                band=band,
                cases=cases[band],
                churned=churned_in[band],
                renewed=cases[band] - churned_in[band],
                churn_rate=_round(rate),
                recall=_round(churned_in[band] / churned_total) if churned_total else None,
                lift=_round(rate / overall) if rate is not None and overall else None,
            )
        )
    return found


def _signal_powers(
    healths: Sequence[Health], config: HealthConfig, churned: Sequence[bool]
) -> list[SignalPower]:
    names = signal_names(config)
    weights = _signal_weights(config)
    values = _signal_values(enumerate(healths), names, churned)
    return [
        SignalPower(
            name=name,
            weight=weights[name],
            cases=len(values[name][0]),
            coverage=_round(len(values[name][0]) / len(healths)) if healths else 0.0,
            auc=_round(auc(*values[name])),
        )
        for name in names
    ]


def _indicator_power(book: _Book, position: int) -> IndicatorPower:
    part = book.parts[position]
    values, outcomes = book.present(book.columns[position], range(len(book.cases)))
    area = auc(values, outcomes)
    return IndicatorPower(
        key=part.key,
        signal=part.signal,
        name=part.name,
        weight=part.weight,
        cases=len(values),
        coverage=round(len(values) / len(book.cases), 4) if book.cases else 0.0,
        auc=_round(area),
        power=None if area is None else round(max(area, 1.0 - area), 4),
        direction=_direction(area),
        configured=part.direction,
    )


def _interval(found: tuple[float, float, int] | None) -> Interval | None:
    if found is None:
        return None
    low, high, resamples = found
    return Interval(low=round(low, 4), high=round(high, 4), level=LEVEL, resamples=resamples)


def evaluation_method(*, resamples: int, seed: int) -> str:
    return (
        "Each case is one known outcome, renewed or churned, scored once under the "
        "configuration with the account's facts as of the horizon before it (no hysteresis). "
        "AUC: the probability that a renewed case scores higher than a churned one, ties "
        "counting one half (the Mann-Whitney rank sum), over the cases with a score; 0.5 is "
        "chance, 1 a perfect ranking, below 0.5 a ranking the wrong way round. Its "
        f"{LEVEL:.0%} interval: the 2.5th to the 97.5th percentile of the AUC over "
        f"{resamples} bootstrap resamples that draw accounts with replacement, each drawn "
        f"account bringing all its cases (seed {seed}). ROC curve: for each score t, the "
        "share of the renewed (false positive rate) and of the churned (true positive rate) "
        "cases scoring at or below t. Bands: churn rate = churned / cases in the band (the "
        "precision of reading the band as a churn warning); recall = the band's share of all "
        "churned cases; lift = the band's churn rate / the churn rate of all cases. Signals: "
        "the AUC of the signal's score over the cases that have one (a signal weighing 0 has "
        "none); coverage = their share of all cases. Indicators (the built-in ones weighing "
        "more than 0 and every custom one): the AUC of the raw value, P(renewed raw > churned "
        "raw); above 0.5 the data say higher is healthier (direction), below 0.5 lower; power "
        "= max(AUC, 1 - AUC); configured = the direction the thresholds assume (healthy above "
        "at_risk: higher). Cases of accounts that are not customers by the configuration, or "
        "without the evidence for a score (bands.min_coverage), count in the unknown band and "
        "in `why`, in no AUC."
    )


def evaluate(
    cases: Sequence[Case], config: HealthConfig, *, resamples: int = 200, seed: int = 0
) -> Evaluation:
    """How well `config` ranked the churned cases below the renewed ones, in whole (AUC with
    a bootstrap interval, ROC curve), per band, per signal and per indicator."""
    book = _Book.of(cases, config)
    healths = [score(case.facts, config) for case in cases]
    scored = [(i, health.score) for i, health in enumerate(healths) if health.score is not None]
    values = [float(value) for _, value in scored]
    outcomes = [book.churned[i] for i, _ in scored]
    area = auc(values, outcomes)
    interval = (
        auc_interval(
            values,
            outcomes,
            [cases[i].account for i, _ in scored],
            resamples=resamples,
            seed=seed,
        )
        if area is not None
        else None
    )
    # In a fixed order, whatever the order of the cases.
    why = dict.fromkeys((NOT_A_CUSTOMER, NO_DATA, TOO_LITTLE_EVIDENCE), 0)
    for health in healths:
        if health.score is None:
            why[_unscored_reason(health)] += 1
    churned = sum(book.churned)
    return Evaluation(
        cases=len(cases),
        churned=churned,
        renewed=len(cases) - churned,
        scored=len(scored),
        unscored=len(cases) - len(scored),
        why={reason: count for reason, count in why.items() if count},
        auc=_round(area),
        auc_interval=_interval(interval),
        roc=roc_curve(values, outcomes),
        bands=_bands(healths, book.churned),
        signals=_signal_powers(healths, config, book.churned),
        indicators=[_indicator_power(book, k) for k in range(len(book.parts))],
        method=evaluation_method(resamples=resamples, seed=seed),
    )


# --- suggest: thresholds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _IndicatorFit:
    part: _Part
    cases: int
    auc: float | None
    median_churned: float | None
    median_renewed: float | None
    youden: tuple[float, float] | None
    at_risk: float
    healthy: float
    note: str

    @property
    def changed(self) -> bool:
        return (self.at_risk, self.healthy) != (self.part.at_risk, self.part.healthy)

    @property
    def separation(self) -> float:
        """Its fitted weight before normalising: the AUC oriented by its thresholds."""
        if self.auc is None:
            return 0.0
        return separation(self.auc if self.healthy > self.at_risk else 1.0 - self.auc)


# Per built-in indicator key: (segment name, at_risk, healthy) of each segment override that
# sets one of its thresholds but not the other.
_Partials = Mapping[str, Sequence[tuple[str, float | None, float | None]]]


def _partial_overrides(
    config: HealthConfig,
) -> dict[str, list[tuple[str, float | None, float | None]]]:
    """The segment overrides that set one threshold of an indicator and keep the other from
    the base configuration: a suggested base threshold could turn them the wrong way."""
    found: dict[str, list[tuple[str, float | None, float | None]]] = {}
    for segment in config.segments:
        signals: Any = segment.changes.get("signals")
        for signal, changes in (signals or {}).items():
            for name, change in ((changes or {}).get("indicators") or {}).items():
                at_risk, healthy = change.get("at_risk"), change.get("healthy")
                if (at_risk is None) != (healthy is None):
                    found.setdefault(f"{signal}.{name}", []).append(
                        (segment.name, at_risk, healthy)
                    )
    return found


def _thresholds(
    part: _Part,
    area: float | None,
    medians: tuple[float | None, float | None],
    partials: _Partials,
) -> tuple[float, float, str]:
    """(at_risk, healthy, why): the medians of the churned and of the renewed cases where the
    indicator separates them, else the current thresholds."""
    kept = part.at_risk, part.healthy
    if area is None:
        return (*kept, "no suggestion: too few cases of both outcomes have data")
    if max(area, 1.0 - area) < MIN_POWER:
        return (*kept, f"no suggestion: AUC {area:.2f}")
    median_churned, median_renewed = medians
    # An AUC needs both outcomes, so both medians exist.
    assert median_churned is not None
    assert median_renewed is not None
    at_risk, healthy = _significant(median_churned), _significant(median_renewed)
    if at_risk == healthy:
        return (*kept, f"no suggestion: churned and renewed medians are both {at_risk:g}")
    if (healthy > at_risk) != (area > 0.5):
        return (
            *kept,
            f"no suggestion: the medians (churned {at_risk:g}, renewed {healthy:g}) run "
            f"against the AUC {area:.2f}",
        )
    for segment, its_at_risk, its_healthy in partials.get(part.key, ()):
        merged = (
            at_risk if its_at_risk is None else its_at_risk,
            healthy if its_healthy is None else its_healthy,
        )
        if (merged[1] > merged[0]) != (healthy > at_risk) or merged[0] == merged[1]:
            return (
                *kept,
                f"no suggestion: segment override {segment!r} sets one threshold, which the "
                f"suggested {at_risk:g} / {healthy:g} would turn around",
            )
    return at_risk, healthy, f"medians: churned {at_risk:g}, renewed {healthy:g}"


def _fit_indicator(
    book: _Book, position: int, members: Sequence[int], partials: _Partials
) -> _IndicatorFit:
    part = book.parts[position]
    values, outcomes = book.present(book.columns[position], members)
    area = auc(values, outcomes)
    churned = [value for value, outcome in zip(values, outcomes, strict=True) if outcome]
    renewed = [value for value, outcome in zip(values, outcomes, strict=True) if not outcome]
    medians = (
        statistics.median(churned) if churned else None,
        statistics.median(renewed) if renewed else None,
    )
    direction = _direction(area)
    at_risk, healthy, note = _thresholds(part, area, medians, partials)
    return _IndicatorFit(
        part=part,
        cases=len(values),
        auc=area,
        median_churned=medians[0],
        median_renewed=medians[1],
        youden=None if direction is None else youden_cut(values, outcomes, direction),
        at_risk=at_risk,
        healthy=healthy,
        note=note,
    )


# --- suggest: weights and the candidate configuration -----------------------------------------


def _by_signal(fits: Sequence[_IndicatorFit]) -> dict[str, list[_IndicatorFit]]:
    grouped: dict[str, list[_IndicatorFit]] = {}
    for fit in fits:
        grouped.setdefault(fit.part.signal, []).append(fit)
    return grouped


def _indicator_shares(
    fits: Sequence[_IndicatorFit], keep: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Each indicator's share of its signal: (fitted, blended with the current)."""
    fitted: dict[str, float] = {}
    shares: dict[str, float] = {}
    for group in _by_signal(fits).values():
        current = {fit.part.key: fit.part.weight for fit in group}
        its_fit = _fitted_or_current({fit.part.key: fit.separation for fit in group}, current)
        fitted.update(its_fit)
        shares.update(blend_weights(its_fit, current, keep))
    return fitted, shares


def _indicator_weights(
    fits: Sequence[_IndicatorFit], shares: Mapping[str, float], builtin: Iterable[str]
) -> dict[str, float]:
    """The weights written: each share times the current weight of the indicators fitted in
    its signal, so parts outside the fit (the CSM sentiment's indicator) keep theirs. A
    built-in signal keeps its current weights where none of its built-in indicators would
    weigh anything (the configuration requires one)."""
    builtin_signals = set(builtin)
    weights: dict[str, float] = {}
    for signal, group in _by_signal(fits).items():
        total = sum(fit.part.weight for fit in group) or 1.0
        proposed = {fit.part.key: round(shares[fit.part.key] * total, 4) for fit in group}
        needed = [fit for fit in group if fit.part.builtin or signal not in builtin_signals]
        if any(fit.part.weight > 0 for fit in needed) and not any(
            proposed[fit.part.key] > 0 for fit in needed
        ):
            proposed = {fit.part.key: fit.part.weight for fit in group}
        weights.update(proposed)
    return weights


def _document(
    base: Mapping[str, Any],
    fits: Sequence[_IndicatorFit],
    indicator_weights: Mapping[str, float] | None,
    signal_weights: Mapping[str, float] | None,
) -> dict[str, Any]:
    """`base` with the fitted thresholds and the given weights (None: the current ones)."""
    document: dict[str, Any] = copy.deepcopy(dict(base))
    for fit in fits:
        part = fit.part
        if part.builtin:
            target = document["signals"][part.signal]["indicators"][part.name]
        else:
            target = document["custom_indicators"][part.position]
        target["at_risk"], target["healthy"] = fit.at_risk, fit.healthy
        if indicator_weights is not None:
            target["weight"] = indicator_weights[part.key]
    custom = {signal["name"]: signal for signal in document["custom_signals"]}
    for name, weight in (signal_weights or {}).items():
        (document["signals"][name] if name in document["signals"] else custom[name])["weight"] = (
            weight
        )
    return document


def _first_valid(
    documents: Sequence[tuple[str, Callable[[], dict[str, Any]]]], notes: list[str]
) -> HealthConfig:
    """The first of (what it fits, document) that validates, the last being one known to; a
    note says why those before did not (a segment override the fitted weights would leave
    with no indicator weighing anything)."""
    for fitted, make in documents[:-1]:
        try:
            return HealthConfig.model_validate(make())
        except ValidationError as exc:
            path, message = error_parts(exc.errors()[0])
            where = f"{path}: " if path else ""
            notes.append(f"the fitted {fitted} do not validate ({where}{message}): not used")
    return HealthConfig.model_validate(documents[-1][1]())


@dataclass(frozen=True, slots=True)
class _Candidate:
    config: HealthConfig
    # The shares fitted before blending (what the data alone say), per indicator and signal.
    fitted_indicators: Mapping[str, float]
    fitted_signals: Mapping[str, float]
    # Per signal: its score's values and outcomes under the fitted thresholds and weights.
    signal_values: Mapping[str, tuple[list[float], list[bool]]]
    notes: tuple[str, ...]


def _candidate(
    book: _Book,
    config: HealthConfig,
    *,
    base: Mapping[str, Any],
    fits: Sequence[_IndicatorFit],
    members: Sequence[int],
    keep: float,
) -> _Candidate:
    """The configuration fitted on `members` with `keep` of the current weights: thresholds
    and indicator weights first, then the signals' weights from their scores under those."""
    notes: list[str] = []
    fitted_indicators, indicator_shares = _indicator_shares(fits, keep)
    indicator_weights = _indicator_weights(fits, indicator_shares, config.signals.items())
    intermediate = _first_valid(
        [
            ("weights", lambda: _document(base, fits, indicator_weights, None)),
            ("thresholds", lambda: _document(base, fits, None, None)),
        ],
        [],
    )
    names = signal_names(config)
    customers = [i for i in members if book.customer[i]]
    values = _signal_values(
        ((i, score(book.cases[i].facts, intermediate)) for i in customers), names, book.churned
    )
    current = _signal_weights(config)
    fitted = _fitted_or_current({name: separation(auc(*values[name])) for name in names}, current)
    signal_shares = blend_weights(fitted, current, keep)
    total = sum(current.values())
    signal_weights = {name: round(signal_shares[name] * total, 4) for name in names}
    if not any(signal_weights.values()):
        signal_weights = current
    candidate = _first_valid(
        [
            ("weights", lambda: _document(base, fits, indicator_weights, signal_weights)),
            ("thresholds", lambda: _document(base, fits, None, None)),
            ("nothing", lambda: dict(base)),
        ],
        notes,
    )
    return _Candidate(
        config=candidate,
        fitted_indicators=fitted_indicators,
        fitted_signals=fitted,
        signal_values=values,
        notes=tuple(notes),
    )


# --- suggest: cross-validation and the report -------------------------------------------------


def _folds(cases: Sequence[Case], folds: int, seed: int) -> list[int]:
    """Each case's fold: accounts (sorted, then shuffled with the seed) dealt round the
    folds, so all cases of an account are in one."""
    accounts = sorted({case.account for case in cases})
    random.Random(seed).shuffle(accounts)  # noqa: S311 (reproducible folds, no secret)
    fold_of = {account: position % folds for position, account in enumerate(accounts)}
    return [fold_of[case.account] for case in cases]


def _scores(
    book: _Book, config: HealthConfig, members: Iterable[int]
) -> tuple[list[float], list[bool]]:
    values: list[float] = []
    outcomes: list[bool] = []
    for index in members:
        found = score(book.cases[index].facts, config).score if book.customer[index] else None
        if found is not None:
            values.append(float(found))
            outcomes.append(book.churned[index])
    return values, outcomes


def _cross_validate(
    book: _Book, config: HealthConfig, fold_of: Sequence[int], folds: int
) -> list[BlendScore]:
    """Each λ's AUC pooled over the held-out folds, each scored under the candidate fitted
    on the other folds."""
    base = config.model_dump(mode="json")
    partials = _partial_overrides(config)
    pooled: dict[float, tuple[list[float], list[bool]]] = {keep: ([], []) for keep in BLENDS}
    for fold in range(folds):
        training = [i for i, its in enumerate(fold_of) if its != fold]
        held_out = [i for i, its in enumerate(fold_of) if its == fold]
        fits = [_fit_indicator(book, k, training, partials) for k in range(len(book.parts))]
        for keep in BLENDS:
            candidate = _candidate(book, config, base=base, fits=fits, members=training, keep=keep)
            values, outcomes = _scores(book, candidate.config, held_out)
            pooled[keep][0].extend(values)
            pooled[keep][1].extend(outcomes)
    return [
        BlendScore(blend=keep, auc=_round(auc(*pooled[keep])), scored=len(pooled[keep][0]))
        for keep in BLENDS
    ]


def _setting_of(config: HealthConfig, part: _Part) -> tuple[float, float, float]:
    """(at_risk, healthy, weight) of `part` in `config`."""
    if part.builtin:
        found = config.signals.items()[part.signal].indicators.items()[part.name]
        return found.at_risk, found.healthy, found.weight
    custom = config.custom_indicators[part.position]
    return custom.at_risk, custom.healthy, custom.weight


def _shares_in_signals(config: HealthConfig, parts: Sequence[_Part]) -> dict[str, float]:
    """Each part's weight in `config` as a share of the parts of its signal."""
    weights = {part.key: _setting_of(config, part)[2] for part in parts}
    shares: dict[str, float] = {}
    for signal in dict.fromkeys(part.signal for part in parts):
        shares.update(normalise({p.key: weights[p.key] for p in parts if p.signal == signal}))
    return shares


def _indicator_suggestion(
    fit: _IndicatorFit,
    candidate: _Candidate,
    shares: tuple[Mapping[str, float], Mapping[str, float]],
    total: int,
) -> IndicatorSuggestion:
    part = fit.part
    at_risk, healthy, weight = _setting_of(candidate.config, part)
    # The candidate is what was validated: a fallback there outranks the fit's own note.
    note = fit.note
    if (at_risk, healthy) != (fit.at_risk, fit.healthy):
        note = "no suggestion: the fitted configuration did not validate (see notes)"
    current_shares, suggested_shares = shares
    return IndicatorSuggestion(
        key=part.key,
        signal=part.signal,
        name=part.name,
        cases=fit.cases,
        coverage=round(fit.cases / total, 4),
        auc=_round(fit.auc),
        power=None if fit.auc is None else round(max(fit.auc, 1.0 - fit.auc), 4),
        direction=_direction(fit.auc),
        configured=part.direction,
        median_churned=_significant_or_none(fit.median_churned),
        median_renewed=_significant_or_none(fit.median_renewed),
        youden_cut=None if fit.youden is None else _significant(fit.youden[0]),
        youden_j=None if fit.youden is None else round(fit.youden[1], 4),
        fitted_share=round(candidate.fitted_indicators[part.key], 4),
        current=Setting(
            at_risk=part.at_risk,
            healthy=part.healthy,
            weight=part.weight,
            share=round(current_shares[part.key], 4),
        ),
        suggested=Setting(
            at_risk=at_risk,
            healthy=healthy,
            weight=weight,
            share=round(suggested_shares[part.key], 4),
        ),
        thresholds_changed=(at_risk, healthy) != (part.at_risk, part.healthy),
        note=note,
    )


def _signal_suggestions(
    config: HealthConfig, candidate: _Candidate, total: int
) -> list[SignalSuggestion]:
    current, suggested = _signal_weights(config), _signal_weights(candidate.config)
    current_shares, suggested_shares = normalise(current), normalise(suggested)
    found = []
    for name in signal_names(config):
        values = candidate.signal_values[name]
        found.append(
            SignalSuggestion(
                name=name,
                cases=len(values[0]),
                coverage=round(len(values[0]) / total, 4),
                auc=_round(auc(*values)),
                fitted_share=round(candidate.fitted_signals[name], 4),
                current=SignalWeight(weight=current[name], share=round(current_shares[name], 4)),
                suggested=SignalWeight(
                    weight=suggested[name], share=round(suggested_shares[name], 4)
                ),
            )
        )
    return found


def suggestion_method(*, folds: int, seed: int, min_churned: int) -> str:
    blends = ", ".join(f"{keep:g}" for keep in BLENDS)
    return (
        "Fitted on this book's known outcomes, each scored with the account's facts as of "
        "the horizon before it. Thresholds: for each indicator (the built-in ones weighing "
        "more than 0 and every custom one) whose raw value separates the outcomes with power "
        f"= max(AUC, 1 - AUC) of at least {MIN_POWER:g}, at_risk becomes the median raw value "
        "of the churned cases and healthy the median of the renewed cases (to 4 significant "
        "digits), when the two differ and lie the way the AUC says; otherwise the thresholds "
        "stay. Youden's J cut (the raw value maximising the true minus the false positive "
        "rate of reading it, or anything on the churned side of it, as churn) is given for "
        "information. Weights, of the indicators within each signal and of the signals in the "
        "composite: a part's fitted share is proportional to AUC - 0.5, the AUC of its raw "
        "value oriented by its (suggested) thresholds for an indicator, of its score under the "
        "suggested thresholds and indicator weights for a signal; 0 below an AUC of "
        f"{MIN_POWER:g}; where no part of a signal (or no signal) reaches it, the fitted "
        "shares are the current ones. Suggested shares = normalise((1 - λ) x fitted + λ x "
        f"current), λ from ({blends}) chosen by {folds}-fold cross-validation: accounts "
        f"shuffled with seed {seed} and dealt into folds, all cases of an account in one; "
        "thresholds and weights fitted on the other folds, the held-out fold scored under "
        "that candidate, the AUC pooled over the held-out folds; the highest AUC wins, a tie "
        "going to the larger λ (closer to the current weights). The current configuration's "
        "AUC over the same cases stands beside it (the chosen λ's is slightly optimistic, "
        "being the best of five). The suggestion is then fitted on all cases with that λ. "
        "Weights written = share x the current total weight of the indicators fitted in the "
        "signal (of all signals, for signal weights), to 4 decimals, so the CSM sentiment's "
        "indicator keeps its part; a built-in signal left with no built-in indicator weighing "
        "anything keeps its weights. A threshold that a segment override setting only the "
        "other one would turn around stays; weights that a segment override would leave "
        "with nothing weighing anything are not used, the current ones are (`notes` says "
        "so). Only thresholds and weights differ from the "
        f"configuration given. Refused below {min_churned} churned or renewed outcomes."
    )


def _refusal(cases: Sequence[Case], min_churned: int, folds: int) -> Refusal | None:
    churned = sum(case.churned for case in cases)
    renewed = len(cases) - churned
    short = [
        f"{count} {outcome}"
        for count, outcome in ((churned, "churned"), (renewed, "renewed"))
        if count < min_churned
    ]
    accounts = len({case.account for case in cases})
    if short:
        each = "of each " if len(short) > 1 else ""
        reason = (
            f"{' and '.join(short)} outcomes; at least {min_churned} {each}are needed to "
            "suggest anything (min_churned)"
        )
    elif accounts < folds:
        reason = f"{accounts} accounts; {folds}-fold cross-validation needs at least {folds}"
    else:
        return None
    return Refusal(
        reason=reason, cases=len(cases), churned=churned, renewed=renewed, min_churned=min_churned
    )


def suggest(
    cases: Sequence[Case],
    config: HealthConfig,
    *,
    min_churned: int = 30,
    folds: int = 5,
    seed: int = 0,
) -> Suggestion | Refusal:
    """Thresholds and weights the outcomes support, as a candidate configuration differing
    from `config` only in those, with the cross-validated AUC of both; or why not."""
    if folds < 2:
        raise ValueError(f"folds: at least 2, not {folds}")
    refusal = _refusal(cases, min_churned, folds)
    if refusal is not None:
        return refusal
    book = _Book.of(cases, config)
    by_blend = _cross_validate(book, config, _folds(cases, folds, seed), folds)
    chosen = max(
        by_blend, key=lambda found: (-1.0 if found.auc is None else found.auc, found.blend)
    )
    everyone = range(len(cases))
    partials = _partial_overrides(config)
    fits = [_fit_indicator(book, k, everyone, partials) for k in range(len(book.parts))]
    candidate = _candidate(
        book,
        config,
        base=config.model_dump(mode="json"),
        fits=fits,
        members=everyone,
        keep=chosen.blend,
    )
    current_values = _scores(book, config, everyone)
    current_auc = _round(auc(*current_values))
    improves = chosen.auc is not None and (current_auc is None or chosen.auc > current_auc)
    notes = list(candidate.notes)
    if not improves:
        notes.append(
            f"in cross-validation the suggestion ranks no better than the current "
            f"configuration (AUC {chosen.auc} against {current_auc})"
        )
    shares = (
        _shares_in_signals(config, book.parts),
        _shares_in_signals(candidate.config, book.parts),
    )
    churned = sum(book.churned)
    return Suggestion(
        cases=len(cases),
        churned=churned,
        renewed=len(cases) - churned,
        improves=improves,
        cross_validation=CrossValidation(
            folds=folds,
            seed=seed,
            current_auc=current_auc,
            current_scored=len(current_values[0]),
            suggested_auc=chosen.auc,
            suggested_scored=chosen.scored,
            blend=chosen.blend,
            by_blend=by_blend,
        ),
        indicators=[_indicator_suggestion(fit, candidate, shares, len(cases)) for fit in fits],
        signals=_signal_suggestions(config, candidate, len(cases)),
        notes=notes,
        config=candidate.config.model_dump(mode="json"),
        method=suggestion_method(folds=folds, seed=seed, min_churned=min_churned),
    )
