"""Dynamics 365 connections from settings and the connections file, with a clear error naming
the setting for every combination that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.dynamics.api import DynamicsConnector
from connector.dynamics.connection import DynamicsInbound
from testkit import make_settings
from webhooks.configuration import check_configuration
from webhooks.connections import (
    ConnectionsFileError,
    connections_from_settings,
)

ORG_URL = "https://contoso.crm.dynamics.com"
TENANT = "7f3c1b2a-52f0-4a8e-9d59-1f2e3d4c5b6a"
CLIENT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def _settings(**overrides: object):
    values: dict[str, object] = {"dynamics_connection_name": "d365"}
    values.update(overrides)
    return make_settings("sqlite+aiosqlite://", **values)


def _credentials(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "dynamics_org_url": ORG_URL,
        "dynamics_tenant_id": TENANT,
        "dynamics_client_id": CLIENT,
        "dynamics_client_secret": "app-secret-value",
        "dynamics_publisher_prefix": "crmh",
        "dynamics_webhook_auth_value": "webhook-key-value",
    }
    values.update(overrides)
    return values


async def test_settings_make_a_dynamics_connection_with_a_connector() -> None:
    registry = connections_from_settings(_settings(**_credentials()))
    try:
        connection = registry.get("d365")
        assert connection is not None
        assert connection.crm == "dynamics"
        assert isinstance(connection.connector, DynamicsConnector)
        assert isinstance(connection.crm_settings, DynamicsInbound)
        assert connection.crm_settings.auth_mode == "webhook_key"
        assert connection.record_url("5f1c") == (
            f"{ORG_URL}/main.aspx?pagetype=entityrecord&etn=account&id=5f1c"
        )
    finally:
        await registry.aclose()


def test_a_webhook_credential_alone_accepts_webhooks_without_writing_back() -> None:
    registry = connections_from_settings(
        _settings(dynamics_webhook_auth_value="k", dynamics_webhook_auth="header")
    )
    connection = registry.get("d365")
    assert connection is not None
    assert connection.connector is None
    assert isinstance(connection.crm_settings, DynamicsInbound)
    assert connection.crm_settings.auth_name == "x-crm-health-key"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"dynamics_client_secret": None},
            "also needs CRM_HEALTH_DYNAMICS_CLIENT_SECRET",
        ),
        ({"dynamics_org_url": None}, "CRM_HEALTH_DYNAMICS_ORG_URL is required"),
        ({"dynamics_publisher_prefix": None}, "CRM_HEALTH_DYNAMICS_PUBLISHER_PREFIX is required"),
        ({"dynamics_seats_column": "Seats; DROP"}, "CRM_HEALTH_DYNAMICS_"),
    ],
)
def test_settings_that_cannot_work_are_named(overrides: dict[str, object], message: str) -> None:
    settings = _settings(**_credentials(**overrides))
    with pytest.raises(ConnectionsFileError, match=message) as caught:
        check_configuration(settings)
    assert "app-secret-value" not in str(caught.value)
    with pytest.raises(ConnectionsFileError, match=message):
        connections_from_settings(settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dynamics_org_url", "http://contoso.crm.dynamics.com"),
        ("dynamics_publisher_prefix", "Contoso_"),
        ("dynamics_max_concurrency", 53),
    ],
)
def test_malformed_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        _settings(**{field: value})


def test_two_crms_on_one_settings_name_are_refused() -> None:
    settings = make_settings("sqlite+aiosqlite://", dynamics_webhook_auth_value="k")
    with pytest.raises(ConnectionsFileError, match="CRM_HEALTH_DYNAMICS_CONNECTION_NAME"):
        connections_from_settings(settings)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    return path


async def test_file_entries_make_dynamics_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTOSO_SECRET", "contoso-app-secret")
    path = _write(
        tmp_path,
        f"""
connections:
  - name: contoso
    crm: dynamics
    org_url: {ORG_URL}
    tenant_id: {TENANT}
    client_id: {CLIENT}
    client_secret: ${{CONTOSO_SECRET}}
    publisher_prefix: crmh
    webhook_auth: query_string
    webhook_auth_name: token
    webhook_auth_value: qs-value
    columns: {{seats: crmh_seats}}
    segment: {{write_key: contoso-segment-key}}
  - name: fabrikam
    crm: dynamics
    webhook_auth_value: only-webhooks
""",
    )
    registry = connections_from_settings(
        make_settings(
            "sqlite+aiosqlite://",
            hubspot_client_secret=None,
            hubspot_access_token=None,
            connections_file=str(path),
        )
    )
    try:
        contoso = registry.get("contoso")
        fabrikam = registry.get("fabrikam")
        assert contoso is not None
        assert fabrikam is not None
        assert isinstance(contoso.connector, DynamicsConnector)
        assert isinstance(contoso.crm_settings, DynamicsInbound)
        assert contoso.crm_settings.auth_mode == "query_string"
        assert contoso.crm_settings.mapping.seats == "crmh_seats"
        assert fabrikam.connector is None
        assert registry.segment_for_write_key("contoso-segment-key") is not None
    finally:
        await registry.aclose()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: a, crm: dynamics, webhook_auth: basic}", "connections.0.webhook_auth"),
        ("{name: a, crm: dynamics, client_id: x}", r"connection 'a': tenant_id"),
        ("{name: a, crm: dynamics, colour: red}", "connections.0.colour"),
    ],
)
def test_broken_file_entries_are_named(tmp_path: Path, entry: str, message: str) -> None:
    path = _write(tmp_path, f"connections:\n  - {entry}\n")
    settings = make_settings("sqlite+aiosqlite://", connections_file=str(path))
    with pytest.raises(ConnectionsFileError, match=message):
        check_configuration(settings)
