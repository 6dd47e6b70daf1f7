"""Verify HubSpot webhook signatures (v1, v2, v3) and turn events into normalised events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector.errors import PayloadError, SignatureError
from connector.hubspot.fields import PROPERTY_BY_FIELD
from connector.model import AccountAttributes, AccountDeleted, NormalisedEvent

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

# Company properties that carry account attributes, by their HubSpot internal name.
COMPANY_ATTRIBUTE_PROPERTIES: Mapping[str, str] = {"name": "name", "domain": "domain"}


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
    accept_legacy: bool = True,
) -> str:
    """Check a webhook request; return the signature version that matched.

    `headers` must be case-insensitive (Starlette's are). v3 is preferred whenever HubSpot sent
    it; v1/v2 carry no timestamp, so they are only accepted when `accept_legacy` is on.
    """
    v3_signature = headers.get("x-hubspot-signature-v3")
    if v3_signature is not None:
        timestamp = headers.get("x-hubspot-request-timestamp", "")
        if not timestamp.isdigit():
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

    event_id: int = Field(alias="eventId")
    subscription_type: str = Field(alias="subscriptionType", min_length=1)
    portal_id: int = Field(alias="portalId")
    occurred_at: int = Field(alias="occurredAt", ge=0)
    object_id: int | None = Field(default=None, alias="objectId")
    subscription_id: int | None = Field(default=None, alias="subscriptionId")
    app_id: int | None = Field(default=None, alias="appId")
    attempt_number: int = Field(default=0, alias="attemptNumber")
    property_name: str | None = Field(default=None, alias="propertyName")
    property_value: str | None = Field(default=None, alias="propertyValue")
    change_source: str | None = Field(default=None, alias="changeSource")

    @property
    def dedup_key(self) -> str:
        # eventId stays the same across HubSpot's redeliveries (attemptNumber grows).
        return f"{self.portal_id}:{self.event_id}"

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at / 1000, tz=UTC)


def _error_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def parse_batch(body: bytes) -> list[HubSpotEvent]:
    """Parse a webhook body: a JSON array of 1..100 events. Raises PayloadError naming the field."""
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
    events: list[HubSpotEvent] = []
    for index, item in enumerate(document):
        try:
            events.append(HubSpotEvent.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"[{index}].{_error_path(err['loc'])}: {err['msg']}".replace("].[", "][")
                if err["loc"]
                else f"[{index}]: {err['msg']}"
                for err in exc.errors()
            )
            raise PayloadError(problems) from exc
    return events


def normalise(event: HubSpotEvent) -> list[NormalisedEvent] | None:
    """Translate one event; None means the subscription type is not handled.

    An empty list means the event was understood and carries nothing for scoring.
    """
    object_type, _, action = event.subscription_type.partition(".")
    if object_type != "company" or event.object_id is None:
        return None
    if event.property_name in PROPERTY_BY_FIELD:
        # Our own write-back shows up as a property change; counting it would start a loop.
        return []
    account = str(event.object_id)
    at = event.occurred
    if action == "deletion":
        return [AccountDeleted(account=account, at=at)]
    if action not in {"creation", "propertyChange", "merge", "restore", "associationChange"}:
        return None
    # Any company event makes the account known (so it is scored, if only as "unknown").
    attribute = COMPANY_ATTRIBUTE_PROPERTIES.get(event.property_name or "")
    values = {attribute: event.property_value} if action == "propertyChange" and attribute else {}
    return [AccountAttributes(account=account, at=at, attributes=values)]
