"""Intake: verify the raw bytes, validate, store in the inbox. Nothing slow happens here.

HubSpot webhooks, Salesforce Outbound Messages, Dynamics 365 webhooks, Segment-compatible calls
and native events each have one function."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from connector import bounds, jsonparse, segment
from connector.dynamics import events as dynamics_events
from connector.errors import PayloadError, PayloadTooLargeError, SignatureError
from connector.hubspot import events as hubspot_events
from connector.native import NATIVE_EVENT
from connector.salesforce import events as salesforce_events
from webhooks.connections import ConnectionRegistry
from webhooks.connections_salesforce import SalesforceInbound
from webhooks.errors import (
    BadPayload,
    Forbidden,
    InvalidFields,
    NotConfigured,
    NotFound,
    PayloadTooLarge,
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


def unrouted_hubspot_connection(portal_id: int) -> str:
    """The name an OAuth install of `portal_id` gets. Intake files events under it only when
    the OAuth app's secret signed them (the secret that owns every install), so a replay after
    the install processes them; events any other secret signs never get this name."""
    return f"hubspot-{portal_id}"


def _refuse_unowned(
    *, portal: int, secret: str, connections: ConnectionRegistry, reason: str
) -> Unauthenticated:
    # Both sides' portal ids, never the secret: enough to tell a misconfigured app from a
    # forgery aimed at another tenant.
    log.warning(
        "hubspot_portal_not_owned",
        source="hubspot",
        portal_id=portal,
        owner_portal_ids=connections.hubspot_portals_owned(secret),
        oauth_app=connections.is_hubspot_app_secret(secret),
        reason=reason,
    )
    return Unauthenticated(
        f"portalId {portal}: the app secret that signed this request does not own this portal"
    )


def _verify_hubspot(
    *,
    secrets: list[str],
    connections: ConnectionRegistry,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance_seconds: int,
) -> tuple[str, str]:
    """(the secret that signed the request, signature version). Several HubSpot apps (one
    private app per portal, or an OAuth app) may post here, so each app's secret is tried."""
    failure: SignatureError | None = None
    for secret in secrets:
        try:
            version = hubspot_events.verify_request(
                client_secret=secret,
                method=method,
                uri=uri,
                body=body,
                headers=headers,
                now=now,
                tolerance_seconds=tolerance_seconds,
                # v1/v2 bind no time (v1 not even the URL): only for secrets whose
                # connections opted in, so a stale v3 request stripped to v1 is refused.
                accept_legacy=connections.hubspot_accepts_legacy(secret),
            )
        except SignatureError as exc:
            failure = failure or exc
            continue
        return secret, version
    assert failure is not None
    raise failure


