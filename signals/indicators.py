"""Mapping a raw indicator value onto the 0..100 health scale."""

from __future__ import annotations

from signals.config import Threshold


def interpolate(value: float, threshold: Threshold) -> float:
    """Linear between the at-risk value (0) and the healthy value (100), clamped.

    The direction follows from which end is larger, so "lower is better" indicators such as
    recency need no special case.
    """
    span = threshold.healthy - threshold.at_risk
    position = (value - threshold.at_risk) / span
    return max(0.0, min(100.0, position * 100.0))
