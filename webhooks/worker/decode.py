"""Per-source decoding of claimed inbox events (HubSpot with its record reads, Salesforce,
Dynamics 365, Segment, native and backfill documents): what each event becomes, or why it
waits, is ignored or is dead-lettered. It may call the CRM, so it runs outside any transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from connector.base import CRMConnector
from connector.dynamics import events as dynamics_events
from connector.dynamics.api import DynamicsConnector
from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRetriesExhausted,
    PayloadError,
)
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import HubSpotEvent
from connector.hubspot.hydrate import EventPlan, HydrationOptions, plan_event
from connector.model import AttributeOrigin, NormalisedEvent
from connector.native import NATIVE_EVENT, to_normalised
from connector.salesforce import events as salesforce_events
from connector.salesforce.api import SalesforceConnector
from connector.segment import ProductMessage, SegmentOptions, interpret, split_request
from webhooks.connections import Connection, ConnectionRegistry
from webhooks.inbox_kinds import BACKFILL_SOURCE, SEGMENT_REQUEST
from webhooks.store import inbox
from webhooks.worker.outages import retry_after

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Outcomes:
    """What becomes of claimed events that are not facts to fold now, by inbox id. A decoder
    reports these (`Decoded`), and the batch's sorting carries them to the transaction
    (webhooks.worker.staging)."""

    # Not a kind we handle.
    ignored: list[int] = field(default_factory=list)
    # Can never be decoded: dead-lettered, no retry.
    dead: dict[int, str] = field(default_factory=dict)
    # Tried again, an attempt counted.
    failed: dict[int, str] = field(default_factory=dict)
    # Tried again after so many seconds, no attempt counted: the CRM took no calls.
    paused: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Product events still to be placed on a CRM account (by connection): see webhooks.matching.
    product: dict[int, tuple[str, ProductMessage]] = field(default_factory=dict)


@dataclass(kw_only=True)
class Decoded(Outcomes):
    """What a source's decoder made of claimed events, by inbox id. Every event lands in exactly
    one of: understood (`events`, possibly empty), split (`spawn`), unavailable, or one of the
    `Outcomes`."""

    events: dict[int, list[NormalisedEvent]] = field(default_factory=dict)
    # Contacts deleted from the CRM, by the event that said so: they left every account.
    contacts_gone: dict[int, list[tuple[str, datetime]]] = field(default_factory=dict)
    # The CRM could not be reached or would not let us in (transport errors, timeouts, 5xx and
    # 429 beyond the client's retries, refused credentials): (its Retry-After or 0, why). The
    # events wait for the connection's outage backoff, no attempt counted: an outage of any
    # length must never dead-letter them.
    unavailable: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Connections whose CRM answered a read of this batch: their outage is over.
    reached: set[str] = field(default_factory=set)
    # Events an event splits into (a Segment request into its calls), stored as new inbox rows.
    spawn: dict[int, list[inbox.NewEvent]] = field(default_factory=dict)

    def add(self, other: Decoded) -> None:
        self.events.update(other.events)
        self.product.update(other.product)
        self.spawn.update(other.spawn)
        self.contacts_gone.update(other.contacts_gone)
        self.ignored.extend(other.ignored)
        self.dead.update(other.dead)
        self.failed.update(other.failed)
        self.paused.update(other.paused)
        self.unavailable.update(other.unavailable)
        self.reached.update(other.reached)


# Decodes one connection's claimed events of one source, all at once so that CRM reads can be
# shared; gets the connection's name and CRM connector (None without API credentials). It may
# call the CRM, so it runs outside any transaction; it reports failures in `Decoded`.
BatchDecoder = Callable[[Sequence[inbox.Claimed], str, CRMConnector | None], Awaitable[Decoded]]

MISSING_CREDENTIALS = (
    "connection {connection!r} has no HubSpot API credentials, and this event needs records "
    "read from HubSpot: set CRM_HEALTH_HUBSPOT_ACCESS_TOKEN (or install the app)"
)


async def _decode_hubspot(
    claimed: Sequence[inbox.Claimed], connection: str, connector: CRMConnector | None
) -> Decoded:
    hubspot = connector if isinstance(connector, HubSpotConnector) else None
    options = hubspot.hydration if hubspot is not None else HydrationOptions()
    decoded = Decoded()
    plans: dict[int, EventPlan] = {}
    for row in claimed:
        try:
            plan = plan_event(HubSpotEvent.model_validate(row.payload), options)
        except (ValidationError, PayloadError) as exc:
            # A stored payload that does not parse never will: dead-letter it, no retry.
            decoded.dead[row.id] = f"undecodable payload: {exc}"
            continue
        if plan is None:
            decoded.ignored.append(row.id)
        elif plan.needs_api and hubspot is None:
            decoded.failed[row.id] = MISSING_CREDENTIALS.format(connection=connection)
        else:
            plans[row.id] = plan
    needing = [row_id for row_id, plan in plans.items() if plan.needs_api]
    fetched: dict[int, list[NormalisedEvent]] = {}
    if needing and hubspot is not None:
        fetched = await _hydrate(hubspot, {row_id: plans[row_id] for row_id in needing}, decoded)
        if fetched:
            decoded.reached.add(connection)
    for row_id, plan in plans.items():
        if plan.needs_api and row_id not in fetched:
            continue
        decoded.events[row_id] = [*plan.events, *fetched.get(row_id, [])]
        if plan.contacts_deleted:
            decoded.contacts_gone[row_id] = plan.contacts_deleted
    return decoded


async def _hydrate(
    hubspot: HubSpotConnector, plans: Mapping[int, EventPlan], decoded: Decoded
) -> dict[int, list[NormalisedEvent]]:
    """The records the plans need, read in batches; on failure every event is reported in
    `decoded` at once (retrying them one by one would only multiply the calls to a CRM that
    is failing), paused or failed no sooner than the CRM's Retry-After."""
    try:
        read = await hubspot.hydrate(list(plans.values()))
    except CRMRateLimitPaused as exc:
        decoded.paused.update((row_id, (exc.retry_after, str(exc))) for row_id in plans)
        return {}
    except (CRMRetriesExhausted, CRMAuthError) as exc:
        wait = (retry_after(exc), f"HubSpot hydration waits for the CRM: {exc}")
        decoded.unavailable.update((row_id, wait) for row_id in plans)
        return {}
    except (CRMHTTPError, PayloadError) as exc:
        error = f"HubSpot hydration failed: {exc}"
        decoded.failed.update((row_id, error) for row_id in plans)
        return {}
    return dict(zip(plans, read, strict=True))


