"""Installing the HubSpot app with OAuth: consent redirect, callback, encrypted tokens,
routing by portal, provisioning, and installs picked up by another process."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
import structlog
from sqlalchemy import select, update
from structlog.testing import capture_logs
from typer.testing import CliRunner

from connector.hubspot.connection import HubSpotInbound
from testkit import (
    HUBSPOT_API,
    HUBSPOT_SECRET,
    PUBLIC_URL,
    hubspot_event,
    native,
    signed_v3_headers,
    store_native,
)
from webhooks.cli import cli
from webhooks.runtime import Runtime
from webhooks.store import inbox, keys
from webhooks.store.models import Account, InboxEvent, InstalledConnection, InstallGrant

PORTAL = 62515
OAUTH = {
    "hubspot_client_id": "client-1",
    "hubspot_access_token": None,
    "encryption_key": "an encryption passphrase of sufficient length",
}


# Tokens with a "." in them: the stored ciphertext is URL-safe base64, which has no ".", so a
# token found in it is the token, never three characters of chance ("a-1" once was).
ACCESS_TOKEN = "access.token-1"
REFRESH_TOKEN = "refresh.token-1"


def _hubspot(access_token: str = ACCESS_TOKEN, portal: int = PORTAL) -> respx.MockRouter:
    """HubSpot's token endpoints and the property endpoints provisioning uses."""
    router = respx.mock(assert_all_called=False)
    router.post(f"{HUBSPOT_API}/oauth/v1/token").respond(
        200,
        json={
            "token_type": "bearer",
            "refresh_token": REFRESH_TOKEN,
            "access_token": access_token,
            "expires_in": 1800,
        },
    )
    router.get(f"{HUBSPOT_API}/oauth/v1/access-tokens/{access_token}").respond(
        200, json={"token": access_token, "hub_id": portal, "app_id": 4242}
    )
    router.get(f"{HUBSPOT_API}/crm/v3/properties/companies/groups").respond(
        200, json={"results": []}
    )
    router.post(f"{HUBSPOT_API}/crm/v3/properties/companies/groups").respond(201, json={})
    router.get(f"{HUBSPOT_API}/crm/v3/properties/companies").respond(200, json={"results": []})
    router.post(f"{HUBSPOT_API}/crm/v3/properties/companies").respond(201, json={})
    return router


async def _key(service, role: str = "global_admin") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection="default", now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


async def _link(service) -> str:
    """An admin's install link, as a path and query on the service."""
    response = await service.client.post("/api/v1/install-links", headers=await _key(service))
    assert response.status_code == 201, response.text
    url = urlsplit(response.json()["url"])
    return f"{url.path}?{url.query}"


async def _start(service) -> str:
    """Start an install from a fresh link; the state HubSpot is asked to send back."""
    start = await service.client.get(await _link(service))
    assert start.status_code == 302, start.text
    return parse_qs(urlsplit(start.headers["location"]).query)["state"][0]


async def _install(service) -> httpx.Response:
    start = await service.client.get(await _link(service))
    assert start.status_code == 302
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    return await service.client.get(
        "/oauth/hubspot/callback", params={"code": "code-1", "state": state}
    )


async def test_install_redirects_to_hubspot_consent_with_a_signed_state(service_factory) -> None:
    service = await service_factory(**OAUTH)

    response = await service.client.get(await _link(service))

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "https://app.hubspot.com/oauth/authorize"
    )
    query = parse_qs(location.query)
    assert query["client_id"] == ["client-1"]
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/oauth/hubspot/callback"]
    assert "crm.objects.companies.write" in query["scope"][0].split()
    assert query["state"][0].count(".") == 2


