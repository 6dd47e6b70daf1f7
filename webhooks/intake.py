"""Intake: verify the raw bytes, validate, store in the inbox. Nothing slow happens here.

CRM webhooks go through their CRM's spec (connector.registry); Segment-compatible calls and
native events each have one function."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from connector import bounds, jsonparse, segment
from connector.crm import CRMSpec
from connector.errors import PayloadError, PayloadTooLargeError
from connector.inbound import Delivery, Refused
from connector.native import NATIVE_EVENT
from webhooks.connections import Connection, ConnectionRegistry
from webhooks.errors import (
    BadPayload,
    Forbidden,
    InvalidFields,
    NotConfigured,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
    Unauthenticated,
)
from webhooks.inbox_kinds import SEGMENT_REQUEST
from webhooks.inbox_writer import InboxWriter
from webhooks.metrics import Metrics
from webhooks.store import inbox
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class IntakeResult:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


# A CRM's refusal (connector.inbound.Refused) as the service's error of the same status.
_REFUSALS: dict[int, type[ServiceError]] = {
    error.status_code: error
    for error in (
        BadPayload,
        Unauthenticated,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        TooManyRequests,
        NotConfigured,
    )
}


@dataclass(frozen=True)
class _Connections:
    """The registry as a CRM's intake sees it (connector.inbound.Connections)."""

    registry: ConnectionRegistry
    sessions: SessionFactory

    def named(self, name: str) -> Connection | None:
        return self.registry.get(name)

    def of_crm(self, crm: str) -> list[Connection]:
        return self.registry.of_crm(crm)

    def app(self, crm: str) -> Connection | None:
        return self.registry.app(crm)

    async def refresh(self) -> bool:
        return await self.registry.sync_installed(self.sessions)


async def accept_crm(
    *,
    spec: CRMSpec,
    writer: InboxWriter,
    sessions: SessionFactory,
    connections: ConnectionRegistry,
    delivery: Delivery,
    metrics: Metrics,
) -> IntakeResult:
    """Check a CRM webhook delivery with the CRM's spec and store its rows, deduplicated per
    connection. Returns only once they are committed: the answer is what tells the CRM to stop
    redelivering, so it must never precede storage."""
    try:
        parsed = await spec.inbound.accept(delivery, _Connections(connections, sessions))
    except Refused as exc:
        refusal = _REFUSALS.get(exc.status, BadPayload)
        raise refusal(exc.message, headers=exc.headers or None) from exc
    # Queued together, so they share one commit (with other requests' events too).
    counts = await asyncio.gather(
        *(
            writer.write(
                source=spec.name,
                connection=name,
                events=[
                    inbox.NewEvent(
                        dedup_key=row.dedup_key, kind=row.kind, payload=row.payload, body=row.body
                    )
                    for row in rows
                ],
                received_at=delivery.now,
            )
            for name, rows in parsed.rows.items()
        )
    )
    stored = sum(counts)
    log.info("webhook_accepted", source=spec.name, **parsed.log, stored=stored)
    metrics.intake(spec.name, received=parsed.received, stored=stored)
    return IntakeResult(received=parsed.received, stored=stored)


# --- Segment-compatible product events ----------------------------------------------------------


SEGMENT_CHALLENGE = {"WWW-Authenticate": 'Basic realm="segment"'}


