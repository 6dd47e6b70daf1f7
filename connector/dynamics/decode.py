"""Dataverse webhooks stored in the inbox, as normalised events under the connection's current
mapping; a context whose images were dropped is completed with a Web API read."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from connector.decoding import CRMDecoded, DecodeTarget, StoredRow
from connector.dynamics import events, records
from connector.dynamics.api import DynamicsConnector
from connector.dynamics.connection import DynamicsInbound
from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRetriesExhausted,
    PayloadError,
    retry_after,
)

log = structlog.get_logger(__name__)


async def decode(claimed: Sequence[StoredRow], connection: DecodeTarget) -> CRMDecoded:
    """Dataverse execution contexts under the connection's current mapping. A context whose
    images were dropped for size (or that carries no record) is completed with a Web API read;
    changes our own application user made (write-back, alert tasks) are ignored."""
    decoded = CRMDecoded()
    inbound = connection.crm_settings
    if not isinstance(inbound, DynamicsInbound):
        decoded.dead.update((row.id, "not a Dynamics 365 connection") for row in claimed)
        return decoded
    connector = connection.connector
    dynamics = connector if isinstance(connector, DynamicsConnector) else None
    # A connection without credentials has no connector, so no field plan either.
    reads = records.NO_PLANNED_READS if dynamics is None else dynamics.reads
    own_user = await _own_dynamics_user(claimed, connection.name, dynamics)
    for row in claimed:
        try:
            if row.body is None:
                raise PayloadError("a stored Dynamics webhook without its body")
            context = events.parse_execution_context(
                row.body.encode(), size_exceeded=bool(row.payload.get("size_exceeded"))
            )
        except PayloadError as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
            continue
        if context.entity not in records.MAPPED_ENTITIES:
            decoded.ignored.append(row.id)
            continue
        if own_user is not None and records.made_by(context, own_user):
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
                else records.to_normalised(
                    record,
                    inbound.mapping,
                    # A delete's image dates from before it: the operation's own time is exact.
                    received_at=context.operation_created_on
                    if context.message == "Delete"
                    else row.received_at,
                    message=context.message,
                    reads=reads,
                    author=records.sentiment_author(context, reads),
                )
            )
        except (PayloadError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
    return decoded


async def _read_back(
    dynamics: DynamicsConnector | None,
    context: events.ExecutionContext,
    row_id: int,
    connection: str,
    decoded: CRMDecoded,
) -> tuple[bool, events.DynamicsRecord | None]:
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
    claimed: Sequence[StoredRow], connection: str, connector: DynamicsConnector | None
) -> str | None:
    """The application user's id (WhoAmI), when a context could be our own echo."""
    if connector is None:
        return None
    entities = {row.kind.partition(":")[0] for row in claimed}
    if not entities & records.ECHO_ENTITIES:
        return None
    try:
        return await connector.own_user_id()
    except (CRMHTTPError, PayloadError) as exc:
        log.warning("dynamics_user_unknown", connection=connection, error=str(exc)[:300])
        return None
