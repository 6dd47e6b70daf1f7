"""Dead letters counted per connection, and the status of given events, on SQLite and
PostgreSQL."""

from __future__ import annotations

from sync_rows import seed

from webhooks.store import inbox


async def test_dead_letters_are_counted_per_connection(sessions) -> None:
    await seed(sessions)
    async with sessions() as session:
        assert await inbox.dead_letters_by_connection(session) == {"default": 2, "segment": 1}


async def test_statuses_name_the_events_that_exist(sessions) -> None:
    await seed(sessions)
    async with sessions() as session:
        found = await inbox.statuses(session, event_ids=[1, 3, 999])
        assert found == {1: "dead", 3: "done"}
        assert await inbox.statuses(session, event_ids=[]) == {}