def basic_user(authorization: str | None) -> str | None:
    """The user of an HTTP Basic header (Segment's write key); None without the header. Any
    other scheme is refused: a request that sends credentials is judged on them alone."""
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthenticated(
            "Authorization: send the Segment write key as HTTP Basic credentials",
            headers=SEGMENT_CHALLENGE,
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated(
            "Authorization: malformed Basic credentials", headers=SEGMENT_CHALLENGE
        ) from None
    # Segment asks for "key:"; a key encoded without the colon still works there.
    return decoded.partition(":")[0]


async def accept_segment(
    *,
    writer: InboxWriter,
    connections: ConnectionRegistry,
    call: str,
    body: bytes,
    authorization: str | None,
    now: datetime,
    metrics: Metrics,
) -> IntakeResult:
    """Check and store one Segment request whole; the worker splits it into calls (each
    deduplicated on its messageId). A request sent again byte for byte is stored once."""
    if not connections.has_segment_sources():
        raise NotConfigured(
            "Segment ingestion is not configured: set CRM_HEALTH_SEGMENT_WRITE_KEY or a "
            "`segment` block in the connections file"
        )
    # Checked before the body is parsed: a sender with wrong credentials gets nothing parsed.
    # Only a request without an Authorization header may carry its key in the body (writeKey),
    # and that body is parsed within the limits every intake shares.
    write_key = basic_user(authorization)
    source = None if write_key is None else connections.segment_for_write_key(write_key)
    if write_key is not None and source is None:
        raise Unauthenticated("unknown Segment write key", headers=SEGMENT_CHALLENGE)
    try:
        checked = segment.check_request(body, call=call)
    except PayloadTooLargeError as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    if source is None:
        if checked.write_key is None:
            raise Unauthenticated(
                "missing Segment write key: send it as the HTTP Basic user (or writeKey)",
                headers=SEGMENT_CHALLENGE,
            )
        source = connections.segment_for_write_key(checked.write_key)
        if source is None:
            raise Unauthenticated("unknown Segment write key", headers=SEGMENT_CHALLENGE)
    try:
        text = body.decode() if checked.redacted is None else checked.redacted
    except UnicodeDecodeError:
        raise BadPayload("body must be UTF-8 encoded JSON") from None
    stored = await writer.write(
        source="segment",
        connection=source.connection,
        events=[
            inbox.NewEvent(
                dedup_key="request:" + hashlib.sha256(body).hexdigest(),
                kind=f"{SEGMENT_REQUEST}{call}",
                payload={"call": call, "received_at": now.isoformat()},
                body=text,
            )
        ],
        received_at=now,
    )
    log.info(
        "segment_accepted",
        connection=source.connection,
        call=call,
        calls=checked.calls,
        duplicate_request=not stored,
    )
    metrics.intake("segment", received=checked.calls, stored=checked.calls if stored else 0)
    return IntakeResult(received=checked.calls, stored=checked.calls if stored else 0)


# --- native events --------------------------------------------------------------------------------

MAX_NATIVE_EVENTS = 1000
# Field problems listed in one answer; a batch broken everywhere is not worth a 1 MB reply.
_MAX_PROBLEMS = 50


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def parse_native(body: bytes, *, received_at: datetime) -> list[inbox.NewEvent]:
    """The events of a `POST /ingest/events` body, each checked against the native schema;
    every invalid field is named (`events[3].user: Field required`)."""
    try:
        document: Any = jsonparse.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPayload(f"body is not valid JSON: {exc}") from exc
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise BadPayload('body must be a JSON object {"events": [...]}')
    items: list[Any] = document["events"]
    if not items:
        raise BadPayload("events: empty; send 1 to 1000 events")
    if len(items) > MAX_NATIVE_EVENTS:
        raise BadPayload(f"events: {len(items)} events; at most {MAX_NATIVE_EVENTS} per request")
    problems: list[str] = []
    events: list[inbox.NewEvent] = []
    arrived = bounds.edge_context()
    for index, item in enumerate(items):
        try:
            event = NATIVE_EVENT.validate_python(item, context=arrived)
        except ValidationError as exc:
            for error in exc.errors():
                # The union's discriminator puts the type name in the path: leave it out.
                location = tuple(
                    part for position, part in enumerate(error["loc"]) if position != 0
                )
                problems.append(
                    f"events[{index}]{'.' if location else ''}{_field_path(location)}: "
                    f"{bounds.validation_message(error['msg'])}"
                )
            continue
        payload = dict(item)
        # Stored with its time, so a replay months later still puts it on the right day.
        payload["at"] = (event.at or received_at).isoformat()
        events.append(
            inbox.NewEvent(
                dedup_key=event.id if event.id is not None else f"uuid:{uuid.uuid4()}",
                kind=event.type,
                payload=payload,
            )
        )
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        more = len(problems) - len(shown)
        raise InvalidFields("; ".join(shown) + (f"; and {more} more" if more else ""))
    return events


async def accept_native(
    *, sessions: SessionFactory, connection: str, body: bytes, now: datetime, metrics: Metrics
) -> IntakeResult:
    events = parse_native(body, received_at=now)
    async with sessions() as session, session.begin():
        stored = await inbox.insert_events(
            session, source="native", connection=connection, events=events, received_at=now
        )
    log.info("native_accepted", connection=connection, received=len(events), stored=stored)
    metrics.intake("native", received=len(events), stored=stored)
    return IntakeResult(received=len(events), stored=stored)
