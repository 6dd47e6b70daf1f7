"""What the service accepts from outside, defined once: the longest id, name and text each
intake takes, numeric ranges, times, and text the database can store (no NUL, no lone
surrogate). Every intake validates with these, so what the edge acknowledges the store accepts.

Each length is the column the value ends up in (webhooks/store/models.py); a test checks every
limit against its column, so neither can change alone.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
)

# --- lengths (characters) ------------------------------------------------------------------

# A CRM account (company) record id: accounts.crm_id, product_groups.crm_id,
# crm_writeback.record_id. HubSpot sends at most 19 digits, Salesforce 18 characters,
# Dynamics a 36-character GUID.
ACCOUNT_ID = 64
# Any other record or person id: a contact, a product user, a ticket, a product group, an
# engagement (contacts.contact, usage_months.user, tickets.ticket, interactions.contact and
# source_id, product_groups.group_id, product_users.user_id).
RECORD_ID = 200
# An event id a sender gives for deduplication (native `id`, Salesforce notification Id,
# Segment messageId); it becomes inbox_events.dedup_key (255) with room for a prefix.
EVENT_ID = 200
# An account or product group name: accounts.name, product_groups.name.
NAME = 512
# Short labels: a domain, segment, owner (accounts.domain, segment, owner), a renewal date, a
# HubSpot property name or object type id.
SHORT_TEXT = 255
# Longer text kept in a column: a contact's title (contacts.title), a tracked attribute's value
# (attribute_history.value).
TEXT = 500
# A product feature name (only in the stored payload; kept as short as a user id).
FEATURE = 200
# A survey respondent's comment, in their words.
COMMENT = 2000
# The kind of an inbox event (inbox_events.kind): a HubSpot subscriptionType, a Salesforce
# sObject type, a Dynamics "entity:message".
EVENT_KIND = 128
# A Dynamics table logical name (PrimaryEntityName): Dataverse's own limit is 64 (SchemaName).
DYNAMICS_ENTITY = 64
# A Dynamics MessageName ("Create", "Update", a custom action): what is left of the kind
# "entity:message" beside the longest entity name.
DYNAMICS_MESSAGE = EVENT_KIND - DYNAMICS_ENTITY - 1
# The longest inbox dedup key any source builds (inbox_events.dedup_key).
DEDUP_KEY = 255
# A HubSpot propertyValue: HubSpot's own limit for a text property. Kept only in the stored
# payload; a value that ends up in a column is cut to that column (connector.model).
PROPERTY_VALUE = 65_536

# --- numbers --------------------------------------------------------------------------------

# Ids HubSpot and Dynamics send as numbers are 64-bit (HubSpot) or 32-bit (Dataverse Stage).
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# Seats and ARR of an account: far above any real customer, low enough that the value stays
# an ordinary number in every column, JSON document and CRM field it reaches.
MAX_SEATS = 100_000_000
MAX_ARR = 1e13

# --- times ----------------------------------------------------------------------------------

# An event time further ahead than this is a clock or unit mistake (milliseconds read as
# seconds, a year typed wrong): it would sit in every window until then.
FUTURE_TOLERANCE = timedelta(days=1)


# --- text -----------------------------------------------------------------------------------


def text_problem(value: str) -> str | None:
    """Why the database cannot store `value`, or None. NUL is refused by PostgreSQL text and
    json; a lone surrogate (JSON's "\\ud800", which Python's parser accepts) is no Unicode
    character and cannot be encoded as UTF-8 for either backend."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate (e.g. \\ud800), which is not valid Unicode text"
    return None


def _storable(value: Any) -> Any:
    # Before pydantic's own str check, which refuses a lone surrogate with a message that
    # does not say what is wrong.
    problem = text_problem(value) if isinstance(value, str) else None
    if problem is not None:
        raise ValueError(problem)
    return value


def unstorable_text(body: bytes | str, document: Any) -> str | None:
    """The first string of a parsed JSON `document` (keys too) the database cannot store,
    as "path: problem"; None when all can be. `body` is the raw JSON it came from: in JSON,
    NUL and lone surrogates only exist as \\u escapes, so a body without one (nearly every
    body) skips the walk."""
    marker = b"\\u" if isinstance(body, bytes) else "\\u"
    if marker not in body:  # type: ignore[operator]
        return None
    return _walk(document, "")


