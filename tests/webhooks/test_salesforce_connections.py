"""Salesforce connections from settings and the connections file: which OAuth flow, and a clear
error naming the setting for every combination that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from connector.salesforce.api import SalesforceConnector
from connector.salesforce.connection import SalesforceInbound
from testkit import make_settings
from webhooks.configuration import check_configuration
from webhooks.connections import (
    ConnectionsFileError,
    connections_from_settings,
    read_connections_file,
)

ORG = "00D5e000000abcdEAA"
MY_DOMAIN = "https://acme.my.salesforce.com"


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _settings(**overrides: object):
    values: dict[str, object] = {"salesforce_connection_name": "sf"}
    values.update(overrides)
    return make_settings("sqlite+aiosqlite://", **values)


async def test_client_credentials_settings_make_a_salesforce_connection() -> None:
    settings = _settings(
        salesforce_organization_id=ORG,
        salesforce_login_url=MY_DOMAIN,
        salesforce_client_id="3MVG9-key",
        salesforce_client_secret="consumer-secret",
    )
    registry = connections_from_settings(settings)
    try:
        connection = registry.get("sf")
        assert connection is not None
        assert connection.crm == "salesforce"
        assert isinstance(connection.connector, SalesforceConnector)
        assert isinstance(connection.crm_settings, SalesforceInbound)
        assert connection.crm_settings.same_organization(ORG[:15])
        assert connection.record_url("0015e00000AbCdEAAV") == f"{MY_DOMAIN}/0015e00000AbCdEAAV"
        # The HubSpot settings connection is still there, under its own name.
        assert registry.get("default") is not None
    finally:
        await registry.aclose()


async def test_jwt_settings_with_a_key_file_make_a_connector(tmp_path: Path, pem: str) -> None:
    key_file = tmp_path / "sf.pem"
    key_file.write_text(pem)
    settings = _settings(
        salesforce_organization_id=ORG,
        salesforce_client_id="3MVG9-key",
        salesforce_username="integration@acme.example",
        salesforce_private_key_file=str(key_file),
    )
    registry = connections_from_settings(settings)
    try:
        connection = registry.get("sf")
        assert connection is not None
        assert isinstance(connection.connector, SalesforceConnector)
        # login.salesforce.com is no address of the org's records.
        assert connection.record_url("0015e00000AbCdEAAV") is None
    finally:
        await registry.aclose()


def test_organization_id_alone_makes_a_connection_that_writes_nothing_back() -> None:
    registry = connections_from_settings(_settings(salesforce_organization_id=ORG))
    connection = registry.get("sf")
    assert connection is not None
    assert connection.connector is None
    assert isinstance(connection.crm_settings, SalesforceInbound)


def test_connection_without_a_secret_accepts_no_message() -> None:
    registry = connections_from_settings(_settings(salesforce_organization_id=ORG))
    connection = registry.get("sf")
    assert connection is not None
    assert isinstance(connection.crm_settings, SalesforceInbound)
    assert not connection.crm_settings.secret_matches(None)
    assert not connection.crm_settings.secret_matches("")


def test_opting_out_of_the_secret_accepts_messages_and_warns_at_start() -> None:
    with capture_logs() as logs:
        registry = connections_from_settings(
            _settings(salesforce_organization_id=ORG, salesforce_allow_unsigned=True)
        )
    connection = registry.get("sf")
    assert connection is not None
    assert isinstance(connection.crm_settings, SalesforceInbound)
    assert connection.crm_settings.secret_matches(None)
    warnings = [e for e in logs if e["event"] == "salesforce_unsigned_messages_allowed"]
    assert [(e["log_level"], e["connection"]) for e in warnings] == [("warning", "sf")]


def test_connection_with_a_secret_logs_no_opt_out_warning() -> None:
    with capture_logs() as logs:
        connections_from_settings(
            _settings(salesforce_organization_id=ORG, salesforce_webhook_secret="s")
        )
    assert not [e for e in logs if e["event"] == "salesforce_unsigned_messages_allowed"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"salesforce_client_secret": "s", "salesforce_login_url": MY_DOMAIN},
            "CRM_HEALTH_SALESFORCE_CLIENT_ID is required",
        ),
        (
            {"salesforce_client_id": "k", "salesforce_client_secret": "s"},
            "CRM_HEALTH_SALESFORCE_LOGIN_URL must be the org's My Domain URL",
        ),
        (
            {
                "salesforce_client_id": "k",
                "salesforce_client_secret": "s",
                "salesforce_username": "u@example.com",
                "salesforce_login_url": MY_DOMAIN,
            },
            "not both",
        ),
        (
            {"salesforce_client_id": "k", "salesforce_username": "u@example.com"},
            "needs both CRM_HEALTH_SALESFORCE_USERNAME and CRM_HEALTH_SALESFORCE_PRIVATE_KEY",
        ),
        ({"salesforce_client_id": "k"}, "CRM_HEALTH_SALESFORCE_CLIENT_SECRET"),
        (
            {
                "salesforce_client_id": "k",
                "salesforce_username": "u@example.com",
                "salesforce_private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n",
            },
            "CRM_HEALTH_SALESFORCE_PRIVATE_KEY: ",
        ),
        (
            {"salesforce_organization_id": ORG, "salesforce_seats_field": "Seats; DROP"},
            "CRM_HEALTH_SALESFORCE_",
        ),
        (
            {
                "salesforce_organization_id": ORG,
                "salesforce_webhook_secret": "s",
                "salesforce_allow_unsigned": True,
            },
            "give CRM_HEALTH_SALESFORCE_WEBHOOK_SECRET or CRM_HEALTH_SALESFORCE_ALLOW_UNSIGNED, "
            "not both",
        ),
        (
            {"salesforce_organization_id": ORG, "salesforce_webhook_secret": ""},
            "CRM_HEALTH_SALESFORCE_WEBHOOK_SECRET is empty",
        ),
    ],
)
def test_settings_that_cannot_work_are_named(overrides: dict[str, object], message: str) -> None:
    settings = _settings(**overrides)
    with pytest.raises(ConnectionsFileError, match=message) as caught:
        check_configuration(settings)
    assert "not-a-key" not in str(caught.value)
    with pytest.raises(ConnectionsFileError, match=message):
        connections_from_settings(settings)


def test_salesforce_and_hubspot_settings_on_one_name_are_refused() -> None:
    settings = make_settings("sqlite+aiosqlite://", salesforce_organization_id=ORG)
    with pytest.raises(ConnectionsFileError, match="CRM_HEALTH_SALESFORCE_CONNECTION_NAME"):
        connections_from_settings(settings)


def test_salesforce_alone_takes_the_default_connection_name() -> None:
    settings = make_settings(
        "sqlite+aiosqlite://",
        hubspot_client_secret=None,
        hubspot_access_token=None,
        salesforce_organization_id=ORG,
    )
    connection = connections_from_settings(settings).get("default")
    assert connection is not None
    assert connection.crm == "salesforce"


def test_connection_name_unfit_for_an_endpoint_is_named() -> None:
    settings = _settings(salesforce_connection_name="acme sf", salesforce_organization_id=ORG)
    with pytest.raises(ConnectionsFileError, match="CRM_HEALTH_SALESFORCE_CONNECTION_NAME"):
        check_configuration(settings)


def test_malformed_organization_id_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="salesforce_organization_id"):
        _settings(salesforce_organization_id="acme")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    return path


async def test_file_entries_make_salesforce_connections(
    tmp_path: Path, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "globex.pem").write_text(pem)
    monkeypatch.setenv("ACME_SF_SECRET", "acme-consumer-secret")
    path = _write(
        tmp_path,
        f"""
