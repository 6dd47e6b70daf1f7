"""The sync status summary: each connection's state (ok, behind, failing, needs attention), the
commands that retry what is stuck, and which connections are listed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sync_rows import NOW, seed

from webhooks import sync_status
from webhooks.store.models import InboxEvent, WritebackItem


async def _by_name(sessions, **options) -> dict[str, sync_status.ConnectionSync]:
    async with sessions() as session:
        items = await sync_status.connections(session, now=NOW, **options)
    return {item.connection: item for item in items}


async def test_failed_rows_and_dead_letters_need_attention(sessions) -> None:
    await seed(sessions)
    items = await _by_name(sessions)
    assert sorted(items) == ["default", "emea", "segment"]
    default = items["default"]
    assert default.status == "needs_attention"
    assert default.dead_letters == 2
    assert default.writebacks.oldest_pending_age_seconds == 40 * 60
    assert default.commands == [
        "crm-health writeback retry --connection default --failed",
        "crm-health writeback retry --connection default --failing",
        "crm-health dead-letters",
        "crm-health replay --all",
    ]
    # Dead letters alone are enough, for a connection that writes nothing back.
    assert items["segment"].status == "needs_attention"
    assert items["segment"].writebacks.pending == 0
    assert all(map(sync_status.needs_action, items.values()))


async def test_failing_without_failed_rows_reads_failing(sessions) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        await session.execute(
            update(WritebackItem).where(WritebackItem.status == "failed").values(status="done")
        )
        await session.execute(update(InboxEvent).values(status="done"))
    items = await _by_name(sessions)
    assert items["default"].status == "failing"
    assert sync_status.needs_action(items["default"])
    assert items["emea"].status == "ok"
    assert not sync_status.needs_action(items["emea"])


async def test_values_owed_for_long_with_nothing_failing_read_behind(sessions) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        await session.execute(
            update(WritebackItem).where(WritebackItem.status == "failed").values(status="done")
        )
        await session.execute(update(WritebackItem).values(attempts=0))
        await session.execute(update(InboxEvent).values(status="done"))
    items = await _by_name(sessions)
    assert items["default"].status == "behind"
    assert not sync_status.needs_action(items["default"])
    assert items["default"].commands == []
    assert items["emea"].status == "ok", "one minute owed is a normal delay"


async def test_only_lists_that_connection_even_when_it_has_nothing(sessions) -> None:
    await seed(sessions)
    assert list(await _by_name(sessions, only="emea")) == ["emea"]
    [item] = (await _by_name(sessions, only="apac")).values()
    assert (item.status, item.writebacks.pending, item.dead_letters) == ("ok", 0, 0)
    assert item.writebacks.last_success_at is None


async def test_included_connections_are_listed_without_rows(sessions) -> None:
    assert list(await _by_name(sessions, include=["apac"])) == ["apac"]


async def test_report_adds_the_inbox_backlog(sessions) -> None:
    await seed(sessions)
    report = await sync_status.report(sessions, now=NOW + timedelta(seconds=30))
    assert report.inbox.counts == {"pending": 1, "processing": 0, "unmatched": 0, "dead": 3}
    assert report.inbox.oldest_pending_age_seconds == 30