def _walk(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else f"{path or 'body'}: {problem}"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = text_problem(key) if isinstance(key, str) else None
            if problem is not None:
                return f"{path or 'body'}: a key {problem}"
            found = _walk(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _walk(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def checked_text(value: str, *, limit: int, where: str) -> str:
    """`value` when it is storable and at most `limit` characters; ValueError naming `where`
    otherwise (for parsers that do not use pydantic)."""
    if len(value) > limit:
        raise ValueError(f"{where}: at most {limit} characters (got {len(value)})")
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{where}: {problem}")
    return value


def clipped(value: str | None, limit: int) -> str | None:
    """Free text a CRM holds (a name, a title) made to fit its column: NUL removed, lone
    surrogates replaced, cut to `limit`. For values read from a CRM, which the edge never saw
    and which a sender cannot correct; text sent to an intake is refused instead."""
    if value is None:
        return None
    if text_problem(value) is not None:
        value = value.replace("\x00", "").encode(errors="replace").decode()
    return value[:limit]


def validation_message(message: str) -> str:
    """A pydantic error message without the "Value error, " it puts before the messages of
    the checks above, which say it all themselves."""
    return message.removeprefix("Value error, ")


# The validation context an intake passes (`{ARRIVED_AT: now}`) where an event arrives: only
# there is a time far ahead refused. A stored event that was acknowledged is decoded again by
# the worker without it, so the worker never refuses what the edge accepted, whatever its
# clock says by then.
ARRIVED_AT = "arrived_at"


def edge_context(now: datetime | None = None) -> dict[str, object]:
    """The validation context of an event arriving now."""
    return {ARRIVED_AT: datetime.now(UTC) if now is None else now}


def not_far_future(moment: datetime, info: ValidationInfo) -> datetime:
    """`moment` unless, where the event arrives, it lies more than FUTURE_TOLERANCE ahead."""
    arrived = (info.context or {}).get(ARRIVED_AT)
    if isinstance(arrived, datetime) and moment - arrived > FUTURE_TOLERANCE:
        raise ValueError(
            f"more than {FUTURE_TOLERANCE.days} day in the future ({moment.isoformat()})"
        )
    return moment


_Storable = BeforeValidator(_storable)


def in_utc(moment: datetime) -> datetime:
    """`moment` as given, when UTC can hold it; ValueError for one it cannot (year 1 at +01:00
    is year 0 in UTC), which no database column, and no conversion to UTC, could take. The
    offset is kept: dedup keys of what senders send are computed on their own values."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{moment.isoformat()} is out of range: it must fall between the years 1 and 9999 "
            "in UTC"
        ) from None
    return moment


# --- account attribute values ---------------------------------------------------------------

# Epoch milliseconds, as HubSpot keeps date properties (12 to 14 digits: 1973 to 5138).
_EPOCH_MS = re.compile(r"^\d{12,14}$")


def parse_timestamp(value: Any) -> datetime | None:
    """A moment as CRMs hold it (ISO 8601, or epoch milliseconds as a string or number, the
    way HubSpot keeps dates), in UTC. None when the value is not one; naive ISO values are
    taken as UTC, as CRMs mean them."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        if not isinstance(value, str):
            return None
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def calendar_date(value: object) -> date:
    """A date given as ISO 8601 (a date, or a date and time: its date) or as epoch
    milliseconds; ValueError saying what is accepted otherwise. "31/12/2026" is refused: it
    cannot be told from 12/31 by looking at it."""
    text = (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )
    if _EPOCH_MS.match(text):
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC).date()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
    except ValueError:
        pass
    raise ValueError(f"takes an ISO 8601 date (2026-12-31) or epoch milliseconds, not {value!r}")


def _date_text(value: object) -> str:
    # Kept as given (trimmed): the form a CRM holds it in is what it is compared with.
    calendar_date(value)
    return str(value).strip()


def bounded_number(value: object, *, low: float, high: float) -> float:
    """A finite number in [low, high] (given as a number or its text); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"takes a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"takes a number, not {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"takes a finite number from {low:g} to {high:g}, not {value!r}")
    return number


# What each typed account attribute must be; `checked_attribute` applies them to CRM values,
# the native models to what senders send.
_ATTRIBUTE_CHECKS: dict[str, Any] = {
    "renewal_date": _date_text,
    "seats": lambda value: bounded_number(value, low=0, high=MAX_SEATS),
    "arr": lambda value: bounded_number(value, low=0, high=MAX_ARR),
}


def attribute_problem(name: str, value: str | None) -> str | None:
    """Why `value` is no valid value of attribute `name`, or None (None itself is a clear)."""
    check = _ATTRIBUTE_CHECKS.get(name)
    if value is None or check is None:
        return None
    try:
        check(value)
    except ValueError as exc:
        return f"{name} {exc}"
    return None


# --- pydantic types every intake model shares -----------------------------------------------

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=ACCOUNT_ID), _Storable]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=RECORD_ID), _Storable]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=EVENT_ID), _Storable]
Name = Annotated[str, StringConstraints(max_length=NAME), _Storable]
ShortText = Annotated[str, StringConstraints(max_length=SHORT_TEXT), _Storable]
Text = Annotated[str, StringConstraints(max_length=TEXT), _Storable]
Feature = Annotated[str, StringConstraints(max_length=FEATURE), _Storable]
Comment = Annotated[str, StringConstraints(max_length=COMMENT), _Storable]
EventKind = Annotated[str, StringConstraints(min_length=1, max_length=EVENT_KIND), _Storable]
PropertyValue = Annotated[str, StringConstraints(max_length=PROPERTY_VALUE), _Storable]
Seats = Annotated[int, Field(ge=0, le=MAX_SEATS)]
Arr = Annotated[float, Field(ge=0, le=MAX_ARR, allow_inf_nan=False)]
CrmInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
EventTime = Annotated[AwareDatetime, AfterValidator(in_utc), AfterValidator(not_far_future)]
# A moment a request names (a filter's bound): with its offset, and one UTC can hold.
Moment = Annotated[AwareDatetime, AfterValidator(in_utc)]
# ISO 8601 or epoch milliseconds, kept as given.
DateText = Annotated[str, BeforeValidator(_date_text)]