connections:
  - name: acme-sf
    crm: salesforce
    organization_id: {ORG}
    login_url: {MY_DOMAIN}
    client_id: 3MVG9-acme
    client_secret: ${{ACME_SF_SECRET}}
    webhook_secret: path-secret-1
    fields: {{seats: Seats__c, arr: ARR__c}}
    segment: {{write_key: acme-segment-key}}
  - name: globex-sf
    crm: salesforce
    organization_id: 00D7f000000wxyz
    allow_unsigned: true
    client_id: 3MVG9-globex
    username: integration@globex.example
    private_key_file: {tmp_path / "globex.pem"}
""",
    )
    with capture_logs() as logs:
        registry = connections_from_settings(
            make_settings(
                "sqlite+aiosqlite://",
                hubspot_client_secret=None,
                hubspot_access_token=None,
                connections_file=str(path),
            )
        )
    try:
        # Only the entry that opted out of the secret is warned about.
        assert [
            e["connection"] for e in logs if e["event"] == "salesforce_unsigned_messages_allowed"
        ] == ["globex-sf"]
        acme = registry.get("acme-sf")
        globex = registry.get("globex-sf")
        assert acme is not None
        assert globex is not None
        assert isinstance(acme.crm_settings, SalesforceInbound)
        assert acme.crm_settings.mapping.seats == "Seats__c"
        assert acme.crm_settings.secret_matches("path-secret-1")
        assert not acme.crm_settings.secret_matches(None)
        assert isinstance(globex.crm_settings, SalesforceInbound)
        assert globex.crm_settings.secret_matches(None)
        assert isinstance(globex.connector, SalesforceConnector)
        assert registry.segment_for_write_key("acme-segment-key") is not None
    finally:
        await registry.aclose()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: a, crm: salesforce, organization_id: acme}", r"organization_id"),
        ("{name: a, crm: salesforce, client_id: k}", r"connection 'a': client_secret"),
        ("{name: a, crm: salesforce, region: eu}", r"region"),
        (
            "{name: a, crm: salesforce, private_key: x, private_key_file: /x.pem}",
            "private_key or private_key_file",
        ),
        (
            "{name: a, crm: salesforce, client_id: k, username: u, private_key_file: /nope.pem}",
            r"connection 'a': private_key_file: cannot read",
        ),
        (
            "{name: a, crm: salesforce, webhook_secret: ''}",
            r"connection 'a': webhook_secret is empty",
        ),
        (
            "{name: a, crm: salesforce, webhook_secret: s, allow_unsigned: true}",
            r"connection 'a': webhook_secret or .*connection 'a': allow_unsigned, not both",
        ),
    ],
)
def test_broken_file_entries_are_named(tmp_path: Path, entry: str, message: str) -> None:
    path = _write(tmp_path, f"connections:\n  - {entry}\n")
    settings = make_settings("sqlite+aiosqlite://", connections_file=str(path))
    with pytest.raises(ConnectionsFileError, match=message):
        check_configuration(settings)


def test_the_file_parser_tells_the_crms_apart(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "connections:\n  - {name: a, crm: salesforce}\n  - {name: b, crm: hubspot}\n",
    )
    first, second = read_connections_file(path)
    assert first.crm == "salesforce"
    assert second.crm == "hubspot"
