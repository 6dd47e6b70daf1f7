"""Health field values as every CRM needs them prepared: a finite number, the update time as an
instant, the drivers text cut to a field's length."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from connector.base import FieldValue


def finite_number(value: FieldValue, *, name: str) -> float:
    """A numeric field's value as a finite float; each CRM then rounds it to its column."""
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} takes a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} takes a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} takes a finite number, not {value!r}")
    return number


def updated_at_instant(value: FieldValue, *, name: str) -> datetime:
    """`health_updated_at` (ISO 8601) as an aware UTC datetime; a naive value is taken as UTC.
    Each CRM then writes it in its own form."""
    if not isinstance(value, str):
        raise ValueError(f"{name} takes an ISO 8601 date and time, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} takes an ISO 8601 date and time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def truncate_lines(text: str, length: int) -> str:
    """`text` within `length` characters, dropping a driver line that would be cut in half
    when there is a whole one to keep."""
    if len(text) <= length:
        return text
    cut = text[:length]
    line_end = cut.rfind("\n")
    return cut[:line_end] if line_end > 0 else cut
