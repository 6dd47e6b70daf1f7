"""Connections from settings, the connections file and installs; HubSpot routing by portal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connector.hubspot import intake as hubspot_intake
from connector.hubspot.connection import FileHubSpot
from connector.hubspot.events import signature_v1
from testkit import HUBSPOT_SECRET, PUBLIC_URL, hubspot_event, make_settings, signed_v3_headers
from webhooks.configuration import check_configuration
from webhooks.connections import (
    ConnectionsFileError,
    connections_from_settings,
    read_connections_file,
)
from webhooks.secrets import SecretKeyError
from webhooks.store.models import InboxEvent

EU_SECRET = "eu-app-secret"
US_SECRET = "us-app-secret"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    return path


def test_the_file_lists_connections_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EU_TOKEN", "pat-eu")
    path = _write(
        tmp_path,
        """
connections:
  - name: acme-eu
    crm: hubspot
    portal_id: 111
    access_token: ${EU_TOKEN}
    client_secret: eu-app-secret
    properties: {seats: seats_purchased, arr: annual_recurring_revenue}
""",
    )

    [entry] = read_connections_file(path)

    assert isinstance(entry, FileHubSpot)
    assert entry.name == "acme-eu"
    assert entry.portal_id == 111
    assert entry.access_token is not None
    assert entry.access_token.get_secret_value() == "pat-eu"
    assert entry.properties.seats == "seats_purchased"


def test_a_missing_environment_variable_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "connections:\n  - {name: a, crm: hubspot, access_token: ${NOPE_X}}\n")

    with pytest.raises(ConnectionsFileError, match=r"\$\{NOPE_X\} is not set"):
        read_connections_file(path)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("connections:\n  - {name: a, crm: pipedrive}\n", "connections.0.crm"),
        ("connections:\n  - {name: a, crm: hubspot, portal_id: -3}\n", "connections.0.portal_id"),
        ("connections:\n  - {name: a, crm: hubspot, colour: red}\n", "connections.0.colour"),
        ("connections:\n  - {name: 'a b', crm: hubspot}\n", "connections.0.name"),
        ("connections: [\n", "not valid YAML"),
        ("nothing: here\n", "connections"),
    ],
)
def test_an_invalid_file_names_the_field(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConnectionsFileError, match=named.replace(".", r"\.")):
        read_connections_file(_write(tmp_path, text))


def test_a_check_of_a_whole_entry_says_it_in_its_own_words(tmp_path: Path) -> None:
    text = "connections:\n  - {name: a, crm: salesforce, private_key: k, private_key_file: /k}\n"
    with pytest.raises(ConnectionsFileError) as refused:
        read_connections_file(_write(tmp_path, text))
    assert str(refused.value).endswith(
        "connections.0: give private_key or private_key_file, not both"
    ), "no pydantic 'Value error, ' before the check's own words"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectionsFileError, match="cannot read connections file"):
        read_connections_file(tmp_path / "absent.yaml")


def test_duplicate_connection_names_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "connections:\n  - {name: default, crm: hubspot}\n")
    settings = make_settings("sqlite+aiosqlite://", connections_file=path)

    with pytest.raises(ConnectionsFileError, match="unique"):
        connections_from_settings(settings)


def test_oauth_without_an_encryption_key_is_refused_at_start() -> None:
    settings = make_settings("sqlite+aiosqlite://", hubspot_client_id="client-1")

    with pytest.raises(SecretKeyError, match="CRM_HEALTH_ENCRYPTION_KEY is required"):
        check_configuration(settings)


def _registry(tmp_path: Path):
    path = _write(
        tmp_path,
        f"""
connections:
  - {{name: eu, crm: hubspot, portal_id: 111, client_secret: {EU_SECRET}, access_token: t1}}
  - {{name: us, crm: hubspot, portal_id: 222, client_secret: {US_SECRET}, access_token: t2}}
""",
    )
    return connections_from_settings(make_settings("sqlite+aiosqlite://", connections_file=path))


async def test_events_route_to_the_connection_pinned_to_their_portal(tmp_path: Path) -> None:
    registry = _registry(tmp_path)

    eu = hubspot_intake.owner(registry.of_crm("hubspot"), 111, secret=EU_SECRET)
    default = hubspot_intake.owner(registry.of_crm("hubspot"), 999, secret=HUBSPOT_SECRET)

    assert eu is not None
    assert eu.name == "eu"
    # The settings connection has no portal id: it takes every portal nobody else claims.
    assert default is not None
    assert default.name == "default"
    # A portal signed with another app's secret does not route anywhere.
    assert hubspot_intake.owner(registry.of_crm("hubspot"), 111, secret=US_SECRET) is None
    await registry.aclose()


async def _post(service, events, secret):
    body = json.dumps(events).encode()
    uri = f"{PUBLIC_URL}/webhooks/hubspot"
    return await service.client.post(
        "/webhooks/hubspot", content=body, headers=signed_v3_headers(body, uri=uri, secret=secret)
    )


async def _stored(service) -> dict[str, str]:
    async with service.runtime.sessions() as session:
        rows = (await session.execute(select(InboxEvent))).scalars().all()
    return {row.dedup_key: row.connection for row in rows}


async def test_each_app_secret_is_accepted_and_events_land_on_their_connection(
    tmp_path: Path, service_factory
) -> None:
    path = _write(
        tmp_path,
        f"""
