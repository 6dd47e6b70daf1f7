"""`crm-health reconcile`: a summary of a few lines (checked, matching, re-sent, missing, and who
sends the re-queued values), `--send` delivering them at once, and the expected failures (no CRM
configured, an unknown connection, a CRM refusing the token) as one clear line, not a
traceback. HubSpot is mocked at the transport with respx."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
import structlog
from typer.testing import CliRunner

from testkit import HUBSPOT_API, HUBSPOT_TOKEN
from webhooks.cli import cli
from webhooks.store import accounts, writeback
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import WritebackItem

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
BATCH_READ = f"{HUBSPOT_API}/crm/v3/objects/companies/batch/read"
BATCH_UPDATE = f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update"


@pytest.fixture
def cli_env(database_url, monkeypatch):
    """The command on the test's database with a HubSpot token; logging put back afterwards
    (the command configures it onto the runner's captured stderr)."""
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_API_BASE", HUBSPOT_API)
    monkeypatch.setenv("CRM_HEALTH_CRM_RETRY_MAX_ATTEMPTS", "1")
    config = structlog.get_config()
    yield database_url
    structlog.configure(**config)


def owe(url: str, scores: dict[str, int]) -> None:
    """Write-back rows, written already, for HubSpot companies with these scores."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                keys = [("default", "hubspot", company) for company in scores]
                locked = await accounts.lock_accounts(session, keys=keys, now=NOW)
                owed = [
                    writeback.Owed(
                        account_id=locked[key].id,
                        connection="default",
                        record_id=key[2],
                        fields={"health_score": scores[key[2]], "health_band": "healthy"},
                        fingerprint=str(scores[key[2]]),
                    )
                    for key in keys
                ]
                await writeback.stage(session, owed=owed, now=NOW)
                claimed = await writeback.claim_due(
                    session, connections=["default"], now=NOW, limit=100, lease_seconds=60
                )
                for _, account_id, version, *_ in claimed:
                    await writeback.mark_written(
                        session, account_id=account_id, version=version, now=NOW
                    )
        finally:
            await engine.dispose()

    asyncio.run(run())


def statuses(url: str) -> dict[str, str]:
    async def run() -> dict[str, str]:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                items = (await session.execute(WritebackItem.__table__.select())).all()
                return {item.record_id: item.status for item in items}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def hubspot_holds(values: dict[str, dict[str, str | None]]) -> Any:
    """A batch read answering these companies' properties; others are not found (207)."""

    def answer(request: httpx.Request) -> httpx.Response:
        asked = [item["id"] for item in json.loads(request.content)["inputs"]]
        results = [
            {
                "id": company,
                "properties": values[company],
                "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": "2026-12-01T00:00:00Z",
                "archived": False,
            }
            for company in asked
            if company in values
        ]
        missing = [company for company in asked if company not in values]
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            body["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some COMPANY objects",
                    "context": {"ids": missing},
                }
            ]
        return httpx.Response(207 if missing else 200, json=body)

    return answer


@respx.mock
def test_summary_counts_checked_matching_resent_and_missing_and_says_who_sends(cli_env):
    owe(cli_env, {"1": 80, "2": 60, "3": 40})
    respx.post(BATCH_READ).mock(
        side_effect=hubspot_holds(
            {
                "1": {"health_score": "80", "health_band": "healthy"},
                "2": {"health_score": "12", "health_band": "healthy"},
            }
        )
    )
    update = respx.post(BATCH_UPDATE)

    result = CliRunner().invoke(cli, ["reconcile"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines == [
        "default (hubspot): 3 checked, 1 matching, 1 re-sent, 1 missing in the CRM",
        "1 re-queued: a running worker (crm-health serve or worker) sends them, or run again "
        "with --send",
    ]
    assert update.call_count == 0
    assert statuses(cli_env)["2"] == "pending"


@respx.mock
def test_send_delivers_the_requeued_values_at_once(cli_env):
    owe(cli_env, {"1": 80, "2": 60})
    respx.post(BATCH_READ).mock(
        side_effect=hubspot_holds(
            {
                "1": {"health_score": "80", "health_band": "healthy"},
                "2": {"health_score": None, "health_band": "healthy"},
            }
        )
    )
    update = respx.post(BATCH_UPDATE).mock(
        return_value=httpx.Response(
            200,
            json={
                "status": "COMPLETE",
                "results": [{"id": "2", "properties": {"health_score": "60"}}],
            },
        )
    )

    result = CliRunner().invoke(cli, ["reconcile", "--send"])

    assert result.exit_code == 0, result.output
    assert "1 write-back(s) sent now" in result.stdout
    assert update.call_count == 1
    assert statuses(cli_env) == {"1": "done", "2": "done"}


@respx.mock
def test_a_refused_token_is_one_clear_line_and_exit_1(cli_env):
    owe(cli_env, {"1": 80})
    respx.post(BATCH_READ).mock(
        return_value=httpx.Response(
            401, json={"status": "error", "category": "INVALID_AUTHENTICATION"}
        )
    )

    result = CliRunner().invoke(cli, ["reconcile"])

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("default (hubspot): 0 checked")
    assert "refused with status 401 (credentials or scopes)" in line


def test_unknown_connection_is_one_line_and_exit_2(cli_env):
    result = CliRunner().invoke(cli, ["reconcile", "--connection", "nope"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "unknown connection 'nope'"


def test_no_crm_configured_is_one_line_and_exit_2(cli_env, monkeypatch):
    monkeypatch.delenv("CRM_HEALTH_HUBSPOT_ACCESS_TOKEN")
    result = CliRunner().invoke(cli, ["reconcile"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip().startswith("no CRM credentials configured")
