"""A CRM outage of hours, as operators meet them: the CRM's host is gone (connection refused)
for six hours while webhooks and product usage keep arriving. Nothing may end failed or
dead-lettered, the worker probes the CRM at most every CRM_HEALTH_WORKER_RETRY_MAX_SECONDS
(not once per chunk per pass), and once the CRM is back every account's health lands within
one retry interval. The worker, the client and the sandbox share one virtual clock, so six
hours cost seconds."""

from __future__ import annotations

import pytest

from testkit import daily_user, post_hubspot, store_native
from virtual_crm import (
    BATCH_READ,
    assert_health_landed,
    contact_creation,
    make_world,
    rows,
)
from webhooks.store.models import ContactFact, InboxEvent, WritebackItem

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")

HOURS = 3600.0
RETRY_MAX = 900.0
COMPANIES = 150


@pytest.fixture
async def world(service):
    built = await make_world(
        service, companies=COMPANIES, retry_base_seconds=5.0, retry_max_seconds=RETRY_MAX
    )
    built.connector.max_batch_size = 100
    yield built
    await built.connector.aclose()


async def test_six_hour_outage_loses_nothing_and_health_lands_after_it(service, world) -> None:
    contacts = [
        world.crm.add_object(
            "contacts", {"email": f"c{i}@acme.test", "jobtitle": "CEO"}, {"companies": [company]}
        )
        for i, company in enumerate(world.companies[:5])
    ]
    world.wire.down = True
    # Webhooks whose records must be read from the CRM, and usage that needs no CRM at all.
    batch = [contact_creation(i, contact) for i, contact in enumerate(contacts)]
    assert (await post_hubspot(service.client, batch)).status_code == 202
    await store_native(service.runtime, [e for c in world.companies for e in daily_user(c)])

    # A pass every two minutes: the worker polls far more often, but no state changes between.
    await world.run_until(6 * HOURS, every=120)

    events = await rows(service, InboxEvent)
    assert not [e for e in events if e.status == "dead"], "an outage dead-letters nothing"
    waiting = [e for e in events if e.kind == "contact.creation"]
    assert {(e.status, e.attempts) for e in waiting} == {("pending", 0)}, "reads wait, no attempt"
    items = await rows(service, WritebackItem)
    assert len(items) == COMPANIES
    assert {i.status for i in items} == {"pending"}, "no write-back ends failed"
    assert all(i.pending_since is not None for i in items)
    # One probe per backoff step (5 s doubling to 15 min): about 30 in six hours, each a call
    # the client tries three times; one read probe per step likewise. Not one call per chunk
    # of 100 per pass, which would be thousands.
    probes = world.wire.refused
    assert probes <= 2 * 3 * (6 * HOURS / RETRY_MAX + 12), probes

    world.wire.down = False
    await world.run_until(6 * HOURS + RETRY_MAX + 60, every=30)

    items = await rows(service, WritebackItem)
    assert {i.status for i in items} == {"done"}
    assert all(i.pending_since is None for i in items)
    await assert_health_landed(world)
    events = await rows(service, InboxEvent)
    assert {e.status for e in events} == {"done"}
    assert {c.contact for c in await rows(service, ContactFact)} >= set(contacts)
    reads = [call for call in world.wire.calls if call.path.endswith(BATCH_READ)]
    assert reads, "the waiting webhooks were hydrated once the CRM was back"
