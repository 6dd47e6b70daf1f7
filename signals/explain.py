"""The account page's arithmetic: each indicator's part of one score, and why a score moved
between two moments, split into parts that add up to the change exactly.

A composite score is the sum of its indicators' contributions, `share x score`, where the share
is the indicator's part of the composite (signal weight over the weight of the signals with
data, times indicator weight over the weight of its signal's indicators with data). So a move of
the score is the configuration's part (the end's facts scored under both configurations), each
indicator's part (its contribution at the end minus at the start, under the start's
configuration), and what rounding leaves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from signals.catalog import IndicatorEntry, SignalEntry, catalog
from signals.config import HealthConfig
from signals.indicators import value_text
from signals.model import AccountFacts, Band, Health, IndicatorResult, Unit
from signals.scoring import band_for, score

BAND_LABELS: Mapping[Band, str] = {
    Band.HEALTHY: "Healthy",
    Band.NEUTRAL: "Neutral",
    Band.AT_RISK: "At risk",
    Band.UNKNOWN: "Unknown",
    Band.ONBOARDING: "Onboarding",
}
# Parts smaller than this (in points) are not worth a line of their own.
SMALLEST_PART = 0.05
# A share that moved by less than this is not mentioned in an indicator's text.
_SHARE_MOVED = 0.005
# How many parts the summary names.
SUMMARY_PARTS = 3
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MINUS = "\N{MINUS SIGN}"


def segment_config(config: HealthConfig, segment: str | None) -> HealthConfig:
    """The configuration an account of `segment` (Health.segment) was scored under."""
    if segment is not None:
        for override, effective in config.resolved_segments():
            if override.name == segment:
                return effective
    return config


# --- one account's indicators -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One indicator of one account: None raw and score where it has no data."""

    entry: IndicatorEntry
    raw: float | None
    score: float | None
    share: float  # of the composite, 0..1; 0 without data

    @property
    def points(self) -> float:
        """The points it contributes to the 0..100 composite: share x score."""
        return 0.0 if self.score is None else self.share * self.score


def breakdown(
    health: Health, config: HealthConfig
) -> tuple[tuple[SignalEntry, tuple[Measured, ...]], ...]:
    """Every signal of `config` with the indicators it counts (weight above 0, in a signal
    weighing above 0) as `health` (scored with `config`) measured them: those with data
    first, then those without, each in the configuration's order. Thresholds are those in
    force for the account, after its segment override."""
    results = {(r.signal, r.name): r for r in health.indicators}
    found: list[tuple[SignalEntry, tuple[Measured, ...]]] = []
    for signal in catalog(segment_config(config, health.segment)):
        counted = [entry for entry in signal.indicators if entry.counted and signal.weight > 0]
        measured = []
        for entry in counted:
            result = results.get((signal.name, entry.name))
            measured.append(
                Measured(entry=entry, raw=None, score=None, share=0.0)
                if result is None
                else Measured(entry=entry, raw=result.raw, score=result.score, share=result.weight)
            )
        measured.sort(key=lambda m: m.raw is None)  # stable: the configuration's order stays
        found.append((signal, tuple(measured)))
    return tuple(found)


def composite(indicators: Sequence[IndicatorResult]) -> float:
    """The unrounded composite score: the sum of the contributions (share x score)."""
    return sum(result.weight * result.score for result in indicators)


# --- why it moved -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Moment:
    at: datetime
    score: int | None
    band: Band
    composite: float  # the unrounded score under that moment's configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class IndicatorPart:
    signal: str
    name: str
    label: str
    unit: Unit
    before: float | None
    after: float | None
    score_before: float | None
    score_after: float | None
    share_before: float
    share_after: float
    points: float
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalPart:
    signal: str
    label: str
    points: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """`change` = `configuration_points` + the signals' points + `other_points` (the
    indicators' points add up to their signal's). Without a score at either moment there is
    no change to split: `change` and `other_points` are None, the parts still say what moved.
    `indicators` holds the parts of at least SMALLEST_PART points, largest first."""

    start: Moment
    end: Moment
    change: int | None
    configuration_changed: bool
    configuration_points: float
    signals: tuple[SignalPart, ...]
    indicators: tuple[IndicatorPart, ...]
    other_points: float | None
    other_text: str | None
    summary: str


