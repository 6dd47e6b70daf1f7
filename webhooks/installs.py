"""OAuth installs of the HubSpot app: an admin's single-use install link, the consent redirect
with a single-use state, then the callback that stores the portal's tokens encrypted,
registers the connection and provisions its health fields."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

import structlog

from connector.base import ProvisionReport
from connector.errors import CRMHTTPError, CRMRequestRejected, PayloadError
from connector.hubspot.connection import HubSpotInbound
from connector.hubspot.intake import unrouted_connection as unrouted_hubspot_connection
from connector.hubspot.oauth import exchange_code
from webhooks.connections import ConnectionRegistry, Installer
from webhooks.errors import BadPayload, Conflict, Forbidden, NotConfigured, UpstreamFailed
from webhooks.secrets import StateError, sign_state, verify_state
from webhooks.store import installs
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)

# Long enough to read HubSpot's consent page and pick a portal, short enough to limit replay.
STATE_MAX_AGE_SECONDS = 15 * 60
# Long enough to pass the link to the HubSpot admin who installs, short enough that a leaked
# link is soon worthless.
LINK_MAX_AGE = timedelta(minutes=30)
LINK = "link"
STATE = "state"


def _installer(connections: ConnectionRegistry) -> Installer:
    if connections.installer is None:
        raise NotConfigured(
            "HubSpot OAuth is not configured: set CRM_HEALTH_HUBSPOT_CLIENT_ID, "
            "CRM_HEALTH_HUBSPOT_CLIENT_SECRET, CRM_HEALTH_PUBLIC_URL and CRM_HEALTH_ENCRYPTION_KEY"
        )
    return connections.installer


@dataclass(frozen=True, kw_only=True)
class InstallLink:
    url: str
    expires_at: datetime


async def create_link(
    *, sessions: SessionFactory, connections: ConnectionRegistry, created_by: str, now: datetime
) -> InstallLink:
    """A single-use link that starts one install: installs happen only when an admin asks."""
    installer = _installer(connections)
    token = secrets.token_urlsafe(32)
    expires_at = now + LINK_MAX_AGE
    async with sessions() as session, session.begin():
        await installs.create_grant(
            session, kind=LINK, token=token, created_by=created_by, now=now, expires_at=expires_at
        )
    base = (installer.settings.public_url or "").rstrip("/")
    log.info("hubspot_install_link_created", created_by=created_by)
    return InstallLink(
        url=f"{base}/oauth/hubspot/install?{urlencode({'link': token})}", expires_at=expires_at
    )


async def install_url(
    *, sessions: SessionFactory, connections: ConnectionRegistry, link: str | None, now: datetime
) -> str:
    """Use up the install link and answer HubSpot's consent URL with a fresh single-use state."""
    installer = _installer(connections)
    state = sign_state(
        installer.cipher_keys, issued_at=int(now.timestamp()), nonce=secrets.token_urlsafe(16)
    )
    async with sessions() as session, session.begin():
        if not link or not await installs.consume_grant(session, kind=LINK, token=link, now=now):
            raise Forbidden(
                "link: installing needs a valid, unused install link from an admin "
                "(POST /api/v1/install-links or `crm-health install-link`); this one is "
                "missing, unknown, expired or already used"
            )
        await installs.create_grant(
            session,
            kind=STATE,
            token=state,
            created_by="install-link",
            now=now,
            expires_at=now + timedelta(seconds=STATE_MAX_AGE_SECONDS),
        )
    return installer.app.install_url(state=state)


@dataclass(frozen=True, kw_only=True)
class InstallResult:
    connection: str
    portal_id: int
    provisioned: ProvisionReport | None
    provision_error: str | None


async def complete_install(
    *,
    sessions: SessionFactory,
    connections: ConnectionRegistry,
    code: str | None,
    state: str | None,
    error: str | None,
    now: datetime,
) -> InstallResult:
    installer = _installer(connections)
    if error is not None:
        raise BadPayload(f"HubSpot did not authorise the install: {error}")
    if not code:
        raise BadPayload("code: missing from the OAuth callback")
    if not state:
        raise BadPayload("state: missing from the OAuth callback")
    try:
        verify_state(
            installer.cipher_keys,
            state,
            now=int(now.timestamp()),
            max_age_seconds=STATE_MAX_AGE_SECONDS,
        )
    except StateError as exc:
        raise BadPayload(f"state: {exc}") from exc
    # Used up before the code is exchanged: a replayed callback (or a second tab) cannot
    # install again or replace the tokens of the first.
    async with sessions() as session, session.begin():
        fresh = await installs.consume_grant(session, kind=STATE, token=state, now=now)
    if not fresh:
        raise BadPayload("state: already used or unknown; start the install again from a new link")

    client = installer.token_client()
    try:
        tokens = await exchange_code(client, app=installer.app, code=code, now=now)
    except CRMRequestRejected as exc:
        raise BadPayload(
            f"code: HubSpot refused the authorization code ({exc.body[:300]})"
        ) from exc
    except (CRMHTTPError, PayloadError) as exc:
        raise UpstreamFailed(f"HubSpot's token endpoint failed: {exc}") from exc
    finally:
        await client.aclose()
    assert tokens.portal_id is not None  # exchange_code always resolves the portal
    portal_id = tokens.portal_id

    name = unrouted_hubspot_connection(portal_id)
    taken = connections.get(name)
    pinned = [
        c
        for c in connections.of_crm("hubspot")
        if isinstance(c.crm_settings, HubSpotInbound)
        and c.crm_settings.portal_id == portal_id
        and c.origin != "installed"
    ]
    if pinned or (taken is not None and taken.origin != "installed"):
        owner = pinned[0].name if pinned else name
        raise Conflict(
            f"portal {portal_id} is already served by connection {owner!r} from the settings "
            "or the connections file; remove it there before installing the app"
        )
    async with sessions() as session, session.begin():
        await installs.save(
            session,
            name=name,
            crm="hubspot",
            external_id=str(portal_id),
            credentials=installer.cipher.encrypt(tokens.to_json()),
            now=now,
        )
    connection = installer.connection_for(name, tokens, sessions=sessions)
    await connections.add_installed(connection, installed_at=now)
    log.info("hubspot_installed", connection=name, portal_id=portal_id)

    report: ProvisionReport | None = None
    provision_error: str | None = None
    assert connection.connector is not None
    try:
        report = await connection.connector.ensure_fields()
    except (CRMHTTPError, PayloadError) as exc:
        # The install stands; fields are provisioned again on the next start or by
        # `crm-health provision`.
        provision_error = str(exc)
        log.warning("hubspot_provision_failed", connection=name, error=provision_error)
    return InstallResult(
        connection=name, portal_id=portal_id, provisioned=report, provision_error=provision_error
    )
