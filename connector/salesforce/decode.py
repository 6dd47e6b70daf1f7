"""Salesforce Outbound Message notifications stored in the inbox, as normalised events under the
connection's current mapping and field plan."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from connector.decoding import CRMDecoded, DecodeTarget, StoredRow
from connector.errors import CRMHTTPError, PayloadError
from connector.salesforce import events
from connector.salesforce.api import SalesforceConnector
from connector.salesforce.connection import SalesforceInbound

log = structlog.get_logger(__name__)


async def decode(claimed: Sequence[StoredRow], connection: DecodeTarget) -> CRMDecoded:
    """Outbound Message notifications under the connection's current mapping. Changes our own
    integration user made (the health write-back, alert tasks) are ignored: acting on them
    would rescore for nothing and, were anything to drift, write again in a loop."""
    decoded = CRMDecoded()
    inbound = connection.crm_settings
    if not isinstance(inbound, SalesforceInbound):
        decoded.dead.update((row.id, "not a Salesforce connection") for row in claimed)
        return decoded
    own_user = await _own_salesforce_user(claimed, connection)
    connector = connection.connector
    # The plan lives on the connector; a connection without credentials has none to read.
    reads = (
        connector.account_reads
        if isinstance(connector, SalesforceConnector)
        else events.NO_ACCOUNT_READS
    )
    for row in claimed:
        try:
            notification = events.Notification(
                id=str(row.payload["id"]),
                sobject_type=str(row.payload["sobject_type"]),
                fields=dict(row.payload["fields"]),
            )
            if notification.sobject_type not in events.MAPPED_OBJECTS:
                decoded.ignored.append(row.id)
                continue
            if own_user is not None and events.made_by(notification, own_user):
                log.debug("salesforce_echo_ignored", event_id=row.id, notification=notification.id)
                decoded.events[row.id] = []
                continue
            decoded.events[row.id] = events.to_normalised(
                notification, inbound.mapping, received_at=row.received_at, reads=reads
            )
        except (PayloadError, KeyError, TypeError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
    return decoded


async def _own_salesforce_user(
    claimed: Sequence[StoredRow], connection: DecodeTarget
) -> str | None:
    """The integration user's id, when a notification could be our own echo and the connector
    can say who it is; without it every notification is processed (at worst a needless
    rescore, as unchanged health is never written again)."""
    connector = connection.connector
    if not isinstance(connector, SalesforceConnector):
        return None
    if not any(row.kind in events.ECHO_OBJECTS for row in claimed):
        return None
    try:
        return await connector.own_user_id()
    except (CRMHTTPError, PayloadError) as exc:
        log.warning("salesforce_user_unknown", connection=connection.name, error=str(exc)[:300])
        return None