def movement(
    *,
    start: AccountFacts,
    end: AccountFacts,
    start_config: HealthConfig,
    end_config: HealthConfig,
    end_for_start_config: AccountFacts | None = None,
) -> Movement:
    """Why the score moved from `start` to `end`, each scored with the configuration in force
    then (one connection's: HealthConfig.for_connection).

    When the configurations differ, the end's facts are scored under both: the difference is
    the configuration's part, and the indicators' parts are worked out under the start's
    configuration. `end_for_start_config` is the end's facts as read for the start's
    configuration, where that reads them differently (other key features); by default `end`.
    An indicator that gains or loses data moves the other indicators' shares: that lands on
    the indicators whose contributions changed, and their texts say so.
    """
    start_health = score(start, start_config)
    end_health = score(end, end_config)
    changed = start_config.scoring_version != end_config.scoring_version
    middle = score(end_for_start_config or end, start_config) if changed else end_health
    configuration_points = (
        composite(end_health.indicators) - composite(middle.indicators) if changed else 0.0
    )
    signals, parts = _parts(start_health, middle, start_config)
    change = (
        None
        if start_health.score is None or end_health.score is None
        else end_health.score - start_health.score
    )
    other = (
        None
        if change is None
        else change - configuration_points - sum(signal.points for signal in signals)
    )
    first = Moment(
        at=start.as_of,
        score=start_health.score,
        band=start_health.band,
        composite=composite(start_health.indicators),
    )
    last = Moment(
        at=end.as_of,
        score=end_health.score,
        band=end_health.band,
        composite=composite(end_health.indicators),
    )
    shown = sorted(
        (part for part in parts if abs(part.points) >= SMALLEST_PART),
        key=lambda part: -abs(part.points),
    )
    return Movement(
        start=first,
        end=last,
        change=change,
        configuration_changed=changed,
        configuration_points=configuration_points,
        signals=signals,
        indicators=tuple(shown),
        other_points=other,
        other_text=_other_text(
            other,
            ((start, start_health, start_config, "start"), (end, end_health, end_config, "end")),
        ),
        summary=_summary(
            first,
            last,
            change,
            configuration_points=configuration_points,
            changed=changed,
            parts=shown,
        ),
    )


def _parts(
    before: Health, after: Health, config: HealthConfig
) -> tuple[tuple[SignalPart, ...], list[IndicatorPart]]:
    """Each signal's and indicator's points between two healths scored under `config`."""
    was = {(r.signal, r.name): r for r in before.indicators}
    now = {(r.signal, r.name): r for r in after.indicators}
    signals: list[SignalPart] = []
    parts: list[IndicatorPart] = []
    for signal in catalog(config):
        total = 0.0
        for entry in signal.indicators:
            old, new = was.get((signal.name, entry.name)), now.get((signal.name, entry.name))
            if old is None and new is None:
                continue
            points = _contribution(new) - _contribution(old)
            total += points
            parts.append(_part(entry, old, new, points))
        signals.append(SignalPart(signal=signal.name, label=signal.label, points=total))
    return tuple(signals), parts


def _contribution(result: IndicatorResult | None) -> float:
    return 0.0 if result is None else result.weight * result.score


def _part(
    entry: IndicatorEntry, old: IndicatorResult | None, new: IndicatorResult | None, points: float
) -> IndicatorPart:
    spec = entry.spec
    share_before = 0.0 if old is None else old.weight
    share_after = 0.0 if new is None else new.weight
    return IndicatorPart(
        signal=entry.signal,
        name=spec.name,
        label=spec.label,
        unit=spec.unit,
        before=None if old is None else old.raw,
        after=None if new is None else new.raw,
        score_before=None if old is None else old.score,
        score_after=None if new is None else new.score,
        share_before=share_before,
        share_after=share_after,
        points=points,
        text=change_text(
            spec.label,
            spec.unit,
            None if old is None else old.raw,
            None if new is None else new.raw,
            share_before=share_before,
            share_after=share_after,
        ),
    )


def change_text(
    label: str,
    unit: Unit,
    before: float | None,
    after: float | None,
    *,
    share_before: float = 0.0,
    share_after: float = 0.0,
    brief: bool = False,
) -> str:
    """One indicator's move in words: "Seat utilization fell from 62% to 11%"; a value that
    held but counts for more or less of the score says that its share moved, and why (unless
    `brief`)."""
    if before is None and after is None:
        return f"{label}: no data"
    if before is None:
        assert after is not None
        text = f"{label} has data now ({value_text(unit, after)}, none before)"
        return text if brief else f"{text}: its share of the score came from the other indicators"
    if after is None:
        text = f"{label} has no data now (was {value_text(unit, before)})"
        return text if brief else f"{text}: its share of the score went to the other indicators"
    was, now = value_text(unit, before), value_text(unit, after)
    if was == now:
        text = f"{label} held at {now}"
    else:
        text = f"{label} {'rose' if after > before else 'fell'} from {was} to {now}"
    if not brief and abs(share_after - share_before) >= _SHARE_MOVED:
        text += (
            f"; its share of the score went from {share_before:.0%} to {share_after:.0%} as "
            "other indicators gained or lost data"
        )
    return text


