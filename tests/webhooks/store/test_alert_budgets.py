"""The daily limit's count per alert channel and UTC day, on SQLite and PostgreSQL: leave
within the limit, the overflow digest always sent, failed messages given back, two workers."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from sqlalchemy import select

from webhooks.store import alerts
from webhooks.store.models import AlertChannelBudget

DAY = date(2026, 12, 5)


async def _take(sessions, *, wanted: int, forced: int = 0, limit: int = 3, day=DAY) -> int:
    async with sessions() as session, session.begin():
        return await alerts.take_leave(
            session, channel="ops", day=day, wanted=wanted, forced=forced, limit=limit
        )


async def _counts(sessions) -> dict[tuple[str, date], int]:
    async with sessions() as session:
        rows = await session.execute(select(AlertChannelBudget))
        return {(row.channel, row.day): row.sent for row in rows.scalars()}


async def test_leave_is_given_up_to_the_limit_and_no_further(sessions) -> None:
    assert await _take(sessions, wanted=2) == 2
    assert await _take(sessions, wanted=2) == 1
    assert await _take(sessions, wanted=1) == 0
    assert await _counts(sessions) == {("ops", DAY): 3}


async def test_the_overflow_digest_is_counted_even_past_the_limit(sessions) -> None:
    assert await _take(sessions, wanted=3) == 3
    assert await _take(sessions, wanted=0, forced=1) == 0
    assert await _counts(sessions) == {("ops", DAY): 4}


async def test_each_day_and_channel_counts_apart(sessions) -> None:
    assert await _take(sessions, wanted=3) == 3
    assert await _take(sessions, wanted=3, day=DAY + timedelta(days=1)) == 3
    async with sessions() as session, session.begin():
        other = await alerts.take_leave(
            session, channel="pager", day=DAY, wanted=3, forced=0, limit=3
        )
    assert other == 3


async def test_leave_of_messages_not_sent_is_given_back(sessions) -> None:
    assert await _take(sessions, wanted=3) == 3
    async with sessions() as session, session.begin():
        await alerts.give_back_leave(session, channel="ops", day=DAY, count=2)
    assert await _take(sessions, wanted=3) == 2
    async with sessions() as session, session.begin():
        await alerts.give_back_leave(session, channel="ops", day=DAY, count=9)
    assert await _counts(sessions) == {("ops", DAY): 0}, "never below zero"


async def test_earlier_days_are_forgotten(sessions) -> None:
    await _take(sessions, wanted=1, day=DAY - timedelta(days=1))
    await _take(sessions, wanted=1)
    async with sessions() as session, session.begin():
        await alerts.forget_leave_before(session, day=DAY)
    assert await _counts(sessions) == {("ops", DAY): 1}


async def test_a_second_worker_waits_for_the_first_workers_count(sessions) -> None:
    """Counting rows would let both workers see the same free messages; the channel's row
    for the day makes the second wait until the first commits, then count after it."""
    assert await _take(sessions, wanted=0) == 0  # the day's row exists: nothing to insert
    async with sessions() as first, first.begin():
        granted = await alerts.take_leave(
            first, channel="ops", day=DAY, wanted=2, forced=0, limit=3
        )
        assert granted == 2
        second = asyncio.create_task(_take(sessions, wanted=2))
        await asyncio.sleep(0.5)
        assert not second.done(), "the second worker waits for the first one's transaction"
    assert await second == 1
    assert await _counts(sessions) == {("ops", DAY): 3}
