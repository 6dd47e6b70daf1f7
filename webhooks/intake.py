"""Webhook intake service: verify the raw bytes, validate, store in the inbox. Nothing slow."""

from __future__ import annotations

from collections import defaultdict
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


def unrouted_hubspot_connection(portal_id: int) -> str:
    """Where events of a portal without a connection are kept: the name an OAuth install of
    that portal gets, so installing the app later makes them processable by a replay."""
    return f"hubspot-{portal_id}"


def _verify_hubspot(
    *,
    secrets: list[str],
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance_seconds: int,
    accept_legacy: bool,
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
                accept_legacy=accept_legacy,
            )
        except SignatureError as exc:
            failure = failure or exc
            continue
        return secret, version
    assert failure is not None
    raise failure


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
    secrets = connections.hubspot_secrets()
    if not secrets:
        raise NotConfigured(
            "HubSpot webhooks are not configured: set CRM_HEALTH_HUBSPOT_CLIENT_SECRET"
        )
    try:
        secret, version = _verify_hubspot(
            secrets=secrets,
            method=method,
            uri=uri,
            body=body,
            headers=headers,
            now=now,
            tolerance_seconds=tolerance_seconds,
            accept_legacy=accept_legacy,
        )
    except SignatureError as exc:
        log.warning("webhook_rejected", source="hubspot", reason=str(exc))
        raise Unauthenticated(f"invalid HubSpot signature: {exc}") from exc
    try:
        parsed = hubspot_events.parse_batch(body)
    except PayloadError as exc:
        raise BadPayload(str(exc)) from exc
    owners = [connections.for_hubspot_portal(e.portal_id, secret=secret) for e in parsed]
    if None in owners and await connections.sync_installed(sessions):
        # An install just made in another process may own them.
        owners = [connections.for_hubspot_portal(e.portal_id, secret=secret) for e in parsed]
    routed: dict[str, list[inbox.NewEvent]] = defaultdict(list)
    for event, connection in zip(parsed, owners, strict=True):
        if connection is None:
            # Kept, not dropped: the worker dead-letters it with the reason, and a replay after
            # the portal is connected processes it.
            log.warning("webhook_portal_unknown", source="hubspot", portal_id=event.portal_id)
        name = (
            connection.name
            if connection is not None
            else unrouted_hubspot_connection(event.portal_id)
        )
        routed[name].append(
            inbox.NewEvent(
                dedup_key=event.dedup_key,
                kind=event.subscription_type,
                payload=event.model_dump(mode="json", by_alias=True),
            )
        )
    stored = 0
    async with sessions() as session, session.begin():
        for name, new_events in routed.items():
            stored += await inbox.insert_events(
                session, source="hubspot", connection=name, events=new_events, received_at=now
            )
    log.info(
        "webhook_accepted",
        source="hubspot",
        connections=sorted(routed),
        signature=version,
        received=len(parsed),
        stored=stored,
        event_ids=[event.event_id for event in parsed[:10]],
    )
    return IntakeResult(received=len(parsed), stored=stored)
