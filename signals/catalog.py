"""What a configuration measures, in people's words: every signal and indicator with its label,
unit, explanation, thresholds and weights (the account page's and the editor's catalog)."""

from __future__ import annotations

from dataclasses import dataclass

from signals.config import HealthConfig
from signals.model import IndicatorSpec
from signals.registry import SIGNAL_BY_NAME
from signals.scoring import SENTIMENT_SPEC


@dataclass(frozen=True, slots=True, kw_only=True)
class IndicatorEntry:
    """One indicator as a configuration has it: the declaration (label, unit, explanation)
    and the thresholds and weight within its signal in force."""

    signal: str
    spec: IndicatorSpec
    at_risk: float
    healthy: float
    weight: float
    custom: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def counted(self) -> bool:
        """Whether it can count in the score at all (a weight of 0 switches it off)."""
        return self.weight > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEntry:
    name: str
    label: str
    description: str
    question: str
    weight: float
    indicators: tuple[IndicatorEntry, ...]
    custom: bool = False


def catalog(config: HealthConfig) -> tuple[SignalEntry, ...]:
    """Every signal of `config` in the order scoring and the API list them (the built-in ones,
    then the custom ones), each with its indicators: the built-in ones, its custom ones, then
    the CSM sentiment where it is an indicator of that signal.

    `config` is taken as it is: pass a connection's (HealthConfig.for_connection) or a
    segment's (signals.explain.segment_config) configuration for theirs.
    """
    custom: dict[str, list[IndicatorEntry]] = {}
    for indicator in config.custom_indicators:
        custom.setdefault(indicator.signal, []).append(
            IndicatorEntry(
                signal=indicator.signal,
                spec=indicator.spec,
                at_risk=indicator.at_risk,
                healthy=indicator.healthy,
                weight=indicator.weight,
                custom=True,
            )
        )
    sentiment = config.sentiment
    if sentiment.mode == "indicator":
        custom.setdefault(sentiment.signal, []).append(
            IndicatorEntry(
                signal=sentiment.signal,
                spec=SENTIMENT_SPEC,
                at_risk=SENTIMENT_SPEC.at_risk,
                healthy=SENTIMENT_SPEC.healthy,
                weight=sentiment.weight,
            )
        )
    entries: list[SignalEntry] = []
    for name, signal_config in config.signals.items().items():
        spec = SIGNAL_BY_NAME[name]
        configured = signal_config.indicators.items()
        builtin = tuple(
            IndicatorEntry(
                signal=name,
                spec=indicator,
                at_risk=configured[indicator.name].at_risk,
                healthy=configured[indicator.name].healthy,
                weight=configured[indicator.name].weight,
            )
            for indicator in spec.indicators
        )
        entries.append(
            SignalEntry(
                name=name,
                label=spec.label,
                description=spec.description,
                question=spec.question,
                weight=signal_config.weight,
                indicators=(*builtin, *custom.get(name, ())),
            )
        )
    for signal in config.custom_signals:
        indicators = tuple(custom.get(signal.name, ()))
        labels = [entry.spec.label for entry in indicators]
        entries.append(
            SignalEntry(
                name=signal.name,
                label=signal.label,
                description="indicators of your own: " + ", ".join(labels)
                if labels
                else "indicators of your own (none yet)",
                question=f"how does the account do on {signal.label}?",
                weight=signal.weight,
                indicators=indicators,
                custom=True,
            )
        )
    return tuple(entries)
