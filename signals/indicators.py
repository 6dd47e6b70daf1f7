"""Indicator values and thresholds as the short text of drivers."""

from __future__ import annotations

from collections.abc import Callable

from signals.config import IndicatorConfig
from signals.model import Unit


def value_formatter(unit: Unit) -> Callable[[float], str]:
    match unit:
        case Unit.PERCENT:
            return "{:.0%}".format
        case Unit.CHANGE:
            return "{:+.0%}".format
        case Unit.DAYS | Unit.COUNT:
            return "{:.0f}".format
        case Unit.NUMBER:
            return "{:.1f}".format


def threshold_text(unit: Unit, config: IndicatorConfig, *, at_risk: bool) -> str:
    """ "(at-risk <= 40%)" or "(healthy >= 70%)", the comparison following the direction."""
    higher_is_better = config.healthy > config.at_risk
    if at_risk:
        zone, bound, op = "at-risk", config.at_risk, "<=" if higher_is_better else ">="
    else:
        zone, bound, op = "healthy", config.healthy, ">=" if higher_is_better else "<="
    return f"({zone} {op} {value_formatter(unit)(bound)})"
