"""CSV import of renewal and churn outcomes (`crm-health import outcomes`), for customers whose
renewal history lives outside the CRM: each row becomes a native `outcome` event (reading and
storing: webhooks.csv_import).
"""

from __future__ import annotations

from typing import Any, ClassVar, get_args

from connector import bounds
from connector.model import OutcomeKind
from webhooks.csv_import import EventCsv, Problem, echo

OUTCOMES: tuple[str, ...] = get_args(OutcomeKind)


class OutcomeCsv(EventCsv):
    """An outcomes CSV being read: one renewal or churn per row, with the ARR it concerned."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("account", "date", "outcome", "arr", "id")
    REQUIRED: ClassVar[tuple[str, ...]] = ("account", "date", "outcome")
    EXAMPLE_HEADER: ClassVar[str] = "account,date,outcome,arr"
    FIELD_COLUMNS: ClassVar[dict[str, str]] = {"at": "date"}

    def document(self, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[Problem]]:
        document: dict[str, Any] = {"type": "outcome"}
        for name in ("account", "id"):
            if name in values:
                document[name] = values[name]
        problems = self.add_time(document, values, "date")
        outcome = values.get("outcome")
        if outcome is None:
            problems.append(("outcome", "required"))
        elif outcome.lower() not in OUTCOMES:
            problems.append(("outcome", f"{echo(outcome)} is not {' or '.join(OUTCOMES)}"))
        else:
            document["outcome"] = outcome.lower()
        arr = values.get("arr")
        if arr is not None:
            try:
                # A number, not its text, so "1200" and "1200.00" are the same row.
                document["arr"] = bounds.bounded_number(arr, low=0, high=bounds.MAX_ARR)
            except ValueError:
                limit = f"{bounds.MAX_ARR:,.0f}"
                problems.append(("arr", f"not a number from 0 to {limit}: {echo(arr)}"))
        return document, problems
