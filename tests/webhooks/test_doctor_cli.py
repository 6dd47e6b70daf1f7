"""`crm-health doctor`: end to end against the in-repo HubSpot sandbox (a provisioned portal with
mapping, events and write-backs passes; a missing mapping warns; a bad token fails), plus
respx cases for what the sandbox does not emulate (a scope refused, the CRM unreachable)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from functools import partial

import httpx
import pytest
import respx
import structlog
from typer.testing import CliRunner

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from testkit import HUBSPOT_API, HUBSPOT_SECRET, HUBSPOT_TOKEN
from webhooks.cli import cli
from webhooks.runtime import Runtime
from webhooks.store import accounts, inbox, writeback
from webhooks.store.db import create_engine, create_session_factory

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
MAPPING = {
    "CRM_HEALTH_HUBSPOT_SEATS_PROPERTY": "seats",
    "CRM_HEALTH_HUBSPOT_ARR_PROPERTY": "arr",
    "CRM_HEALTH_HUBSPOT_RENEWAL_DATE_PROPERTY": "renewal_date",
}


@pytest.fixture
def cli_env(database_url, monkeypatch):
    """The command on the test's migrated database with a HubSpot token and webhook secret;
    logging put back afterwards (the command configures it onto the runner's stderr)."""
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_CLIENT_SECRET", HUBSPOT_SECRET)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_API_BASE", HUBSPOT_API)
    monkeypatch.setenv("CRM_HEALTH_CRM_RETRY_MAX_ATTEMPTS", "1")
    config = structlog.get_config()
    yield database_url
    structlog.configure(**config)


@pytest.fixture
def sandbox(monkeypatch) -> SandboxState:
    """The in-repo HubSpot sandbox (accepting only HUBSPOT_TOKEN) behind every CRM call the
    command makes."""
    state = SandboxState()
    app = create_sandbox_app(state, access_token=HUBSPOT_TOKEN)
    build = Runtime.build
    monkeypatch.setattr(
        "webhooks.cli.ops.Runtime.build",
        partial(build, crm_transport=httpx.ASGITransport(app=app)),
    )
    return state


def provision() -> None:
    """`crm-health provision`, as the first-run guide has it, on the sandbox."""
    result = CliRunner().invoke(cli, ["provision"])
    assert result.exit_code == 0, result.output


def seed_event_and_write_back(url: str) -> None:
    """A HubSpot webhook event in the inbox and a write-back the CRM took."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await inbox.insert_events(
                    session,
                    source="hubspot",
                    connection="default",
                    events=[
                        inbox.NewEvent(
                            dedup_key="e1", kind="company.propertyChange", payload={"id": 1}
                        )
                    ],
                    received_at=NOW,
                )
                key = ("default", "hubspot", "101")
                locked = await accounts.lock_accounts(session, keys=[key], now=NOW)
                await writeback.stage(
                    session,
                    owed=[
                        writeback.Owed(
                            account_id=locked[key].id,
                            connection="default",
                            record_id="101",
                            fields={"health_score": 80},
                            fingerprint="80",
                        )
                    ],
                    now=NOW,
                )
                claimed = await writeback.claim_due(
                    session, connections=["default"], now=NOW, limit=10, lease_seconds=60
                )
                for _, account_id, version, *_ in claimed:
                    await writeback.mark_written(
                        session, account_id=account_id, version=version, now=NOW
                    )
        finally:
            await engine.dispose()

    asyncio.run(run())


def checks(output: str) -> dict[str, dict[str, str]]:
    report = json.loads(output)
    (connection,) = report["connections"]
    return {check["name"]: check for check in connection["checks"]}


def migrate() -> None:
    assert CliRunner().invoke(cli, ["migrate"]).exit_code == 0


def test_a_provisioned_sandbox_with_mapping_events_and_write_backs_passes(
    cli_env, sandbox, monkeypatch
) -> None:
    for name, value in MAPPING.items():
        monkeypatch.setenv(name, value)
    migrate()
    provision()
    seed_event_and_write_back(cli_env)
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    found = checks(result.stdout)
    assert {name: check["status"] for name, check in found.items()} == {
        "credentials": "ok",
        "access": "ok",
        "health fields": "ok",
        "property mapping": "ok",
        "webhooks": "ok",
        "last event": "ok",
        "last write-back": "ok",
    }
    assert "companies" in found["access"]["detail"]
    assert "2026-12-04 12:00 UTC" in found["last event"]["detail"]


def test_missing_mapping_warns_and_names_the_settings_but_passes(cli_env, sandbox) -> None:
    migrate()
    provision()
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["connection", "check", "status"]
    mapping = next(line for line in lines if "property mapping" in line)
    assert mapping.split()[:4] == ["default", "property", "mapping", "warn"]
    assert "CRM_HEALTH_HUBSPOT_SEATS_PROPERTY" in mapping
    assert "renewal alerts" in mapping
    assert any(line.split()[:4] == ["default", "last", "event", "warn"] for line in lines)


def test_unprovisioned_fields_fail_and_say_run_provision(cli_env, sandbox) -> None:
    migrate()
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 1, result.output
    fields = checks(result.stdout)["health fields"]
    assert fields["status"] == "fail"
    assert "health_score" in fields["detail"]
    assert "crm-health provision" in fields["action"]


def test_a_bad_token_fails_the_credentials_check(cli_env, sandbox, monkeypatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_ACCESS_TOKEN", "wrong-token")
    migrate()
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 1, result.output
    found = checks(result.stdout)
    assert found["credentials"]["status"] == "fail"
    assert "401" in found["credentials"]["detail"]
    # Nothing is read with a refused token: no fields or access verdict pretends otherwise.
    assert "health fields" not in found
    assert "access" not in found


@respx.mock
def test_a_refused_scope_names_the_object(cli_env) -> None:
    migrate()
    respx.get(f"{HUBSPOT_API}/crm/v3/objects/companies").mock(
        return_value=httpx.Response(200, json={"results": []})
    )
    respx.get(f"{HUBSPOT_API}/crm/v3/objects/contacts").mock(
        return_value=httpx.Response(
            403, json={"status": "error", "category": "MISSING_SCOPES", "message": "no scope"}
        )
    )
    respx.get(url__regex=rf"{HUBSPOT_API}/crm/v3/properties/companies.*").mock(
        return_value=httpx.Response(200, json={"results": []})
    )
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 1, result.output
    found = checks(result.stdout)
    assert found["credentials"]["status"] == "ok"
    assert found["access"]["status"] == "fail"
    assert found["access"]["detail"].startswith("reading contacts:")
    assert "scopes" in found["access"]["action"]


@respx.mock
def test_an_unreachable_crm_fails_with_one_line(cli_env) -> None:
    migrate()
    respx.route(host="hubspot.api.test").mock(side_effect=httpx.ConnectError("refused"))
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1, result.output
    credentials = next(line for line in result.stdout.splitlines() if " credentials " in line)
    assert "could not be reached" in credentials
    assert "Traceback" not in result.output


def test_no_connection_configured_says_what_to_set(database_url, monkeypatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    config = structlog.get_config()
    try:
        migrate()
        result = CliRunner().invoke(cli, ["doctor"])
    finally:
        structlog.configure(**config)
    assert result.exit_code == 1
    assert "no CRM connection configured" in result.stderr
