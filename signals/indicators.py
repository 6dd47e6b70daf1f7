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
            return _number


def value_text(unit: Unit, value: float) -> str:
    """A raw value as a sentence reads it: the driver's formatting (62%, +5%, 4.3), days with
    their word ("25 days", "1 day")."""
    text = value_formatter(unit)(value)
    if unit is Unit.DAYS:
        return f"{text} day" if text in ("1", "-1") else f"{text} days"
    return text


def threshold_text(unit: Unit, config: IndicatorConfig, *, at_risk: bool) -> str:
    """ "(at-risk <= 40%)" or "(healthy >= 70%)", the comparison following the direction."""
    higher_is_better = config.healthy > config.at_risk
    if at_risk:
        zone, bound, op = "at-risk", config.at_risk, "<=" if higher_is_better else ">="
    else:
        zone, bound, op = "healthy", config.healthy, ">=" if higher_is_better else "<="
    return f"({zone} {op} {value_formatter(unit)(bound)})"


def _number(value: float) -> str:
    """Two decimals below 10 and one above, without trailing zeros: 0.05 exports a seat,
    CSAT 4.3, NPS -40, 12.5 tickets per 10 seats (one decimal would show 0.05 as 0.1)."""
    text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