def points_text(points: float) -> str:
    """ "+3 points", "+1 point", "-12 points", "-0.4 points", each minus a true minus sign
    (U+2212), as typeset text has it."""
    whole = round(points)
    if whole == 0:
        number = f"{abs(points):.1f}"
        if number == "0.0":
            return "0 points"
    else:
        number = str(abs(whole))
    sign = "+" if points > 0 else _MINUS
    return f"{sign}{number} point{'' if number == '1' else 's'}"


def day_text(moment: datetime) -> str:
    """ "1 Oct 2026" (the day of the moment, as given)."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _score_text(moment: Moment) -> str:
    shown = "no score" if moment.score is None else str(moment.score)
    return f"{shown} ({BAND_LABELS[moment.band]})"


def _summary(
    start: Moment,
    end: Moment,
    change: int | None,
    *,
    configuration_points: float,
    changed: bool,
    parts: Sequence[IndicatorPart],
) -> str:
    between = f"between {day_text(start.at)} and {day_text(end.at)}"
    # Each move in brief (no note on shares): the summary names several in one sentence.
    named = [
        (part.points, change_text(part.label, part.unit, part.before, part.after, brief=True))
        for part in parts
    ]
    configured = changed and abs(configuration_points) >= SMALLEST_PART
    if configured:
        named.append((configuration_points, _CONFIGURATION))
    named.sort(key=lambda item: -abs(item[0]))
    if change is None:
        opening = (
            f"The score cannot be compared {between}: it went from {_score_text(start)} to "
            f"{_score_text(end)}."
        )
        heading = "What moved"
    elif change == 0:
        opening = f"The score held at {_score_text(end)} {between}."
        heading = "Moves that cancelled out"
    else:
        points = abs(change)
        opening = (
            f"The score {'rose' if change > 0 else 'fell'} {points} "
            f"point{'' if points == 1 else 's'}, from {_score_text(start)} to "
            f"{_score_text(end)}, {between}."
        )
        heading = "Most of it"
        # The parts that went the way the score did, largest first.
        named = [item for item in named if (item[0] > 0) == (change > 0)]
    listed = named[:SUMMARY_PARTS]
    text = _with_parts(opening, heading, listed)
    if configured and all(words != _CONFIGURATION for _, words in listed):
        text += (
            f" The scoring configuration changed in between ({points_text(configuration_points)})."
        )
    return text


_CONFIGURATION = "the scoring configuration changed"


def _with_parts(opening: str, heading: str, named: Sequence[tuple[float, str]]) -> str:
    if not named:
        return opening
    listed = "; ".join(f"{text} ({points_text(points)})" for points, text in named)
    return f"{opening} {heading}: {listed[:1].upper()}{listed[1:]}."


def _other_text(
    other: float | None,
    moments: Sequence[tuple[AccountFacts, Health, HealthConfig, str]],
) -> str | None:
    """What `other_points` was, and what set a band other than the score did."""
    notes = []
    if other is not None and abs(other) >= SMALLEST_PART:
        notes.append("rounding each score to whole points")
    for facts, health, config, which in moments:
        if health.score is None:
            continue
        plain = band_for(health.score, segment_config(config, health.segment).bands)
        if health.band is Band.ONBOARDING:
            notes.append(f"at the {which} the account was onboarding: its band was not judged")
        elif health.band is not plain and facts.sentiment is not None:
            notes.append(
                f"at the {which} the CSM's sentiment ({facts.sentiment.rating.value}) set the "
                f"band to {BAND_LABELS[health.band]}, not the score"
            )
    if not notes:
        return None
    text = "; ".join(notes)
    return f"{text[:1].upper()}{text[1:]}."


def rounded(found: Movement, digits: int = 1) -> Movement:
    """The movement with its points rounded for people, still adding up: the configuration's
    and the signals' points rounded, `other_points` what is left of the change after them."""

    def rounded_points(points: float) -> float:
        return round(points, digits) + 0.0  # + 0.0: no "-0.0"

    configuration = rounded_points(found.configuration_points)
    signals = tuple(replace(s, points=rounded_points(s.points)) for s in found.signals)
    other = None
    if found.change is not None:
        other = rounded_points(found.change - configuration - sum(s.points for s in signals))
    return replace(
        found,
        configuration_points=configuration,
        signals=signals,
        indicators=tuple(replace(i, points=rounded_points(i.points)) for i in found.indicators),
        other_points=other,
    )