connections:
  - {{name: eu, crm: hubspot, portal_id: 111, client_secret: {EU_SECRET}}}
  - {{name: us, crm: hubspot, portal_id: 222, client_secret: {US_SECRET}}}
""",
    )
    service = await service_factory(connections_file=path, hubspot_client_secret=None)

    eu = await _post(service, [hubspot_event(1, portalId=111)], EU_SECRET)
    us = await _post(service, [hubspot_event(2, portalId=222)], US_SECRET)
    forged = await _post(service, [hubspot_event(3, portalId=111)], "not-a-secret")

    assert (eu.status_code, us.status_code, forged.status_code) == (202, 202, 401)
    assert await _stored(service) == {"111:1": "eu", "222:2": "us"}


async def test_a_private_apps_events_of_a_portal_it_does_not_own_are_401_and_not_stored(
    tmp_path: Path, service_factory
) -> None:
    path = _write(
        tmp_path,
        "connections:\n"
        f"  - {{name: eu, crm: hubspot, portal_id: 111, client_secret: {EU_SECRET}}}\n",
    )
    service = await service_factory(connections_file=path, hubspot_client_secret=None)

    response = await _post(service, [hubspot_event(5, portalId=333)], EU_SECRET)

    assert response.status_code == 401
    assert await _stored(service) == {}


def _legacy_v1(events: list[dict[str, object]], secret: str) -> tuple[bytes, dict[str, str]]:
    """A captured v3 request replayed late with its v3 headers stripped and its v1 kept."""
    body = json.dumps(events).encode()
    headers = signed_v3_headers(
        body,
        uri=f"{PUBLIC_URL}/webhooks/hubspot",
        secret=secret,
        at=datetime.now(UTC) - timedelta(hours=1),
    )
    del headers["X-HubSpot-Signature-v3"], headers["X-HubSpot-Request-Timestamp"]
    headers["X-HubSpot-Signature"] = signature_v1(secret, body)
    return body, headers


def _legacy_file(tmp_path: Path, *, eu_legacy: bool) -> Path:
    return _write(
        tmp_path,
        "connections:\n"
        f"  - {{name: eu, crm: hubspot, portal_id: 111, client_secret: {EU_SECRET}, "
        f"accept_legacy_signatures: {str(eu_legacy).lower()}}}\n"
        f"  - {{name: us, crm: hubspot, portal_id: 222, client_secret: {US_SECRET}}}\n",
    )


async def test_a_stripped_v3_request_with_its_v1_kept_is_401_by_default(
    tmp_path: Path, service_factory
) -> None:
    path = _legacy_file(tmp_path, eu_legacy=False)
    service = await service_factory(connections_file=path, hubspot_client_secret=None)
    body, headers = _legacy_v1([hubspot_event(1, portalId=111)], EU_SECRET)

    response = await service.client.post("/webhooks/hubspot", content=body, headers=headers)

    assert response.status_code == 401
    assert "only v3" in response.json()["detail"]
    assert await _stored(service) == {}


async def test_a_v1_request_is_accepted_for_a_connection_that_opts_in(
    tmp_path: Path, service_factory
) -> None:
    path = _legacy_file(tmp_path, eu_legacy=True)
    service = await service_factory(connections_file=path, hubspot_client_secret=None)
    body, headers = _legacy_v1([hubspot_event(1, portalId=111)], EU_SECRET)

    response = await service.client.post("/webhooks/hubspot", content=body, headers=headers)

    assert response.status_code == 202, response.text
    assert await _stored(service) == {"111:1": "eu"}


async def test_one_connections_legacy_opt_in_does_not_cover_another(
    tmp_path: Path, service_factory
) -> None:
    path = _legacy_file(tmp_path, eu_legacy=True)
    service = await service_factory(connections_file=path, hubspot_client_secret=None)
    body, headers = _legacy_v1([hubspot_event(2, portalId=222)], US_SECRET)

    response = await service.client.post("/webhooks/hubspot", content=body, headers=headers)

    assert response.status_code == 401
    assert await _stored(service) == {}


async def test_a_request_with_a_v3_signature_is_checked_as_v3_even_with_legacy_opted_in(
    tmp_path: Path, service_factory
) -> None:
    path = _legacy_file(tmp_path, eu_legacy=True)
    service = await service_factory(connections_file=path, hubspot_client_secret=None)
    body = json.dumps([hubspot_event(3, portalId=111)]).encode()
    headers = signed_v3_headers(
        body,
        uri=f"{PUBLIC_URL}/webhooks/hubspot",
        secret=EU_SECRET,
        at=datetime.now(UTC) - timedelta(hours=1),
    )
    headers["X-HubSpot-Signature"] = signature_v1(EU_SECRET, body)

    response = await service.client.post("/webhooks/hubspot", content=body, headers=headers)

    assert response.status_code == 401
    assert "more than 300 s" in response.json()["detail"]