def _native_decoder(origin: AttributeOrigin) -> BatchDecoder:
    """Native documents: sent by a native source, or stored by a backfill from CRM records
    (whose attributes are the CRM's: see facts.apply_attributes)."""

    async def decode(
        claimed: Sequence[inbox.Claimed], connection: str, connector: CRMConnector | None
    ) -> Decoded:
        decoded = Decoded()
        for row in claimed:
            try:
                native = NATIVE_EVENT.validate_python(row.payload)
            except ValidationError as exc:
                decoded.dead[row.id] = f"undecodable payload: {exc}"
                continue
            decoded.events[row.id] = [
                to_normalised(native, received_at=row.received_at, origin=origin)
            ]
        return decoded

    return decode


DECODERS: Mapping[str, BatchDecoder] = {
    "hubspot": _decode_hubspot,
    "native": _native_decoder("native"),
    BACKFILL_SOURCE: _native_decoder("crm"),
}


async def decode_salesforce(claimed: Sequence[inbox.Claimed], connection: Connection) -> Decoded:
    """Outbound Message notifications under the connection's current mapping. Changes our own
    integration user made (the health write-back, alert tasks) are ignored: acting on them
    would rescore for nothing and, were anything to drift, write again in a loop."""
    decoded = Decoded()
    inbound = connection.salesforce
    if inbound is None:
        decoded.dead.update((row.id, "not a Salesforce connection") for row in claimed)
        return decoded
    own_user = await _own_salesforce_user(claimed, connection)
    for row in claimed:
        try:
            notification = salesforce_events.Notification(
                id=str(row.payload["id"]),
                sobject_type=str(row.payload["sobject_type"]),
                fields=dict(row.payload["fields"]),
            )
            if notification.sobject_type not in salesforce_events.MAPPED_OBJECTS:
                decoded.ignored.append(row.id)
                continue
            if own_user is not None and salesforce_events.made_by(notification, own_user):
                log.debug("salesforce_echo_ignored", event_id=row.id, notification=notification.id)
                decoded.events[row.id] = []
                continue
            decoded.events[row.id] = salesforce_events.to_normalised(
                notification, inbound.mapping, received_at=row.received_at
            )
        except (PayloadError, KeyError, TypeError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
    return decoded


async def _own_salesforce_user(
    claimed: Sequence[inbox.Claimed], connection: Connection
) -> str | None:
    """The integration user's id, when a notification could be our own echo and the connector
    can say who it is; without it every notification is processed (at worst a needless
    rescore, as unchanged health is never written again)."""
    connector = connection.connector
    if not isinstance(connector, SalesforceConnector):
        return None
    if not any(row.kind in salesforce_events.ECHO_OBJECTS for row in claimed):
        return None
    try:
        return await connector.own_user_id()
    except (CRMHTTPError, PayloadError) as exc:
        log.warning("salesforce_user_unknown", connection=connection.name, error=str(exc)[:300])
        return None


async def decode_dynamics(claimed: Sequence[inbox.Claimed], connection: Connection) -> Decoded:
    """Dataverse execution contexts under the connection's current mapping. A context whose
    images were dropped for size (or that carries no record) is completed with a Web API read;
    changes our own application user made (write-back, alert tasks) are ignored."""
    decoded = Decoded()
    inbound = connection.dynamics
    if inbound is None:
        decoded.dead.update((row.id, "not a Dynamics 365 connection") for row in claimed)
        return decoded
    connector = connection.connector
    dynamics = connector if isinstance(connector, DynamicsConnector) else None
    own_user = await _own_dynamics_user(claimed, connection.name, dynamics)
    for row in claimed:
        try:
            if row.body is None:
                raise PayloadError("a stored Dynamics webhook without its body")
            context = dynamics_events.parse_execution_context(
                row.body.encode(), size_exceeded=bool(row.payload.get("size_exceeded"))
            )
        except PayloadError as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
            continue
        if context.entity not in dynamics_events.MAPPED_ENTITIES:
            decoded.ignored.append(row.id)
            continue
        if own_user is not None and dynamics_events.made_by(context, own_user):
            decoded.events[row.id] = []
            continue
        record = context.record
        if context.message != "Delete" and (record is None or context.size_exceeded):
            read, record = await _read_back(dynamics, context, row.id, connection.name, decoded)
            if not read:
                continue
            if record is None:
                # Deleted before we read it: its Delete webhook tells the rest.
                decoded.events[row.id] = []
                continue
        try:
            decoded.events[row.id] = (
                []
                if record is None
                else dynamics_events.to_normalised(
                    record,
                    inbound.mapping,
                    # A delete's image dates from before it: the operation's own time is exact.
                    received_at=context.operation_created_on
                    if context.message == "Delete"
                    else row.received_at,
                    message=context.message,
                )
            )
        except (PayloadError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
    return decoded


async def _read_back(
    dynamics: DynamicsConnector | None,
    context: dynamics_events.ExecutionContext,
    row_id: int,
    connection: str,
    decoded: Decoded,
) -> tuple[bool, dynamics_events.DynamicsRecord | None]:
    """(True, the record or None when deleted) once read; (False, None) with the event
    reported in `decoded` when it could not be."""
    if dynamics is None:
        decoded.failed[row_id] = (
            f"connection {connection!r} has no Dynamics credentials, and this webhook needs its "
            "record read back (its images were dropped for size): set "
            "CRM_HEALTH_DYNAMICS_CLIENT_ID, _CLIENT_SECRET and _TENANT_ID"
        )
        return False, None
    try:
        record = await dynamics.hydrate(context.entity, context.record_id)
    except CRMRateLimitPaused as exc:
        decoded.paused[row_id] = (exc.retry_after, str(exc))
        return False, None
    except (CRMRetriesExhausted, CRMAuthError) as exc:
        decoded.unavailable[row_id] = (retry_after(exc), f"Dynamics read waits for the CRM: {exc}")
        return False, None
    except (CRMHTTPError, PayloadError) as exc:
        decoded.failed[row_id] = f"Dynamics read failed: {exc}"
        return False, None
    decoded.reached.add(connection)
    return True, record


async def _own_dynamics_user(
    claimed: Sequence[inbox.Claimed], connection: str, connector: DynamicsConnector | None
) -> str | None:
    """The application user's id (WhoAmI), when a context could be our own echo."""
    if connector is None:
        return None
    entities = {row.kind.partition(":")[0] for row in claimed}
    if not entities & dynamics_events.ECHO_ENTITIES:
        return None
    try:
        return await connector.own_user_id()
    except (CRMHTTPError, PayloadError) as exc:
        log.warning("dynamics_user_unknown", connection=connection, error=str(exc)[:300])
        return None


# Decoders of CRMs whose events carry their own mapping options on the connection.
CRM_DECODERS: Mapping[str, Callable[[Sequence[inbox.Claimed], Connection], Awaitable[Decoded]]] = {
    "salesforce": decode_salesforce,
    "dynamics": decode_dynamics,
}


def decode_segment(
    claimed: Sequence[inbox.Claimed], connection: str, options: SegmentOptions
) -> Decoded:
    """Segment calls under the connection's current options (a changed trait or event list
    applies to calls still waiting); their accounts are found later, in the transaction."""
    decoded = Decoded()
    for row in claimed:
        try:
            if row.kind.startswith(SEGMENT_REQUEST):
                decoded.spawn[row.id] = _split_segment_request(row.payload, row.body)
                continue
            message = interpret(row.payload, options)
        except (PayloadError, KeyError, TypeError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc!r}"
            continue
        if message is None:
            decoded.ignored.append(row.id)
        else:
            decoded.product[row.id] = (connection, message)
    return decoded


def _split_segment_request(payload: Mapping[str, Any], body: str | None) -> list[inbox.NewEvent]:
    if body is None:
        raise ValueError("a stored Segment request without its body")
    calls = split_request(
        body,
        call=payload["call"],
        received_at=datetime.fromisoformat(payload["received_at"]),
    )
    return [
        inbox.NewEvent(dedup_key=call.dedup_key, kind=call.kind, payload=call.payload)
        for call in calls
    ]


async def decode_batch(
    claimed: Sequence[inbox.Claimed], connections: ConnectionRegistry
) -> Decoded:
    """Decode the batch per source and connection, each group with its own connector."""
    groups: dict[tuple[str, str], list[inbox.Claimed]] = defaultdict(list)
    for event in claimed:
        groups[(event.source, event.connection)].append(event)
    decoded = Decoded()
    for (source, connection), events in groups.items():
        if source == "segment":
            options = connections.segment_options(connection)
            decoded.add(decode_segment(events, connection, options))
            continue
        crm_decoder = CRM_DECODERS.get(source)
        if crm_decoder is not None:
            target = connections.get(connection)
            if target is None:
                reason = (
                    f"no connection {connection!r} for these {source} events: add it to "
                    "the connections file, then run `crm-health replay`"
                )
                decoded.dead.update((event.id, reason) for event in events)
            else:
                decoded.add(await crm_decoder(events, target))
            continue
        decoder = DECODERS.get(source)
        if decoder is None:
            decoded.ignored.extend(event.id for event in events)
            continue
        known = connections.get(connection)
        if known is None and source not in {"native", BACKFILL_SOURCE}:
            # Intake keeps events of a portal nobody connected (under the name its install
            # would get); they wait in the dead letters until it is connected and replayed.
            reason = (
                f"no connection {connection!r} for these {source} events: connect it (OAuth "
                "install or the connections file), then run `crm-health replay`"
            )
            decoded.dead.update((event.id, reason) for event in events)
            continue
        try:
            decoded.add(
                await decoder(events, connection, None if known is None else known.connector)
            )
        except Exception as exc:
            # Decoders report their own failures; anything else is a bug to retry, not a
            # reason to call the CRM again event by event.
            log.exception("decoder_failed", source=source, connection=connection)
            decoded.failed.update((event.id, repr(exc)) for event in events)
    return decoded
