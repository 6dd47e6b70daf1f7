"""The composite health score, its band and the drivers that explain it."""

from __future__ import annotations

from signals import active_use
from signals.config import Bands, HealthConfig
from signals.model import SIGNAL_NAMES, AccountFacts, Band, Health, SignalResult


def band_for(score: float | None, bands: Bands) -> Band:
    if score is None:
        return Band.UNKNOWN
    if score >= bands.healthy_min:
        return Band.HEALTHY
    if score < bands.at_risk_below:
        return Band.AT_RISK
    return Band.NEUTRAL


def _drivers(results: list[SignalResult]) -> tuple[str, ...]:
    drivers: list[str] = []
    for result in results:
        for indicator in result.indicators:
            if indicator.name == "recency_days" and indicator.raw is not None:
                drivers.append(f"Last activity {indicator.raw:.0f} days ago")
    return tuple(drivers)


def score(facts: AccountFacts, config: HealthConfig) -> Health:
    results = [active_use.compute(facts, config)]
    available = [r.score for r in results if r.score is not None]
    composite = round(sum(available) / len(available)) if available else None
    signals: dict[str, float | None] = dict.fromkeys(SIGNAL_NAMES)
    for result in results:
        signals[result.name] = None if result.score is None else round(result.score, 1)
    return Health(
        score=composite,
        band=band_for(composite, config.bands),
        signals=signals,
        drivers=_drivers(results),
        coverage=len(available) / len(SIGNAL_NAMES),
    )
