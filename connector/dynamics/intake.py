"""Dataverse webhooks in: the registration's credential, then the RemoteExecutionContext stored
whole (the worker maps it, reading the record back when the images were dropped)."""

from __future__ import annotations

import structlog

from connector.dynamics import events
from connector.dynamics.connection import DynamicsInbound
from connector.errors import PayloadError, SignatureError
from connector.inbound import (
    Connections,
    Delivery,
    Endpoint,
    InboundSpec,
    InboxRow,
    Parsed,
    Refused,
)

log = structlog.get_logger(__name__)

CRM = "dynamics"


async def accept(delivery: Delivery, connections: Connections) -> Parsed:
    """Check the registration's credential and parse the context; one inbox row,
    deduplicated on correlation/request id, record, stage and message."""
    connection = delivery.path["connection"]
    target = connections.named(connection)
    inbound = None if target is None else target.crm_settings
    if not isinstance(inbound, DynamicsInbound):
        raise Refused(404, f"no Dynamics 365 connection named {connection!r}")
    if inbound.auth_value is None:
        raise Refused(
            503,
            f"connection {connection!r} cannot accept webhooks: set the value its webhook "
            "registration sends (CRM_HEALTH_DYNAMICS_WEBHOOK_AUTH_VALUE)",
        )
    try:
        events.verify_request(
            mode=inbound.auth_mode,
            name=inbound.auth_name,
            value=inbound.auth_value,
            headers=delivery.headers,
            query=delivery.query,
        )
    except SignatureError as exc:
        log.warning("webhook_rejected", source=CRM, connection=connection, reason=str(exc))
        raise Refused(401, f"Dynamics webhook not authenticated: {exc}") from exc
    # Dataverse sets it when the context was over 256 KB and its images were dropped; it
    # documents the header, not its value: its presence is what counts.
    flag = delivery.headers.get(events.SIZE_EXCEEDED_HEADER)
    size_exceeded = flag is not None and flag.strip().lower() not in {"false", "0"}
    try:
        context = events.parse_execution_context(delivery.body, size_exceeded=size_exceeded)
        text = delivery.body.decode()
    except PayloadError as exc:
        raise Refused(400, str(exc)) from exc
    except UnicodeDecodeError:
        raise Refused(400, "body must be UTF-8 encoded JSON") from None
    row = InboxRow(
        dedup_key=context.dedup_key,
        kind=f"{context.entity}:{context.message}",
        payload={"size_exceeded": size_exceeded},
        body=text,
    )
    return Parsed(
        rows={connection: [row]},
        received=1,
        log={
            "connection": connection,
            "message": context.message,
            "entity": context.entity,
            "record_id": context.record_id,
            "correlation_id": context.correlation_id,
        },
    )


INBOUND = InboundSpec(
    endpoints=(
        Endpoint(
            path="/webhooks/dynamics/{connection}",
            name="dynamics_webhook",
            summary="Receive a Dataverse webhook (RemoteExecutionContext of a registered step)",
        ),
    ),
    refusals={
        400: "The body is not a RemoteExecutionContext (the field is named).",
        401: "The registration's WebhookKey, header or query-string value is missing or wrong.",
        404: "No Dynamics 365 connection has this name.",
        413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
        503: "The connection has no webhook credential configured, or storage failed.",
    },
    accept=accept,
)
