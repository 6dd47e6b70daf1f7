"""HubSpot webhook batches in: which app secret signed them, and which connection owns each
portal's events.

Several HubSpot apps may post to the one endpoint (a private app per portal, an OAuth app), so
each secret is tried. A private app's secret owns only its own connections' portals (a
connection without a portal id takes every portal its secret signs); the OAuth app's secret
owns the installed portals. Events of a portal their secret does not own are refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import structlog

from connector.errors import PayloadError, SignatureError
from connector.hubspot import events
from connector.hubspot.connection import HubSpotInbound
from connector.inbound import (
    Connections,
    Delivery,
    Endpoint,
    InboundSpec,
    InboxRow,
    KnownConnection,
    Parsed,
    Refused,
)

log = structlog.get_logger(__name__)

CRM = "hubspot"


def unrouted_connection(portal_id: int) -> str:
    """The name an OAuth install of `portal_id` gets. Intake files events under it only when
    the OAuth app's secret signed them (the secret that owns every install), so a replay after
    the install processes them; events any other secret signs never get this name."""
    return f"hubspot-{portal_id}"


def _options(connection: KnownConnection) -> HubSpotInbound:
    """A connection's portal and signature options (the defaults when made by hand)."""
    settings = connection.crm_settings
    return settings if isinstance(settings, HubSpotInbound) else HubSpotInbound()


def secrets(connections: Connections) -> list[str]:
    """Every secret a HubSpot webhook may be signed with (one per app), each once."""
    found = [c.webhook_secret for c in connections.of_crm(CRM) if c.webhook_secret is not None]
    app = connections.app(CRM)
    if app is not None and app.webhook_secret is not None:
        found.append(app.webhook_secret)
    return list(dict.fromkeys(found))


def is_app_secret(connections: Connections, secret: str) -> bool:
    """Whether `secret` is the OAuth app's: the one secret that owns installed portals."""
    app = connections.app(CRM)
    return app is not None and secret == app.webhook_secret


def owner(
    hubspot: Sequence[KnownConnection], portal_id: int, *, secret: str
) -> KnownConnection | None:
    """Of the HubSpot connections, the one that owns `portal_id`'s events signed with `secret`:
    the one pinned to that portal, else the one connection without a portal id."""
    candidates = [c for c in hubspot if c.webhook_secret == secret]
    pinned = [c for c in candidates if _options(c).portal_id == portal_id]
    if pinned:
        return pinned[0]
    unpinned = [c for c in candidates if _options(c).portal_id is None]
    return unpinned[0] if len(unpinned) == 1 else None


def _portals_owned(connections: Connections, secret: str) -> list[int | None]:
    """The portal ids of the connections `secret` verifies (None: any portal), for logs."""
    return sorted(
        (_options(c).portal_id for c in connections.of_crm(CRM) if c.webhook_secret == secret),
        key=lambda portal: -1 if portal is None else portal,
    )


def _app_accepts_legacy(connections: Connections) -> bool:
    app = connections.app(CRM)
    return app is not None and _options(app).accept_legacy_signatures


def _accepts_legacy(connections: Connections, secret: str) -> bool:
    """Whether a v1/v2 signature made with `secret` may be checked at all: some connection
    of that secret (or the OAuth app, for its installs) opted in."""
    if is_app_secret(connections, secret) and _app_accepts_legacy(connections):
        return True
    return any(
        _options(c).accept_legacy_signatures
        for c in connections.of_crm(CRM)
        if c.webhook_secret == secret
    )


def _refuse_unowned(*, portal: int, secret: str, connections: Connections, reason: str) -> Refused:
    # Both sides' portal ids, never the secret: enough to tell a misconfigured app from a
    # forgery aimed at another tenant.
    log.warning(
        "hubspot_portal_not_owned",
        source=CRM,
        portal_id=portal,
        owner_portal_ids=_portals_owned(connections, secret),
        oauth_app=is_app_secret(connections, secret),
        reason=reason,
    )
    return Refused(
        401, f"portalId {portal}: the app secret that signed this request does not own this portal"
    )


def _verify(delivery: Delivery, connections: Connections, found: list[str]) -> tuple[str, str]:
    """(the secret that signed the request, signature version)."""
    failure: SignatureError | None = None
    for secret in found:
        try:
            version = events.verify_request(
                client_secret=secret,
                method=delivery.method,
                uri=delivery.uri,
                body=delivery.body,
                headers=delivery.headers,
                now=delivery.now,
                tolerance_seconds=delivery.tolerance_seconds,
                # v1/v2 bind no time (v1 not even the URL): only for secrets whose
                # connections opted in, so a stale v3 request stripped to v1 is refused.
                accept_legacy=_accepts_legacy(connections, secret),
            )
        except SignatureError as exc:
            failure = failure or exc
            continue
        return secret, version
    assert failure is not None
    raise failure


