"""Inbox repository on SQLite and PostgreSQL: dedup, claiming, leases, retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from webhooks.retry import RetrySchedule
from webhooks.store import inbox

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _events(*keys: str) -> list[inbox.NewEvent]:
    return [
        inbox.NewEvent(dedup_key=key, kind="company.creation", payload={"k": key}) for key in keys
    ]


async def _insert(sessions, *keys: str, connection: str = "default") -> int:
    async with sessions() as session, session.begin():
        return await inbox.insert_events(
            session, source="hubspot", connection=connection, events=_events(*keys), received_at=NOW
        )


async def test_redelivered_event_is_stored_once(sessions) -> None:
    assert await _insert(sessions, "1:1", "1:2") == 2
    assert await _insert(sessions, "1:2", "1:3") == 1
    async with sessions() as session:
        assert await inbox.count_by_status(session) == {"pending": 3}


async def test_same_event_id_on_another_connection_is_a_different_event(sessions) -> None:
    await _insert(sessions, "1:1", connection="a")
    assert await _insert(sessions, "1:1", connection="b") == 1


async def test_claim_takes_due_events_in_arrival_order_up_to_the_limit(sessions) -> None:
    await _insert(sessions, "a", "b", "c")
    async with sessions() as session, session.begin():
        claimed = await inbox.claim_batch(session, now=NOW, limit=2, lease_seconds=60)
        assert [row.payload["k"] for row in claimed] == ["a", "b"]
    async with sessions() as session, session.begin():
        claimed = await inbox.claim_batch(session, now=NOW, limit=10, lease_seconds=60)
        assert [row.payload["k"] for row in claimed] == ["c"]


async def test_claim_with_expired_lease_is_taken_again(sessions) -> None:
    await _insert(sessions, "a")
    async with sessions() as session, session.begin():
        await inbox.claim_batch(session, now=NOW, limit=10, lease_seconds=60)
    async with sessions() as session, session.begin():
        assert (
            await inbox.claim_batch(
                session, now=NOW + timedelta(seconds=30), limit=10, lease_seconds=60
            )
            == []
        )
    async with sessions() as session, session.begin():
        again = await inbox.claim_batch(
            session, now=NOW + timedelta(seconds=61), limit=10, lease_seconds=60
        )
        assert [row.payload["k"] for row in again] == ["a"]


async def test_a_claim_waits_for_the_one_under_way_and_takes_the_next_events(
    sessions, database_url: str
) -> None:
    """Claimers take turns instead of locking each row they choose: the second waits until
    the first commits, then takes what is left, and no event is held by both."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: its claims never overlap")
    await _insert(sessions, *(f"k{n}" for n in range(10)))
    async with sessions() as first, first.begin():
        taken = await inbox.claim_batch(first, now=NOW, limit=6, lease_seconds=60)

        async def second_claim() -> list[inbox.Claimed]:
            async with sessions() as second, second.begin():
                return await inbox.claim_batch(second, now=NOW, limit=6, lease_seconds=60)

        waiting = asyncio.create_task(second_claim())
        await asyncio.sleep(0.3)
        assert not waiting.done()
    rest = await asyncio.wait_for(waiting, timeout=10)
    assert [row.payload["k"] for row in taken] == [f"k{n}" for n in range(6)]
    assert [row.payload["k"] for row in rest] == [f"k{n}" for n in range(6, 10)]


async def test_a_claim_leaves_alone_an_event_settled_while_its_lease_ran_out(
    sessions, database_url: str
) -> None:
    """An event whose lease ran out is due again, but its slow worker may be settling it just
    as a second worker claims: the claim waits for the settle and, checking the row again,
    takes nothing."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: its claims never overlap")
    await _insert(sessions, "slow")
    async with sessions() as session, session.begin():
        [claimed] = await inbox.claim_batch(session, now=NOW, limit=1, lease_seconds=60)
    later = NOW + timedelta(seconds=61)

    async def claim_again() -> list[inbox.Claimed]:
        async with sessions() as other, other.begin():
            return await inbox.claim_batch(other, now=later, limit=1, lease_seconds=60)

    async with sessions() as slow, slow.begin():
        await inbox.settle(slow, event_ids=[claimed.id], status=inbox.DONE, now=later)
        retaken = asyncio.create_task(claim_again())
        await asyncio.sleep(0.3)
        assert not retaken.done()
    assert await asyncio.wait_for(retaken, timeout=10) == []
    async with sessions() as session:
        assert await inbox.count_by_status(session) == {"done": 1}


async def test_failed_attempt_backs_off_then_goes_to_the_dead_letters(sessions) -> None:
    await _insert(sessions, "a")
    async with sessions() as session, session.begin():
        [row] = await inbox.claim_batch(session, now=NOW, limit=1, lease_seconds=60)
        event_id = row.id
    for attempt in (1, 2):
        async with sessions() as session, session.begin():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event_id,
                error="boom",
                now=NOW,
                max_attempts=3,
                schedule=RetrySchedule(base_seconds=10, max_seconds=15),
            )
            assert status == "pending"
        async with sessions() as session, session.begin():
            assert await inbox.claim_batch(session, now=NOW, limit=1, lease_seconds=60) == []
            # 10 s, then 20 s capped at 15 s.
            due = NOW + timedelta(seconds=min(10 * 2 ** (attempt - 1), 15))
            assert len(await inbox.claim_batch(session, now=due, limit=1, lease_seconds=60)) == 1
    async with sessions() as session, session.begin():
        status = await inbox.mark_failed_attempt(
            session,
            event_id=event_id,
            error="boom",
            now=NOW,
            max_attempts=3,
            schedule=RetrySchedule(base_seconds=10, max_seconds=15),
        )
        assert status == "dead"
    async with sessions() as session:
        assert await inbox.count_by_status(session) == {"dead": 1}


async def test_dead_letter_replay_sends_events_back_with_fresh_attempts(sessions) -> None:
    await _insert(sessions, "a", "b")
    async with sessions() as session, session.begin():
        claimed = await inbox.claim_batch(session, now=NOW, limit=2, lease_seconds=60)
        await inbox.bury(session, errors={row.id: "poison" for row in claimed}, now=NOW)
    async with sessions() as session:
        dead = await inbox.dead_letters(session)
        assert [(row.status, row.last_error, row.attempts) for row in dead] == [
            ("dead", "poison", 1), ("dead", "poison", 1)
        ]  # fmt: skip
    async with sessions() as session, session.begin():
        assert await inbox.replay(session, event_ids=[dead[0].id], now=NOW) == 1
    async with sessions() as session, session.begin():
        again = await inbox.claim_batch(session, now=NOW, limit=5, lease_seconds=60)
        assert [row.id for row in again] == [dead[0].id]
    async with sessions() as session, session.begin():
        assert await inbox.replay(session, event_ids=None, now=NOW) == 1
