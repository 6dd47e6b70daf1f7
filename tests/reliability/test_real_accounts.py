"""Accounts are real (issue 20, finding 1): usage, interactions or tickets never create an
account; events for an unknown id wait as unmatched with the reason and count once the record
arrives; a write-back the CRM answers with "no such record" marks the account not found in the
CRM instead of retrying forever, and such an account is not listed or scored."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from testkit import HUBSPOT_TOKEN, crm_accounts, native, store_native
from webhooks import sync_status
from webhooks.inbox_kinds import BACKFILL_SOURCE
from webhooks.store import accounts, inbox
from webhooks.store.models import Account, InboxEvent, UsageMonth, WritebackItem
from webhooks.usage_import import UsageCsv, import_usage

ADMIN = "bootstrap-token-123456"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


async def _drain(service) -> None:
    while (await service.runtime.pipeline.process_inbox()).claimed:
        pass


async def _crm_ids(service) -> set[str]:
    async with service.runtime.sessions() as session:
        return set((await session.execute(select(Account.crm_id))).scalars().all())


async def _unmatched(service) -> dict[str, dict[str, Any]]:
    response = await service.client.get("/api/v1/ingest/unmatched", headers=HEADERS)
    assert response.status_code == 200, response.text
    return {f"{item['kind']}:{item['id']}": item for item in response.json()["items"]}


async def test_a_mistyped_account_id_creates_no_account_and_waits_with_the_reason(
    service_factory,
) -> None:
    service = await service_factory(admin_token=ADMIN)
    await crm_accounts(service.runtime, ["296"])
    events = [
        native("usage", "296", user="u1"),
        native("usage", "999999", user="u1"),
        native("interaction", "999999", channel="call", direction="customer"),
        native("ticket", "999999", ticket="t-1", priority="urgent"),
    ]
    response = await service.client.post("/ingest/events", json={"events": events}, headers=HEADERS)
    assert response.status_code == 202
    await _drain(service)
    assert await _crm_ids(service) == {"296"}
    waiting = (await _unmatched(service))["account:999999"]
    assert waiting["events"] == 3
    assert "no account '999999'" in waiting["reason"]
    listed = await service.client.get("/api/v1/accounts", headers=HEADERS)
    assert [item["id"] for item in listed.json()["items"]] == ["296"]
    report = await sync_status.report(service.runtime.sessions, now=datetime.now(UTC))
    [default] = [item for item in report.connections if item.connection == "default"]
    assert default.unknown_accounts == 1
    assert "crm-health unmatched --connection default" in default.commands


async def test_a_csv_of_thousands_with_one_mistyped_id_lands_the_good_rows(
    service_factory,
) -> None:
    service = await service_factory(hubspot_access_token=None, hubspot_client_secret=None)
    await crm_accounts(service.runtime, [str(n) for n in range(100)])
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    lines = ["account,at,type,user"]
    lines += [f"{n % 100},{day}T10:00:00Z,usage,u{n}" for n in range(5000)]
    lines.insert(2718, f"1000000,{day}T10:00:00Z,usage,typo")
    summary = await import_usage(
        rows=UsageCsv(io.BytesIO("\n".join(lines).encode())),
        sessions=service.runtime.sessions,
        connection="default",
    )
    assert summary.stored == 5001
    await _drain(service)
    async with service.runtime.sessions() as session:
        users = await session.scalar(select(func.count()).select_from(UsageMonth))
        waiting = (
            await session.execute(select(InboxEvent).where(InboxEvent.status == "unmatched"))
        ).scalar_one()
    assert users == 5000
    assert waiting.payload["account"] == "1000000"
    assert waiting.match_key == "account:1000000"
    assert "no account '1000000'" in (waiting.last_error or "")
    assert "1000000" not in await _crm_ids(service)


async def test_waiting_events_fold_in_when_the_record_arrives(service_factory) -> None:
    # No CRM connector: a native `account` event is the record.
    service = await service_factory(
        admin_token=ADMIN, hubspot_access_token=None, hubspot_client_secret=None
    )
    await store_native(service.runtime, [native("usage", "555", user="u1")], known_accounts=False)
    await _drain(service)
    assert await _crm_ids(service) == set()
    await store_native(
        service.runtime,
        [native("account", "555", attributes={"name": "Acme"})],
        known_accounts=False,
    )
    await _drain(service)
    assert await _crm_ids(service) == {"555"}
    async with service.runtime.sessions() as session:
        users = (await session.execute(select(UsageMonth.user))).scalars().all()
    assert users == ["u1"]
    assert await _unmatched(service) == {}


async def test_a_native_account_event_is_the_record_only_without_a_crm_connector(
    service_factory,
) -> None:
    # With a CRM connector the CRM holds the records: a native account event for an id it
    # has not sent waits like any other event.
    service = await service_factory(admin_token=ADMIN)
    await store_native(
        service.runtime,
        [native("account", "31337", attributes={"name": "Not in the CRM"})],
        known_accounts=False,
    )
    await _drain(service)
    assert await _crm_ids(service) == set()
    assert "account:31337" in await _unmatched(service)


async def test_a_write_back_the_crm_does_not_have_marks_the_account_not_found(
    service_factory,
) -> None:
    crm = SandboxState()
    real = crm.add_company({"name": "Acme"})
    sandbox = create_sandbox_app(crm, access_token=HUBSPOT_TOKEN)
    service = await service_factory(
        admin_token=ADMIN, crm_transport=httpx.ASGITransport(app=sandbox)
    )
    [connector] = service.runtime.connections.writers().values()
    await connector.ensure_fields()
    # An account from before records were checked (or a record deleted since) that HubSpot
    # does not have.
    await store_native(
        service.runtime,
        [native("usage", real, user="u1"), native("usage", "999999", user="u1")],
    )
    await _drain(service)
    await service.runtime.pipeline.deliver_writebacks()
    async with service.runtime.sessions() as session:
        phantom = (
            await session.execute(select(Account).where(Account.crm_id == "999999"))
        ).scalar_one()
        due = (
            await session.execute(
                select(WritebackItem.status).where(WritebackItem.account_id == phantom.id)
            )
        ).scalar_one()
    assert phantom.not_found_at is not None
    assert "COMPANY" in (phantom.not_found_reason or "").upper()
    assert due == "failed"
    # Never tried again: nothing is due.
    assert await service.runtime.pipeline.deliver_writebacks() == 0
    detail = await service.client.get("/api/v1/accounts/999999", headers=HEADERS)
    assert detail.json()["not_found_in_crm"] is not None
    listed = await service.client.get("/api/v1/accounts", headers=HEADERS)
    assert [item["id"] for item in listed.json()["items"]] == [real]
    report = await sync_status.report(service.runtime.sessions, now=datetime.now(UTC))
    [default] = [item for item in report.connections if item.connection == "default"]
    assert (default.not_found_in_crm, default.status) == (1, "needs_attention")
    # New usage does not rescore it.
    await store_native(service.runtime, [native("usage", "999999", user="u2")])
    report_after = await service.runtime.pipeline.process_inbox()
    assert report_after.rescored == 0


async def test_an_account_not_found_is_scored_again_once_the_crm_sends_its_record(
    service_factory,
) -> None:
    service = await service_factory(admin_token=ADMIN)
    await store_native(service.runtime, [native("usage", "4711", user="u1")])
    await _drain(service)
    async with service.runtime.sessions() as session, session.begin():
        [account_id] = (
            await session.execute(select(Account.id).where(Account.crm_id == "4711"))
        ).scalars()
        await accounts.mark_not_found(
            session, account_ids={account_id: "404"}, now=datetime.now(UTC)
        )
        # The record comes back from the CRM (a backfill page, as a webhook would).
        await inbox.insert_events(
            session,
            source=BACKFILL_SOURCE,
            connection="default",
            events=[
                inbox.NewEvent(
                    dedup_key="backfill:companies:4711",
                    kind="account",
                    payload=native("account", "4711", attributes={"name": "Restored"}),
                )
            ],
            received_at=datetime.now(UTC),
        )
    report = await service.runtime.pipeline.process_inbox()
    assert report.rescored == 1
    async with service.runtime.sessions() as session:
        account = (
            await session.execute(select(Account).where(Account.crm_id == "4711"))
        ).scalar_one()
    assert (account.not_found_at, account.name) == (None, "Restored")
