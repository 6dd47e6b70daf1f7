"""A batch that changes nothing about an account leaves its row alone: no UPDATE of `accounts`
for a usage day already recorded, an attribute re-sent with its value and an older or equal
time, or a rescore that gives the same health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from sqlalchemy import event, select

from testkit import HUBSPOT_API, Service, store_native
from webhooks.store import inbox
from webhooks.store.models import Account

pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence", "crm")


@pytest.fixture
def crm() -> Iterator[None]:
    """HubSpot's batch update, accepting every record: write-backs succeed."""

    def accept(request: httpx.Request) -> httpx.Response:
        ids = [item["id"] for item in json.loads(request.content)["inputs"]]
        return httpx.Response(200, json={"status": "COMPLETE", "results": [{"id": i} for i in ids]})

    with respx.mock(assert_all_called=False) as router:
        router.post(f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update").mock(side_effect=accept)
        yield


class AccountUpdates:
    """Counts UPDATE statements on `accounts` (one per row of an executemany)."""

    def __init__(self, service: Service) -> None:
        self.rows = 0
        self._engine = service.runtime.engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement: str, parameters, _context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE ACCOUNTS"):
            self.rows += len(parameters) if executemany else 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


@pytest.fixture
def updates(service: Service) -> Iterator[AccountUpdates]:
    counter = AccountUpdates(service)
    yield counter
    counter.close()


def at(moment: datetime, account: str, event_type: str, **fields: object) -> dict[str, object]:
    """A native event document at `moment`."""
    return {"type": event_type, "account": account, "at": moment.isoformat(), **fields}


# Noon yesterday: an hour either side is the same UTC day.
NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
ATTRIBUTES = {"name": "Acme", "seats": "10", "segment": "smb"}


async def test_a_batch_that_changes_nothing_updates_no_account_row(
    service: Service, updates: AccountUpdates
) -> None:
    first = [
        at(NOON - timedelta(days=3), "7", "usage", user="u1"),
        at(NOON, "7", "usage", user="u1"),
        at(NOON, "7", "usage", user="u2"),
        at(NOON, "7", "account", attributes=ATTRIBUTES),
    ]
    await store_native(service.runtime, first)
    await service.runtime.pipeline.run_once()
    assert updates.rows >= 1
    async with service.runtime.sessions() as session:
        before = (await session.execute(select(Account))).scalar_one()
    updates.rows = 0

    again = [
        at(NOON, "7", "usage", user="u1"),
        at(NOON - timedelta(hours=1), "7", "usage", user="u2"),
        at(NOON, "7", "account", attributes=ATTRIBUTES),
        at(NOON - timedelta(days=1), "7", "account", attributes=ATTRIBUTES),
    ]
    await store_native(service.runtime, again)
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        assert await inbox.count_by_status(session) == {"done": len(first) + len(again)}
    assert updates.rows == 0
    async with service.runtime.sessions() as session:
        after = (await session.execute(select(Account))).scalar_one()
    assert (after.health_updated_at, after.score, after.attributes) == (
        before.health_updated_at,
        before.score,
        before.attributes,
    )


async def test_an_account_that_did_change_is_still_written(
    service: Service, updates: AccountUpdates
) -> None:
    await store_native(service.runtime, [at(NOON, "7", "account", attributes=ATTRIBUTES)])
    await service.runtime.pipeline.run_once()
    updates.rows = 0
    later = at(NOON + timedelta(hours=1), "7", "account", attributes={"segment": "enterprise"})
    await store_native(service.runtime, [later, at(NOON, "8", "account", attributes=ATTRIBUTES)])
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        segments = dict((await session.execute(select(Account.crm_id, Account.segment))).all())
    assert segments == {"7": "enterprise", "8": "smb"}
    # Account 7's new segment, and account 8 (new: its first scoring).
    assert updates.rows == 2
