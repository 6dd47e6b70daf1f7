"""Webhook intake service: verify the raw bytes, validate, store in the inbox. Nothing slow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from connector.errors import PayloadError, SignatureError
from connector.hubspot import events as hubspot_events
from webhooks.connections import ConnectionRegistry
from webhooks.errors import BadPayload, NotConfigured, Unauthenticated
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


async def accept_hubspot(
    *,
    sessions: SessionFactory,
    connections: ConnectionRegistry,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance_seconds: int,
    accept_legacy: bool,
) -> IntakeResult:
    connection = connections.first_for_crm("hubspot")
    if connection is None or connection.webhook_secret is None:
        raise NotConfigured(
            "HubSpot webhooks are not configured: set CRM_HEALTH_HUBSPOT_CLIENT_SECRET"
        )
    try:
        version = hubspot_events.verify_request(
            client_secret=connection.webhook_secret,
            method=method,
            uri=uri,
            body=body,
            headers=headers,
            now=now,
            tolerance_seconds=tolerance_seconds,
            accept_legacy=accept_legacy,
        )
    except SignatureError as exc:
        log.warning(
            "webhook_rejected", source="hubspot", connection=connection.name, reason=str(exc)
        )
        raise Unauthenticated(f"invalid HubSpot signature: {exc}") from exc
    try:
        parsed = hubspot_events.parse_batch(body)
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    new_events = [
        inbox.NewEvent(
            dedup_key=event.dedup_key,
            kind=event.subscription_type,
            payload=event.model_dump(mode="json", by_alias=True),
        )
        for event in parsed
    ]
    async with sessions() as session, session.begin():
        stored = await inbox.insert_events(
            session,
            source="hubspot",
            connection=connection.name,
            events=new_events,
            received_at=now,
        )
    log.info(
        "webhook_accepted",
        source="hubspot",
        connection=connection.name,
        signature=version,
        received=len(parsed),
        stored=stored,
        event_ids=[event.event_id for event in parsed[:10]],
    )
    return IntakeResult(received=len(parsed), stored=stored)
