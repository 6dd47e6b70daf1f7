"""Salesforce Outbound Messages in: the connection's shared secret (with guessing slowed per
address), its org, then one inbox row per notification, deduplicated on the notification Id."""

from __future__ import annotations

import math

import structlog

from connector.errors import PayloadError
from connector.inbound import (
    Answer,
    Connections,
    Delivery,
    Endpoint,
    InboundSpec,
    InboxRow,
    Parsed,
    Refused,
)
from connector.salesforce import events
from connector.salesforce.connection import SalesforceInbound

log = structlog.get_logger(__name__)

CRM = "salesforce"


def _check_secret(
    inbound: SalesforceInbound, *, connection: str, secret: str | None, client: str | None
) -> None:
    if inbound.shared_secret is None:
        if inbound.allow_unsigned:
            return
        log.warning("webhook_rejected", source=CRM, connection=connection, reason="no_secret")
        raise Refused(
            401,
            f"connection {connection!r} has no shared secret configured: set its webhook_secret "
            "(CRM_HEALTH_SALESFORCE_WEBHOOK_SECRET), or opt out with allow_unsigned "
            "(CRM_HEALTH_SALESFORCE_ALLOW_UNSIGNED)",
        )
    wait = inbound.guesses.blocked_for(client)
    if wait > 0:
        log.warning(
            "webhook_rejected",
            source=CRM,
            connection=connection,
            client=client,
            reason="too_many_wrong_secrets",
        )
        raise Refused(
            429,
            "too many wrong shared secrets from this address; try again later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if not inbound.secret_matches(secret):
        inbound.guesses.failed(client)
        log.warning("webhook_rejected", source=CRM, connection=connection, client=client)
        raise Refused(
            401,
            "missing or wrong shared secret: put it as the last path segment of the endpoint URL"
            " or in the X-CRM-Health-Secret header",
        )


async def accept(delivery: Delivery, connections: Connections) -> Parsed:
    """Check an Outbound Message's notifications, one inbox row each. The caller's Ack is what
    tells Salesforce to stop redelivering, so it must come only once they are stored.

    After too many wrong secrets from the peer's address for this connection, its requests
    are refused (429) without the secret being compared, the right one included, until the
    window passes: that is what stops guessing."""
    connection = delivery.path["connection"]
    target = connections.named(connection)
    inbound = None if target is None else target.crm_settings
    if not isinstance(inbound, SalesforceInbound):
        raise Refused(404, f"no Salesforce connection named {connection!r}")
    if inbound.organization_id is None:
        raise Refused(
            503,
            f"connection {connection!r} cannot accept Outbound Messages: set its organization_id "
            "(CRM_HEALTH_SALESFORCE_ORGANIZATION_ID)",
        )
    _check_secret(
        inbound, connection=connection, secret=delivery.path.get("secret"), client=delivery.client
    )
    try:
        message = events.parse_outbound_message(delivery.body)
    except PayloadError as exc:
        raise Refused(400, str(exc)) from exc
    if not inbound.same_organization(message.organization_id):
        log.warning(
            "webhook_rejected",
            source=CRM,
            connection=connection,
            organization_id=message.organization_id,
        )
        raise Refused(
            403,
            f"OrganizationId {message.organization_id} is not the org of connection {connection!r}",
        )
    rows = [
        InboxRow(
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
    return Parsed(
        rows={connection: rows},
        received=len(rows),
        log={
            "connection": connection,
            "action_id": message.action_id,
            "received": len(rows),
            "notification_ids": [row.dedup_key for row in rows[:10]],
        },
    )


INBOUND = InboundSpec(
    endpoints=(
        Endpoint(
            path="/webhooks/salesforce/{connection}",
            name="salesforce_outbound_message",
            summary="Receive a Salesforce Outbound Message (Ack after the notifications are "
            "stored)",
            secret_header="X-CRM-Health-Secret",  # noqa: S106 (a header name, not a secret)
        ),
        Endpoint(
            path="/webhooks/salesforce/{connection}/{secret}",
            name="salesforce_outbound_message_with_secret",
            summary="Receive a Salesforce Outbound Message whose endpoint URL carries the "
            "shared secret",
        ),
    ),
    refusals={
        400: "The body is not an Outbound Message (or has more than 100 notifications).",
        401: "The request did not carry the connection's shared secret (or the connection "
        "has none and does not allow unsigned messages).",
        403: "The message's OrganizationId is not this connection's org.",
        404: "No Salesforce connection has this name.",
        413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
        429: "Too many wrong shared secrets from this address for this connection; "
        "Retry-After says when to try again.",
        503: "The connection has no organization id yet, or storage failed; Salesforce retries.",
    },
    accept=accept,
    # Salesforce reads SOAP, and shows a Fault's text in its delivery-failure monitor.
    answer=Answer(
        media_type=events.ACK_CONTENT_TYPE,
        ok=events.ack_response,
        ok_description="The notifications are stored: the `notificationsResponse` Ack envelope.",
        refused=lambda message, status: events.fault_response(
            message, sender_at_fault=status < 500
        ),
        refused_note="Answered with a SOAP Fault naming the problem.",
    ),
)
