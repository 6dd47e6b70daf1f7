"""Verify HubSpot webhook signatures (v1, v2, v3) and turn events into normalised events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from connector import bounds
from connector.errors import PayloadError, SignatureError
from connector.jsonparse import check_limits

MAX_EVENTS_PER_REQUEST = 100
DEFAULT_TIMESTAMP_TOLERANCE_SECONDS = 300

# HubSpot signs the v3 URI with these characters decoded, whatever the client sent.
_V3_URI_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}

# The objects whose events count, by the plural name HubSpot's CRM API paths use. Legacy
# subscriptions name the object in the type (`contact.creation`); generic ones (`object.*`) carry
# its objectTypeId instead (HubSpot's object type id table: 0-1 contacts ... 0-49 emails).
LEGACY_OBJECT_TYPES: Mapping[str, str] = {
    "company": "companies",
    "contact": "contacts",
    "deal": "deals",
    "ticket": "tickets",
}
OBJECT_TYPE_IDS: Mapping[str, str] = {
    "0-1": "contacts",
    "0-2": "companies",
    "0-3": "deals",
    "0-5": "tickets",
    "0-46": "notes",
    "0-47": "meetings",
    "0-48": "calls",
    "0-49": "emails",
}
# The object names legacy associationChange events use in `associationType` (CONTACT_TO_COMPANY).
ASSOCIATION_OBJECTS: Mapping[str, str] = {
    "CONTACT": "contacts",
    "COMPANY": "companies",
    "DEAL": "deals",
    "TICKET": "tickets",
}


def signature_v1(client_secret: str, body: bytes) -> str:
    return hashlib.sha256(client_secret.encode() + body).hexdigest()


def signature_v2(client_secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(
        client_secret.encode() + method.encode() + uri.encode() + body
    ).hexdigest()


def decode_v3_uri(uri: str) -> str:
    for encoded, decoded in _V3_URI_DECODE.items():
        uri = uri.replace(encoded, decoded).replace(encoded.lower(), decoded)
    return uri


def signature_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + decode_v3_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_request(
    *,
    client_secret: str,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance_seconds: int = DEFAULT_TIMESTAMP_TOLERANCE_SECONDS,
    accept_legacy: bool = False,
) -> str:
    """Check a webhook request; return the signature version that matched.

    `headers` must be case-insensitive (Starlette's are). A request with a v3 signature is
    checked as v3 only, whatever else it carries. v1/v2 bind no time (v1 not even the URL), so
    a captured v3 request stripped of its v3 headers would pass as v1: they are checked only
    when the caller's connection opted in (`accept_legacy`).
    """
    v3_signature = headers.get("x-hubspot-signature-v3")
    if v3_signature is not None:
        timestamp = headers.get("x-hubspot-request-timestamp", "")
        # ASCII digits only ("²" is a digit to str.isdigit), and no more than epoch
        # milliseconds need (int() refuses thousands of digits).
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 16):
            raise SignatureError("X-HubSpot-Request-Timestamp is missing or not epoch milliseconds")
        age_ms = now.timestamp() * 1000 - int(timestamp)
        if abs(age_ms) > tolerance_seconds * 1000:
            raise SignatureError(
                f"X-HubSpot-Request-Timestamp is more than {tolerance_seconds} s from now"
            )
        expected = signature_v3(client_secret, method, uri, body, timestamp)
        if not hmac.compare_digest(expected.encode(), v3_signature.encode()):
            raise SignatureError("X-HubSpot-Signature-v3 does not match")
        return "v3"

    legacy_signature = headers.get("x-hubspot-signature")
    if legacy_signature is None:
        raise SignatureError("no HubSpot signature header (X-HubSpot-Signature-v3)")
    if not accept_legacy:
        raise SignatureError("only v3 signatures are accepted (X-HubSpot-Signature-v3 missing)")
    version = headers.get("x-hubspot-signature-version", "v1").lower()
    if version == "v1":
        expected = signature_v1(client_secret, body)
    elif version == "v2":
        expected = signature_v2(client_secret, method, uri, body)
    else:
        raise SignatureError(f"unsupported X-HubSpot-Signature-Version {version!r}")
    if not hmac.compare_digest(expected.encode(), legacy_signature.lower().encode()):
        raise SignatureError(f"X-HubSpot-Signature ({version}) does not match")
    return version


class HubSpotEvent(BaseModel):
    """One event of a HubSpot webhook batch; unknown keys are kept for the raw record."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    # Ids are HubSpot's 64-bit numbers: they become dedup keys and record ids, which have a
    # length (connector.bounds).
    event_id: bounds.CrmInt = Field(alias="eventId")
    subscription_type: bounds.EventKind = Field(alias="subscriptionType")
    portal_id: bounds.CrmInt = Field(alias="portalId")
    occurred_at: bounds.CrmInt = Field(alias="occurredAt")
    object_id: bounds.CrmInt | None = Field(default=None, alias="objectId")
    subscription_id: bounds.CrmInt | None = Field(default=None, alias="subscriptionId")
    app_id: bounds.CrmInt | None = Field(default=None, alias="appId")
    attempt_number: bounds.CrmInt = Field(default=0, alias="attemptNumber")
    property_name: bounds.ShortText | None = Field(default=None, alias="propertyName")
    property_value: bounds.PropertyValue | None = Field(default=None, alias="propertyValue")
    change_source: bounds.ShortText | None = Field(default=None, alias="changeSource")
    # Who made a change: "userId:123" for a person in HubSpot's UI, an app or integration id
    # otherwise.
    source_id: bounds.ShortText | None = Field(default=None, alias="sourceId")
    # Generic (`object.*`) events: which kind of object, as HubSpot's object type id ("0-49").
    object_type_id: bounds.ShortText | None = Field(default=None, alias="objectTypeId")
    # merge events
    primary_object_id: bounds.CrmInt | None = Field(default=None, alias="primaryObjectId")
    merged_object_ids: tuple[bounds.CrmInt, ...] = Field(default=(), alias="mergedObjectIds")
    new_object_id: bounds.CrmInt | None = Field(default=None, alias="newObjectId")
    # associationChange events; generic ones name both sides' object type ids
    association_type: bounds.ShortText | None = Field(default=None, alias="associationType")
    from_object_id: bounds.CrmInt | None = Field(default=None, alias="fromObjectId")
    to_object_id: bounds.CrmInt | None = Field(default=None, alias="toObjectId")
    from_object_type_id: bounds.ShortText | None = Field(default=None, alias="fromObjectTypeId")
    to_object_type_id: bounds.ShortText | None = Field(default=None, alias="toObjectTypeId")
    association_removed: bool | None = Field(default=None, alias="associationRemoved")
    is_primary_association: bool | None = Field(default=None, alias="isPrimaryAssociation")

    @field_validator("occurred_at")
    @classmethod
    def _not_far_future(cls, value: int, info: ValidationInfo) -> int:
        # Where the webhook arrives only (see bounds.ARRIVED_AT); in integers, as a time past
        # year 9999 is no datetime at all.
        arrived = (info.context or {}).get(bounds.ARRIVED_AT)
        if isinstance(arrived, datetime):
            ahead_ms = value - arrived.timestamp() * 1000
            if ahead_ms > bounds.FUTURE_TOLERANCE.total_seconds() * 1000:
                raise ValueError(f"more than {bounds.FUTURE_TOLERANCE.days} day in the future")
        return value

    @property
    def dedup_key(self) -> str:
        # eventId stays the same across HubSpot's redeliveries (attemptNumber grows).
        return f"{self.portal_id}:{self.event_id}"

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at / 1000, tz=UTC)

    @property
    def action(self) -> str:
        """creation, propertyChange, deletion, merge, restore, associationChange, ..."""
        return self.subscription_type.partition(".")[2]

    @property
    def object_type(self) -> str | None:
        """The plural API name of the object the event is about; None for other objects."""
        prefix = self.subscription_type.partition(".")[0]
        if prefix == "object":
            return OBJECT_TYPE_IDS.get(self.object_type_id or "")
        return LEGACY_OBJECT_TYPES.get(prefix)

    @property
    def changed_by_user(self) -> str | None:
        """The HubSpot user id of the person who made the change, when `sourceId` names one
        ("userId:123"); None for an app, a workflow, an import or no source."""
        kind, _, user = (self.source_id or "").partition(":")
        return user if kind == "userId" and user.isascii() and user.isdigit() else None

    def association_sides(self) -> tuple[str | None, str | None]:
        """(from, to) object types of an associationChange; None for a side we do not map."""
        if self.from_object_type_id is not None or self.to_object_type_id is not None:
            return (
                OBJECT_TYPE_IDS.get(self.from_object_type_id or ""),
                OBJECT_TYPE_IDS.get(self.to_object_type_id or ""),
            )
        if self.association_type is None:
            raise PayloadError(
                f"event {self.event_id}: associationChange without associationType "
                "or fromObjectTypeId/toObjectTypeId"
            )
        source, found, target = self.association_type.upper().partition("_TO_")
        if not found:
            return None, None
        return ASSOCIATION_OBJECTS.get(source), ASSOCIATION_OBJECTS.get(target)


