"""Which account columns a Dataverse environment has, read from its table definition before a
field plan's columns are named in a `$select`: a `$select` naming a column that does not exist
fails the whole read, and with it every event that needs the row."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Final

import structlog

from connector.dynamics.fields import ENTITY
from connector.dynamics.webapi import answer_json
from connector.errors import CRMAuthError, CRMRequestRejected, PayloadError
from connector.http import RetryingClient

log = structlog.get_logger(__name__)

# Column types the Web API names `_<column>_value` (with the lookup's table as an annotation).
_LOOKUP_TYPES: Final = frozenset({"Lookup", "Customer", "Owner"})


class ReadableColumns:
    """The account table's columns as the Web API can select them, read once (one metadata
    call, not paged) until `forget`; `data` is the Web API's path (`/api/data/v9.2`)."""

    def __init__(self, *, client: RetryingClient, data: str) -> None:
        self._client = client
        self._data = data
        self._types: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """Read the definition again next time: the plan changed, columns were provisioned,
        or a read naming them was refused."""
        self._types = None

    async def select(self, wanted: Sequence[str]) -> tuple[str, ...]:
        """The `$select` properties of the `wanted` columns (logical names) that account has,
        lookups as `_<name>_value`. Columns it lacks are left out, and logged once per reading
        of the definition. Reads nothing when nothing is wanted."""
        if not wanted:
            return ()
        async with self._lock:
            fresh = self._types is None
            if self._types is None:
                self._types = await self._read()
            types = self._types
        missing = [column for column in wanted if column not in types]
        if fresh and missing:
            log.warning("dynamics_configured_columns_missing", entity=ENTITY, columns=missing)
        return tuple(
            f"_{column}_value" if types[column] in _LOOKUP_TYPES else column
            for column in wanted
            if column in types
        )

    async def _read(self) -> dict[str, str]:
        """Logical name -> AttributeType of every column the Web API can select. A refused
        metadata read (other than for credentials) counts as no column: the rows are still
        read, without the plan's columns."""
        try:
            response = await self._client.request(
                "GET",
                f"{self._data}/EntityDefinitions(LogicalName='{ENTITY}')/Attributes",
                params={"$select": "LogicalName,AttributeType,IsValidODataAttribute"},
            )
        except CRMAuthError:
            raise
        except CRMRequestRejected as exc:
            log.warning("dynamics_columns_unreadable", entity=ENTITY, status=exc.status)
            return {}
        where = "Dataverse account columns"
        document = answer_json(response, where)
        values = document.get("value") if isinstance(document, Mapping) else None
        if not isinstance(values, list):
            raise PayloadError(f"{where}: the answer has no 'value' list")
        return {
            item["LogicalName"]: str(item.get("AttributeType"))
            for item in values
            if isinstance(item, Mapping)
            and isinstance(item.get("LogicalName"), str)
            # Virtual columns (a lookup's `owneridname`) exist but cannot be selected.
            and item.get("IsValidODataAttribute") is not False
        }