async def test_callback_stores_encrypted_tokens_registers_and_provisions(service_factory) -> None:
    service = await service_factory(**OAUTH)
    with _hubspot() as hubspot:
        response = await _install(service)
        # respx forgets its calls when the block ends.
        created = [
            json.loads(call.request.content)["name"]
            for call in hubspot.calls
            if call.request.method == "POST" and call.request.url.path.endswith("/companies")
        ]

    assert response.status_code == 200
    assert f"portal {PORTAL}" in response.text
    connection = service.runtime.connections.get(f"hubspot-{PORTAL}")
    assert connection is not None
    assert isinstance(connection.crm_settings, HubSpotInbound)
    assert connection.crm_settings.portal_id == PORTAL
    async with service.runtime.sessions() as session:
        row = (await session.execute(select(InstalledConnection))).scalar_one()
    assert row.external_id == str(PORTAL)
    assert ACCESS_TOKEN not in row.credentials
    assert REFRESH_TOKEN not in row.credentials
    assert "health_score" in created


async def test_webhooks_of_the_installed_portal_route_to_its_connection(service_factory) -> None:
    service = await service_factory(**OAUTH)
    with _hubspot():
        await _install(service)
    body = json.dumps([hubspot_event(9, portalId=PORTAL)]).encode()
    uri = f"{PUBLIC_URL}/webhooks/hubspot"

    response = await service.client.post(
        "/webhooks/hubspot", content=body, headers=signed_v3_headers(body, uri=uri)
    )

    assert response.status_code == 202
    async with service.runtime.sessions() as session:
        stored = (await session.execute(select(InboxEvent))).scalar_one()
    assert stored.connection == f"hubspot-{PORTAL}"


async def test_another_process_loads_the_install_and_saves_refreshed_tokens(
    service_factory, database_url: str
) -> None:
    service = await service_factory(**OAUTH, hubspot_token_refresh_margin_seconds=1800)
    with _hubspot():
        await _install(service)
    worker = Runtime.build(service.runtime.settings)
    async with service.runtime.sessions() as session:
        before = (await session.execute(select(InstalledConnection))).scalar_one().credentials
    try:
        assert await worker.connections.sync_installed(worker.sessions)
        connection = worker.connections.get(f"hubspot-{PORTAL}")
        assert connection is not None
        assert connection.connector is not None
        with _hubspot(access_token="a-2") as hubspot:
            hubspot.get(f"{HUBSPOT_API}/crm/v3/objects/companies").respond(
                200, json={"results": []}
            )
            # The margin equals the token's lifetime, so the first call refreshes.
            await connection.connector.list_backfill_page(object_type="companies", after=None)
            used = [c.request.headers.get("authorization") for c in hubspot.calls]
        assert "Bearer a-2" in used
    finally:
        await worker.aclose()
    async with service.runtime.sessions() as session:
        after = (await session.execute(select(InstalledConnection))).scalar_one().credentials
    assert after != before
    # A token refresh is not a new install: once loaded, nothing more to load.
    await service.runtime.connections.sync_installed(service.runtime.sessions)
    assert not await service.runtime.connections.sync_installed(service.runtime.sessions)


async def test_reinstalling_a_portal_replaces_its_credentials(service_factory) -> None:
    service = await service_factory(**OAUTH)
    with _hubspot():
        await _install(service)
    with _hubspot(access_token="a-9"):
        response = await _install(service)

    assert response.status_code == 200
    async with service.runtime.sessions() as session:
        rows = (await session.execute(select(InstalledConnection))).scalars().all()
    assert len(rows) == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "1.2.3"}, "code: missing"),
        ({"code": "c"}, "state: missing"),
        ({"code": "c", "state": "1700000000.nonce.deadbeef"}, "state: state was not issued"),
        ({"error": "access_denied"}, "did not authorise the install: access_denied"),
    ],
)
async def test_a_bad_callback_is_a_400_naming_the_problem(
    service_factory, params: dict[str, str], message: str
) -> None:
    service = await service_factory(**OAUTH)

    response = await service.client.get("/oauth/hubspot/callback", params=params)

    assert response.status_code == 400
    assert message in response.json()["detail"]


