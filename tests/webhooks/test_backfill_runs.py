"""`crm-health backfill`: existing CRM records through the same pipeline, resumable."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from connector.errors import CRMRequestRejected
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from testkit import HUBSPOT_TOKEN
from webhooks.backfill import run_backfill
from webhooks.store import backfills, facts, inbox
from webhooks.store.models import Account

NOON = "2026-11-20T12:00:00.000Z"


@pytest.fixture
def crm() -> SandboxState:
    state = SandboxState()
    for n in range(130):  # more than one page of companies
        state.add_company({"name": f"Company {n}"})
    contact = state.add_object(
        "contacts", {"jobtitle": "Chief Executive Officer"}, {"companies": ["1"]}
    )
    for direction in ("INCOMING_EMAIL", "EMAIL", "EMAIL"):
        state.add_object(
            "emails",
            {"hs_timestamp": NOON, "hs_email_direction": direction},
            {"companies": ["1"], "contacts": [contact]},
        )
    state.add_object("tickets", {"hs_ticket_priority": "URGENT", "createdate": NOON},
                     {"companies": ["1"]})  # fmt: skip
    return state


async def _start(service_factory, crm: SandboxState):
    sandbox = create_sandbox_app(crm, access_token=HUBSPOT_TOKEN)
    service = await service_factory(crm_transport=httpx.ASGITransport(app=sandbox))
    return service, service.runtime.connections.get("default")


async def test_backfill_feeds_every_record_through_the_pipeline(service_factory, crm) -> None:
    service, connection = await _start(service_factory, crm)
    report = await run_backfill(sessions=service.runtime.sessions, connection=connection)
    assert report.stored == report.events == 130 + 1 + 3 + 1
    while (await service.runtime.pipeline.process_inbox()).claimed:
        pass
    async with service.runtime.sessions() as session:
        account = (await session.execute(select(Account).where(Account.crm_id == "1"))).scalar_one()
        snapshot = await facts.read_facts(session, accounts=[account], as_of=account.created_at)
        snap = snapshot[account.id]
        assert account.name == "Company 0"
        assert (snap.customer_interactions_90d, snap.total_interactions_90d) == (1, 3)
        assert (snap.contacts_engaged_90d, snap.executives_engaged_90d) == (1, 1)
        assert (snap.tickets_90d, snap.escalations_90d) == (1, 1)
        total = await session.scalar(select(Account.id).order_by(Account.id.desc()).limit(1))
        assert total == 130


async def test_backfill_run_again_stores_nothing_twice(service_factory, crm) -> None:
    service, connection = await _start(service_factory, crm)
    await run_backfill(sessions=service.runtime.sessions, connection=connection)
    again = await run_backfill(sessions=service.runtime.sessions, connection=connection)
    assert again.events == 0
    assert len(again.skipped_types) == 7
    restarted = await run_backfill(
        sessions=service.runtime.sessions, connection=connection, restart=True
    )
    assert (restarted.events, restarted.stored) == (135, 0), "same record versions: deduplicated"


async def test_interrupted_backfill_resumes_after_the_last_stored_page(
    service_factory, crm
) -> None:
    service, connection = await _start(service_factory, crm)
    # Let the first page of companies through, then break on the second.
    calls = {"n": 0}
    original = connection.connector.list_backfill_page

    async def flaky(*, object_type, after):
        calls["n"] += 1
        if calls["n"] == 2:
            raise CRMRequestRejected("boom", status=400)
        return await original(object_type=object_type, after=after)

    connection.connector.list_backfill_page = flaky
    with pytest.raises(CRMRequestRejected):
        await run_backfill(sessions=service.runtime.sessions, connection=connection)
    async with service.runtime.sessions() as session:
        held = await backfills.cursor(session, connection="default", object_type="companies")
        assert held is not None
        assert held.after is not None
        assert not held.done
        assert await inbox.count_by_status(session) == {"pending": 100}
    report = await run_backfill(sessions=service.runtime.sessions, connection=connection)
    assert report.stored == 35, "resumed at page two: 30 companies + contact + emails + ticket"


async def test_unknown_object_type_is_refused(service_factory, crm) -> None:
    service, connection = await _start(service_factory, crm)
    with pytest.raises(ValueError, match="cannot backfill \\['deals'\\]"):
        await run_backfill(
            sessions=service.runtime.sessions, connection=connection, object_types=["deals"]
        )
