"""What every Dataverse Web API call here shares: reading an answer's JSON, row ids (GUIDs)
and the `Prefer` annotation that names a lookup's table."""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

from connector.errors import PayloadError

# Lookups then name their table: `_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname`.
LOOKUP_ANNOTATIONS: Final = 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'
GUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def guid(value: str, what: str) -> str:
    """`value` as a lower-case row id; ValueError naming `what` when it is no GUID."""
    if not isinstance(value, str) or not GUID.fullmatch(value.strip()):
        raise ValueError(f"{what} must be a Dataverse row id (a GUID), not {value!r}")
    return value.strip().lower()


def answer_json(response: httpx.Response, where: str) -> Any:
    """The answer's JSON document; PayloadError naming `where` when it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise PayloadError(f"{where}: the answer is not JSON") from exc
