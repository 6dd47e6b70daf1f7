"""CSV import of product usage and collaboration (`crm-health import usage`): each row
becomes a native `usage` or `collaboration` event (reading and storing: webhooks.csv_import).
"""

from __future__ import annotations

from typing import Any, ClassVar, get_args

from connector.model import CollaborationKind
from webhooks.csv_import import EventCsv, Problem, echo, import_rows

TYPES = ("usage", "collaboration")
# Which optional columns belong to which row type; a value in another type's column is an
# error, as the API refuses unknown fields.
TYPE_COLUMNS = {"usage": ("user", "feature"), "collaboration": ("kind",)}
KINDS: tuple[str, ...] = get_args(CollaborationKind)

# A usage file is imported like any other CSV of native events.
import_usage = import_rows


class UsageCsv(EventCsv):
    """A usage CSV being read: rows of usage or collaboration (the `type` column)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "account", "at", "type", "user", "feature", "kind", "id",
    )  # fmt: skip
    REQUIRED: ClassVar[tuple[str, ...]] = ("account", "at")
    EXAMPLE_HEADER: ClassVar[str] = "account,at,user"

    def missing_columns(self, header: tuple[str, ...]) -> list[str]:
        missing = super().missing_columns(header)
        if "type" not in header and "user" not in header:
            # Without a type column every row is usage, and usage needs a user.
            missing.append("user")
        return missing

    def document(self, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[Problem]]:
        row_type = values.pop("type", "usage").lower()
        if row_type not in TYPES:
            return None, [("type", f"must be {' or '.join(TYPES)}, not {echo(row_type)}")]
        problems = [
            (name, f"only for {other} rows")
            for other, names in TYPE_COLUMNS.items()
            if other != row_type
            for name in names
            if name in values
        ]
        document: dict[str, Any] = {"type": row_type}
        for name in ("account", *TYPE_COLUMNS[row_type], "id"):
            if name in values:
                document[name] = values[name].lower() if name == "kind" else values[name]
        problems += self.add_time(document, values, "at")
        return document, problems

    def missing_value(self, column: str, document: dict[str, Any]) -> str:
        row_type = document["type"]
        return f"required for {row_type} rows" if column in TYPE_COLUMNS[row_type] else "required"