async def accept_hubspot(
    *,
    writer: InboxWriter,
    sessions: SessionFactory,
    connections: ConnectionRegistry,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance_seconds: int,
    metrics: Metrics,
) -> IntakeResult:
    secrets = connections.hubspot_secrets()
    if not secrets:
        raise NotConfigured(
            "HubSpot webhooks are not configured: set CRM_HEALTH_HUBSPOT_CLIENT_SECRET"
        )
    try:
        secret, version = _verify_hubspot(
            secrets=secrets,
            connections=connections,
            method=method,
            uri=uri,
            body=body,
            headers=headers,
            now=now,
            tolerance_seconds=tolerance_seconds,
        )
    except SignatureError as exc:
        log.warning("webhook_rejected", source="hubspot", reason=str(exc))
        raise Unauthenticated(f"invalid HubSpot signature: {exc}") from exc
    try:
        parsed = hubspot_events.parse_batch(body)
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    # A batch almost always comes from one portal: route each portal once, not each event.
    portals = {event.portal_id for event in parsed}
    owners = {portal: connections.for_hubspot_portal(portal, secret=secret) for portal in portals}
    if None in owners.values() and await connections.sync_installed(sessions):
        # An install just made in another process may own them.
        owners = {
            portal: connections.for_hubspot_portal(portal, secret=secret) for portal in portals
        }
    # The whole request is refused when one of its portals is not the signing secret's: a
    # secret that signs events of a portal it does not own is a forgery or a misconfiguration,
    # and neither is stored.
    names: dict[int, str] = {}
    for portal in sorted(portals):
        connection = owners[portal]
        if connection is not None:
            if version != "v3" and not connection.accept_legacy_signatures:
                log.warning(
                    "webhook_rejected",
                    source="hubspot",
                    reason="legacy signature",
                    connection=connection.name,
                    signature=version,
                )
                raise Unauthenticated(
                    f"invalid HubSpot signature: connection {connection.name!r} accepts only "
                    "v3 signatures (X-HubSpot-Signature-v3 missing)"
                )
            names[portal] = connection.name
            continue
        if not connections.is_hubspot_app_secret(secret):
            raise _refuse_unowned(
                portal=portal, secret=secret, connections=connections, reason="private app"
            )
        name = unrouted_hubspot_connection(portal)
        if connections.get(name) is not None:
            # A configured connection already has the install's name: filing the app's events
            # under it would hand them to that connection's secret owner.
            raise _refuse_unowned(
                portal=portal, secret=secret, connections=connections, reason="name taken"
            )
        if version != "v3" and not connections.hubspot_app_accepts_legacy:
            raise Unauthenticated(
                "invalid HubSpot signature: OAuth installs accept only v3 signatures "
                "(X-HubSpot-Signature-v3 missing)"
            )
        # Signed by the OAuth app, so HubSpot sends them for a portal that installed it (the
        # callback may not have reached us yet): kept under the install's name, the worker
        # dead-letters them with the reason and a replay after the install processes them.
        log.warning("webhook_portal_unknown", source="hubspot", portal_id=portal)
        names[portal] = name
    routed: dict[str, list[inbox.NewEvent]] = defaultdict(list)
    for event in parsed:
        routed[names[event.portal_id]].append(
            inbox.NewEvent(
                dedup_key=event.dedup_key,
                kind=event.subscription_type,
                # What HubSpot sent (unknown keys too), without the defaults of absent fields:
                # half the bytes to serialise and store, and the worker reads it the same.
                payload=event.model_dump(mode="json", by_alias=True, exclude_unset=True),
            )
        )
    # Queued together, so they share one commit (with other requests' events too).
    counts = await asyncio.gather(
        *(
            writer.write(source="hubspot", connection=name, events=new_events, received_at=now)
            for name, new_events in routed.items()
        )
    )
    stored = sum(counts)
    log.info(
        "webhook_accepted",
        source="hubspot",
        connections=sorted(routed),
        signature=version,
        received=len(parsed),
        stored=stored,
        event_ids=[event.event_id for event in parsed[:10]],
    )
    metrics.intake("hubspot", received=len(parsed), stored=stored)
    return IntakeResult(received=len(parsed), stored=stored)


# --- Salesforce Outbound Messages --------------------------------------------------------------