async def test_a_code_hubspot_refuses_is_a_400(service_factory) -> None:
    service = await service_factory(**OAUTH)
    state = await _start(service)
    with respx.mock:
        respx.post(f"{HUBSPOT_API}/oauth/v1/token").respond(
            400, json={"status": "BAD_AUTH_CODE", "message": "missing or unknown auth code"}
        )
        response = await service.client.get(
            "/oauth/hubspot/callback", params={"code": "stale", "state": state}
        )

    assert response.status_code == 400
    assert "BAD_AUTH_CODE" in response.json()["detail"]


async def test_a_portal_pinned_in_the_connections_file_cannot_be_installed_twice(
    service_factory, tmp_path: Path
) -> None:
    path = tmp_path / "connections.yaml"
    path.write_text(
        "connections:\n"
        f"  - {{name: main, crm: hubspot, portal_id: {PORTAL}, client_secret: other}}\n"
    )
    service = await service_factory(**OAUTH, connections_file=path)
    with _hubspot():
        response = await _install(service)

    assert response.status_code == 409
    assert "'main'" in response.json()["detail"]


async def test_install_without_oauth_settings_is_a_503(service_factory) -> None:
    service = await service_factory()

    response = await service.client.post("/api/v1/install-links", headers=await _key(service))

    assert response.status_code == 503
    assert "CRM_HEALTH_HUBSPOT_CLIENT_ID" in response.json()["detail"]


async def test_events_of_a_portal_connected_later_are_processed_after_a_replay(
    service_factory,
) -> None:
    service = await service_factory(**OAUTH)
    body = json.dumps([hubspot_event(11, portalId=PORTAL, objectId=501)]).encode()
    uri = f"{PUBLIC_URL}/webhooks/hubspot"
    early = await service.client.post(
        "/webhooks/hubspot", content=body, headers=signed_v3_headers(body, uri=uri)
    )
    pipeline = service.runtime.pipeline
    await pipeline.process_inbox()
    async with service.runtime.sessions() as session:
        [dead] = await inbox.dead_letters(session)
    assert early.status_code == 202
    assert f"no connection 'hubspot-{PORTAL}'" in (dead.last_error or "")

    with _hubspot():
        await _install(service)
    async with service.runtime.sessions() as session, session.begin():
        assert await inbox.replay(session, event_ids=None, now=datetime.now(UTC)) == 1
    report = await pipeline.process_inbox()

    assert report.processed == 1
    async with service.runtime.sessions() as session:
        account = (await session.execute(select(Account))).scalar_one()
    assert (account.connection, account.crm_id) == (f"hubspot-{PORTAL}", "501")


@pytest.mark.parametrize("link", [None, "", "not-a-link-an-admin-made"])
async def test_install_without_a_valid_link_is_a_403(service_factory, link: str | None) -> None:
    service = await service_factory(**OAUTH)

    response = await service.client.get(
        "/oauth/hubspot/install", params={} if link is None else {"link": link}
    )

    assert response.status_code == 403
    assert "install link" in response.json()["detail"]


async def test_an_install_link_works_once(service_factory) -> None:
    service = await service_factory(**OAUTH)
    link = await _link(service)

    first = await service.client.get(link)
    second = await service.client.get(link)

    assert first.status_code == 302
    assert second.status_code == 403
    assert "already used" in second.json()["detail"]