def _error_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


_BATCH = TypeAdapter(list[HubSpotEvent])


def _check_storable(body: bytes, document: Any) -> None:
    problem = bounds.unstorable_text(body, document)
    if problem is not None:
        raise PayloadError(problem)


def parse_batch(body: bytes) -> list[HubSpotEvent]:
    """Parse a webhook body: a JSON array of 1..100 events. Raises PayloadError naming the field."""
    # Before either parser: each fails its own way past some depth or number size.
    check_limits(body)
    # pydantic's own JSON parser builds the events straight from the bytes, at half the CPU of
    # json.loads plus validating each dict; any body it refuses takes the path below, which
    # decides what is accepted and names the problem.
    try:
        events = _BATCH.validate_json(body, context=bounds.edge_context())
    except ValidationError:
        pass
    else:
        if 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
            # Keys the model does not know are stored too: they must be storable text.
            if b"\\u" in body:
                _check_storable(body, json.loads(body))
            return events
    try:
        document: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, list):
        raise PayloadError("body must be a JSON array of HubSpot events")
    if not document:
        raise PayloadError("body is an empty array: expected 1 to 100 events")
    if len(document) > MAX_EVENTS_PER_REQUEST:
        raise PayloadError(
            f"body has {len(document)} events: HubSpot sends at most {MAX_EVENTS_PER_REQUEST}"
        )
    _check_storable(body, document)
    events = []
    for index, item in enumerate(document):
        try:
            events.append(HubSpotEvent.model_validate(item, context=bounds.edge_context()))
        except ValidationError as exc:
            problems = "; ".join(
                (
                    f"[{index}].{_error_path(err['loc'])}".replace("].[", "][")
                    if err["loc"]
                    else f"[{index}]"
                )
                + f": {bounds.validation_message(err['msg'])}"
                for err in exc.errors()
            )
            raise PayloadError(problems) from exc
    return events