def _route(
    portal: int,
    found: KnownConnection | None,
    *,
    secret: str,
    version: str,
    connections: Connections,
) -> str:
    """The connection name `portal`'s events are filed under, or Refused."""
    if found is not None:
        if version != "v3" and not _options(found).accept_legacy_signatures:
            log.warning(
                "webhook_rejected",
                source=CRM,
                reason="legacy signature",
                connection=found.name,
                signature=version,
            )
            raise Refused(
                401,
                f"invalid HubSpot signature: connection {found.name!r} accepts only "
                "v3 signatures (X-HubSpot-Signature-v3 missing)",
            )
        return found.name
    if not is_app_secret(connections, secret):
        raise _refuse_unowned(
            portal=portal, secret=secret, connections=connections, reason="private app"
        )
    name = unrouted_connection(portal)
    if connections.named(name) is not None:
        # A configured connection already has the install's name: filing the app's events
        # under it would hand them to that connection's secret owner.
        raise _refuse_unowned(
            portal=portal, secret=secret, connections=connections, reason="name taken"
        )
    if version != "v3" and not _app_accepts_legacy(connections):
        raise Refused(
            401,
            "invalid HubSpot signature: OAuth installs accept only v3 signatures "
            "(X-HubSpot-Signature-v3 missing)",
        )
    # Signed by the OAuth app, so HubSpot sends them for a portal that installed it (the
    # callback may not have reached us yet): kept under the install's name, the worker
    # dead-letters them with the reason and a replay after the install processes them.
    log.warning("webhook_portal_unknown", source=CRM, portal_id=portal)
    return name


async def accept(delivery: Delivery, connections: Connections) -> Parsed:
    """A signed batch of 1 to 100 events, filed by the connection owning each portal. The
    whole request is refused when one of its portals is not the signing secret's: a secret
    that signs events of a portal it does not own is a forgery or a misconfiguration, and
    neither is stored."""
    found = secrets(connections)
    if not found:
        raise Refused(
            503, "HubSpot webhooks are not configured: set CRM_HEALTH_HUBSPOT_CLIENT_SECRET"
        )
    try:
        secret, version = _verify(delivery, connections, found)
    except SignatureError as exc:
        log.warning("webhook_rejected", source=CRM, reason=str(exc))
        raise Refused(401, f"invalid HubSpot signature: {exc}") from exc
    try:
        parsed = events.parse_batch(delivery.body)
    except PayloadError as exc:
        raise Refused(400, str(exc)) from exc
    # A batch almost always comes from one portal: route each portal once, not each event.
    portals = {event.portal_id for event in parsed}
    owners = {portal: owner(connections.of_crm(CRM), portal, secret=secret) for portal in portals}
    if None in owners.values() and await connections.refresh():
        # An install just made in another process may own them.
        owners = {
            portal: owner(connections.of_crm(CRM), portal, secret=secret) for portal in portals
        }
    names = {
        portal: _route(
            portal, owners[portal], secret=secret, version=version, connections=connections
        )
        for portal in sorted(portals)
    }
    routed: dict[str, list[InboxRow]] = defaultdict(list)
    for event in parsed:
        routed[names[event.portal_id]].append(
            InboxRow(
                dedup_key=event.dedup_key,
                kind=event.subscription_type,
                # What HubSpot sent (unknown keys too), without the defaults of absent fields:
                # half the bytes to serialise and store, and the worker reads it the same.
                payload=event.model_dump(mode="json", by_alias=True, exclude_unset=True),
            )
        )
    return Parsed(
        rows=routed,
        received=len(parsed),
        log={
            "connections": sorted(routed),
            "signature": version,
            "received": len(parsed),
            "event_ids": [event.event_id for event in parsed[:10]],
        },
    )


INBOUND = InboundSpec(
    endpoints=(
        Endpoint(
            path="/webhooks/hubspot",
            name="hubspot_webhook",
            summary="Receive a HubSpot webhook batch (signed v3; v1/v2 for connections that "
            "opt in)",
        ),
    ),
    refusals={
        400: "The body is not a JSON array of 1 to 100 HubSpot events.",
        401: "Signature missing, wrong, older than the tolerance, legacy (v1/v2) for a "
        "connection that did not opt in, or made by a secret that does not own an event's "
        "portal.",
        413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
        503: "HubSpot is not configured (no client secret).",
    },
    accept=accept,
)