async def test_an_expired_install_link_is_a_403(service_factory) -> None:
    service = await service_factory(**OAUTH)
    link = await _link(service)
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(
            update(InstallGrant).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    response = await service.client.get(link)

    assert response.status_code == 403


async def test_a_new_link_clears_expired_ones(service_factory) -> None:
    service = await service_factory(**OAUTH)
    await _link(service)
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(
            update(InstallGrant).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await _link(service)

    async with service.runtime.sessions() as session:
        stored = (await session.execute(select(InstallGrant))).scalars().all()

    assert len(stored) == 1


async def test_install_links_and_states_are_stored_hashed(service_factory) -> None:
    service = await service_factory(**OAUTH)
    link = await _link(service)
    state = parse_qs(urlsplit((await service.client.get(link)).headers["location"]).query)
    token = parse_qs(urlsplit(link).query)["link"][0]

    async with service.runtime.sessions() as session:
        stored = {row.token_hash for row in (await session.execute(select(InstallGrant))).scalars()}

    assert len(stored) == 2
    assert token not in stored
    assert state["state"][0] not in stored


async def test_a_replayed_state_is_a_400_and_keeps_the_first_install(service_factory) -> None:
    service = await service_factory(**OAUTH)
    state = await _start(service)
    with _hubspot():
        first = await service.client.get(
            "/oauth/hubspot/callback", params={"code": "code-1", "state": state}
        )
    with _hubspot(access_token="a-9") as hubspot:
        replay = await service.client.get(
            "/oauth/hubspot/callback", params={"code": "code-2", "state": state}
        )
        exchanged = [c for c in hubspot.calls if c.request.url.path == "/oauth/v1/token"]

    assert first.status_code == 200
    assert replay.status_code == 400
    assert "state: already used" in replay.json()["detail"]
    assert exchanged == []


@pytest.mark.parametrize("role", ["viewer", "ingest"])
async def test_only_an_admin_key_creates_install_links(service_factory, role: str) -> None:
    service = await service_factory(**OAUTH)

    response = await service.client.post("/api/v1/install-links", headers=await _key(service, role))

    assert response.status_code == 403
    async with service.runtime.sessions() as session:
        assert (await session.execute(select(InstallGrant))).first() is None


async def test_an_install_link_without_a_key_is_a_401(service_factory) -> None:
    service = await service_factory(**OAUTH)

    response = await service.client.post("/api/v1/install-links")

    assert response.status_code == 401


async def test_the_install_link_command_prints_a_link_that_installs_once(
    service_factory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "DATABASE_URL": database_url,
        "PUBLIC_URL": PUBLIC_URL,
        "HUBSPOT_CLIENT_ID": OAUTH["hubspot_client_id"],
        "HUBSPOT_CLIENT_SECRET": "app-secret",
        "ENCRYPTION_KEY": OAUTH["encryption_key"],
    }.items():
        monkeypatch.setenv(f"CRM_HEALTH_{name}", str(value))
    logging_config = structlog.get_config()
    try:
        # The command runs its own event loop: give it a thread of its own.
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["install-link"])
    finally:
        structlog.configure(**logging_config)
    service = await service_factory(**OAUTH)
    url = urlsplit(result.stdout.strip())

    assert result.exit_code == 0, result.output
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{PUBLIC_URL}/oauth/hubspot/install"
    assert "single use" in result.stderr
    assert (await service.client.get(f"{url.path}?{url.query}")).status_code == 302
    assert (await service.client.get(f"{url.path}?{url.query}")).status_code == 403


# --- which secret owns which portal -------------------------------------------------------------

VICTIM = 1000001
PRIVATE_PORTAL = 222
PRIVATE_SECRET = "private-app-secret-of-portal-222"
OAUTH_SECRET = HUBSPOT_SECRET  # with a client id, the client secret is the OAuth app's
FORGERIES = {
    "deletion": {"subscriptionType": "company.deletion"},
    "rename": {"propertyName": "name", "propertyValue": "Pwned Inc"},
}


async def _private_app_beside_an_install(service_factory, tmp_path: Path):
    """A private app of portal 222 in the connections file, portal 1000001 installed with the
    OAuth app, and company 2 of the installed portal known by name."""
    path = tmp_path / "connections.yaml"
    path.write_text(
        "connections:\n"
        f"  - {{name: private, crm: hubspot, portal_id: {PRIVATE_PORTAL}, "
        f"client_secret: {PRIVATE_SECRET}}}\n"
    )
    service = await service_factory(**OAUTH, connections_file=path)
    with _hubspot(portal=VICTIM):
        assert (await _install(service)).status_code == 200
    await store_native(
        service.runtime,
        [native("account", "2", attributes={"name": "Victim Co"}), native("usage", "2", user="u")],
        connection=f"hubspot-{VICTIM}",
    )
    await service.runtime.pipeline.process_inbox()
    return service


async def inbox_rows(service) -> list[InboxEvent]:
    async with service.runtime.sessions() as session:
        return list((await session.execute(select(InboxEvent).order_by(InboxEvent.id))).scalars())


async def _post_signed(service, events: list[dict[str, object]], secret: str) -> httpx.Response:
    body = json.dumps(events).encode()
    headers = signed_v3_headers(body, uri=f"{PUBLIC_URL}/webhooks/hubspot", secret=secret)
    return await service.client.post("/webhooks/hubspot", content=body, headers=headers)


@pytest.mark.parametrize("change", FORGERIES.values(), ids=FORGERIES.keys())
async def test_a_private_apps_secret_cannot_change_an_installed_portals_company(
    service_factory, tmp_path: Path, change: dict[str, object]
) -> None:
    service = await _private_app_beside_an_install(service_factory, tmp_path)
    rows_before = len(await inbox_rows(service))
    event = {**hubspot_event(661001, portalId=VICTIM, objectId=2), **change}

    with capture_logs() as logs:
        response = await _post_signed(service, [event], PRIVATE_SECRET)
    await service.runtime.pipeline.process_inbox()

    assert response.status_code == 401, response.text
    assert f"portalId {VICTIM}" in response.json()["detail"]
    assert len(await inbox_rows(service)) == rows_before
    async with service.runtime.sessions() as session:
        account = (await session.execute(select(Account))).scalar_one()
    assert (account.name, account.deleted_at) == ("Victim Co", None)
    [refused] = [entry for entry in logs if entry["event"] == "hubspot_portal_not_owned"]
    assert (refused["portal_id"], refused["owner_portal_ids"]) == (VICTIM, [PRIVATE_PORTAL])
    assert PRIVATE_SECRET not in repr(logs)


async def test_one_foreign_portal_refuses_the_whole_batch(service_factory, tmp_path: Path) -> None:
    service = await _private_app_beside_an_install(service_factory, tmp_path)
    rows_before = len(await inbox_rows(service))
    own = hubspot_event(1, portalId=PRIVATE_PORTAL)
    foreign = hubspot_event(2, portalId=VICTIM, objectId=2, propertyValue="Pwned Inc")

    response = await _post_signed(service, [own, foreign], PRIVATE_SECRET)

    assert response.status_code == 401
    assert len(await inbox_rows(service)) == rows_before


async def test_the_oauth_apps_secret_still_reaches_the_installed_portal(
    service_factory, tmp_path: Path
) -> None:
    service = await _private_app_beside_an_install(service_factory, tmp_path)
    rows_before = len(await inbox_rows(service))

    response = await _post_signed(
        service, [hubspot_event(7, portalId=VICTIM, objectId=2)], OAUTH_SECRET
    )

    assert response.status_code == 202, response.text
    [row] = (await inbox_rows(service))[rows_before:]
    assert row.connection == f"hubspot-{VICTIM}"


async def test_a_private_apps_secret_reaches_its_own_portal(
    service_factory, tmp_path: Path
) -> None:
    service = await _private_app_beside_an_install(service_factory, tmp_path)
    rows_before = len(await inbox_rows(service))

    response = await _post_signed(
        service, [hubspot_event(8, portalId=PRIVATE_PORTAL)], PRIVATE_SECRET
    )

    assert response.status_code == 202, response.text
    [row] = (await inbox_rows(service))[rows_before:]
    assert row.connection == "private"


async def test_the_oauth_apps_secret_cannot_file_events_under_a_configured_connections_name(
    service_factory, tmp_path: Path
) -> None:
    """A connections-file entry named like an install: the app's events of that (not yet
    installed) portal are not handed to that entry's connection."""
    path = tmp_path / "connections.yaml"
    path.write_text(
        f"connections:\n  - {{name: hubspot-{VICTIM}, crm: hubspot, portal_id: {PRIVATE_PORTAL}, "
        f"client_secret: {PRIVATE_SECRET}}}\n"
    )
    service = await service_factory(**OAUTH, connections_file=path)

    response = await _post_signed(service, [hubspot_event(9, portalId=VICTIM)], OAUTH_SECRET)

    assert response.status_code == 401
    assert await inbox_rows(service) == []