def _check_salesforce_secret(
    inbound: SalesforceInbound, *, connection: str, secret: str | None, client: str | None
) -> None:
    if inbound.shared_secret is None:
        if inbound.allow_unsigned:
            return
        log.warning(
            "webhook_rejected", source="salesforce", connection=connection, reason="no_secret"
        )
        raise Unauthenticated(
            f"connection {connection!r} has no shared secret configured: set its webhook_secret "
            "(CRM_HEALTH_SALESFORCE_WEBHOOK_SECRET), or opt out with allow_unsigned "
            "(CRM_HEALTH_SALESFORCE_ALLOW_UNSIGNED)"
        )
    wait = inbound.guesses.blocked_for(client)
    if wait > 0:
        log.warning(
            "webhook_rejected",
            source="salesforce",
            connection=connection,
            client=client,
            reason="too_many_wrong_secrets",
        )
        raise TooManyRequests(
            "too many wrong shared secrets from this address; try again later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if not inbound.secret_matches(secret):
        inbound.guesses.failed(client)
        log.warning("webhook_rejected", source="salesforce", connection=connection, client=client)
        raise Unauthenticated(
            "missing or wrong shared secret: put it as the last path segment of the endpoint URL"
            " or in the X-CRM-Health-Secret header"
        )


async def accept_salesforce(
    *,
    writer: InboxWriter,
    connections: ConnectionRegistry,
    connection: str,
    body: bytes,
    secret: str | None,
    client: str | None,
    now: datetime,
    metrics: Metrics,
) -> IntakeResult:
    """Check and store an Outbound Message's notifications, one inbox row each, deduplicated on
    the notification Id. Returns only once they are committed: the caller's Ack is what tells
    Salesforce to stop redelivering, so it must never precede storage.

    `client` is the peer address: after too many wrong secrets from it for this connection,
    its requests are refused (429) without the secret being compared, the right one included,
    until the window passes: that is what stops guessing."""
    target = connections.get(connection)
    if target is None or target.salesforce is None:
        raise NotFound(f"no Salesforce connection named {connection!r}")
    inbound = target.salesforce
    if inbound.organization_id is None:
        raise NotConfigured(
            f"connection {connection!r} cannot accept Outbound Messages: set its organization_id "
            "(CRM_HEALTH_SALESFORCE_ORGANIZATION_ID)"
        )
    _check_salesforce_secret(inbound, connection=connection, secret=secret, client=client)
    try:
        message = salesforce_events.parse_outbound_message(body)
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    if not inbound.same_organization(message.organization_id):
        log.warning(
            "webhook_rejected",
            source="salesforce",
            connection=connection,
            organization_id=message.organization_id,
        )
        raise Forbidden(
            f"OrganizationId {message.organization_id} is not the org of connection {connection!r}"
        )
    events = [
        inbox.NewEvent(
            dedup_key=notification.dedup_key,
            kind=notification.sobject_type,
            payload={
                "id": notification.id,
                "sobject_type": notification.sobject_type,
                "fields": notification.fields,
                "action_id": message.action_id,
            },
        )
        for notification in message.notifications
    ]
    stored = await writer.write(
        source="salesforce", connection=connection, events=events, received_at=now
    )
    log.info(
        "webhook_accepted",
        source="salesforce",
        connection=connection,
        action_id=message.action_id,
        received=len(events),
        stored=stored,
        notification_ids=[event.dedup_key for event in events[:10]],
    )
    metrics.intake("salesforce", received=len(events), stored=stored)
    return IntakeResult(received=len(events), stored=stored)


# --- Dynamics 365 (Dataverse) webhooks -----------------------------------------------------------

# Dataverse sets it when the context was over 256 KB and its images were dropped.
DYNAMICS_SIZE_EXCEEDED = dynamics_events.SIZE_EXCEEDED_HEADER


async def accept_dynamics(
    *,
    writer: InboxWriter,
    connections: ConnectionRegistry,
    connection: str,
    body: bytes,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    now: datetime,
    metrics: Metrics,
) -> IntakeResult:
    """Check the registration's credential, parse the RemoteExecutionContext and store it
    whole (the worker maps it, reading the record back when the images were dropped);
    deduplicated on correlation/request id, record, stage and message."""
    target = connections.get(connection)
    if target is None or target.dynamics is None:
        raise NotFound(f"no Dynamics 365 connection named {connection!r}")
    inbound = target.dynamics
    if inbound.auth_value is None:
        raise NotConfigured(
            f"connection {connection!r} cannot accept webhooks: set the value its webhook "
            "registration sends (CRM_HEALTH_DYNAMICS_WEBHOOK_AUTH_VALUE)"
        )
    try:
        dynamics_events.verify_request(
            mode=inbound.auth_mode,
            name=inbound.auth_name,
            value=inbound.auth_value,
            headers=headers,
            query=query,
        )
    except SignatureError as exc:
        log.warning("webhook_rejected", source="dynamics", connection=connection, reason=str(exc))
        raise Unauthenticated(f"Dynamics webhook not authenticated: {exc}") from exc
    # Dataverse documents the header, not its value: its presence is what counts.
    flag = headers.get(DYNAMICS_SIZE_EXCEEDED)
    size_exceeded = flag is not None and flag.strip().lower() not in {"false", "0"}
    try:
        context = dynamics_events.parse_execution_context(body, size_exceeded=size_exceeded)
        text = body.decode()
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    except UnicodeDecodeError:
        raise BadPayload("body must be UTF-8 encoded JSON") from None
    stored = await writer.write(
        source="dynamics",
        connection=connection,
        events=[
            inbox.NewEvent(
                dedup_key=context.dedup_key,
                kind=f"{context.entity}:{context.message}",
                payload={"size_exceeded": size_exceeded},
                body=text,
            )
        ],
        received_at=now,
    )
    log.info(
        "webhook_accepted",
        source="dynamics",
        connection=connection,
        message=context.message,
        entity=context.entity,
        record_id=context.record_id,
        correlation_id=context.correlation_id,
        stored=stored,
    )
    metrics.intake("dynamics", received=1, stored=stored)
    return IntakeResult(received=1, stored=stored)


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
