"""One poison event among thousands: the batch finds it by halving (O(log n) extra
transactions, not one per event), processes everything else, and the poison never joins a
batch again: it is tried on its own until its attempts run out and it is dead-lettered with
its error. On SQLite and PostgreSQL.

The poison is injected where real ones broke the worker (folding facts into the store), so the
test does not depend on which bad values the edge happens to let through."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from testkit import native, store_native
from webhooks.clock import utcnow
from webhooks.store import facts
from webhooks.store.models import Account, InboxEvent
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

EVENTS = 5000
POISON_ACCOUNT = "poison"


class Poisoned:
    """facts.fold that fails whenever the poison account is among the events, counting every
    transaction's events so the test can bound the work the isolation costs."""

    def __init__(self) -> None:
        self.fold = facts.fold
        self.transactions: list[tuple[int, bool]] = []

    async def __call__(self, session, *, events, now, **options):
        poisoned = any(account.crm_id == POISON_ACCOUNT for account, _ in events)
        self.transactions.append((len(events), poisoned))
        if poisoned:
            raise ValueError("value too long for type character varying(64)")
        return await self.fold(session, events=events, now=now, **options)


@pytest.fixture
def poisoned(monkeypatch) -> Poisoned:
    fold = Poisoned()
    monkeypatch.setattr(facts, "fold", fold)
    return fold


class Clock:
    """The worker's clock, moved by the test (from now: the stored events are due)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


def _usage(count: int, *, prefix: str) -> list[dict[str, object]]:
    # 500 accounts, ten users each: a batch that coalesces like a real one.
    return [
        native("usage", str(i % 500), user=f"u{i % 10}", id=f"{prefix}-{i}") for i in range(count)
    ]


async def _statuses(service) -> dict[str, int]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(
            select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
        )
        return dict(rows.all())


async def test_one_poison_among_5000_is_isolated_by_halving_and_dead_lettered(
    service, poisoned
) -> None:
    events = _usage(EVENTS - 1, prefix="good")
    events.insert(2718, native("usage", POISON_ACCOUNT, user="u1", id="the-poison"))
    await store_native(service.runtime, events)
    clock = Clock()
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(batch_size=EVENTS, max_attempts=3, retry_base_seconds=10),
        clock=clock,
    )

    report = await pipeline.process_inbox()

    assert (report.claimed, report.processed, report.failed) == (EVENTS, EVENTS - 1, 1)
    assert await _statuses(service) == {"done": EVENTS - 1, "pending": 1}
    failing = [size for size, poisoned_ in poisoned.transactions if poisoned_]
    passing = [size for size, poisoned_ in poisoned.transactions if not poisoned_]
    assert sum(passing) == EVENTS - 1, "every good event folded exactly once"
    # Halving narrows down to the poison alone in O(log n) steps; the passing transactions
    # are the other halves. A half left after its sibling passed is split without being tried
    # whole, so the failing work stays under 2n events.
    levels = math.ceil(math.log2(EVENTS)) + 1
    assert len(failing) <= levels + 1
    assert len(passing) <= levels
    assert sum(failing) < 2 * EVENTS
    # Halves follow account lines: each of the 500 accounts is rescored about once, not once
    # per level (at most one account is cut in two at each level).
    assert report.rescored <= 500 + levels

    # Known to break batches now: on its own in every later pass, never with new events.
    poisoned.transactions.clear()
    for round_ in range(3):
        await store_native(service.runtime, _usage(1000, prefix=f"later-{round_}"))
        clock.now += timedelta(minutes=10)
        await pipeline.process_inbox()
    assert [size for size, poisoned_ in poisoned.transactions if poisoned_] == [1, 1]
    assert all(size > 1 for size, poisoned_ in poisoned.transactions if not poisoned_)

    assert await _statuses(service) == {"done": EVENTS - 1 + 3000, "dead": 1}
    async with service.runtime.sessions() as session:
        dead = (
            await session.execute(select(InboxEvent).where(InboxEvent.status == "dead"))
        ).scalar_one()
        accounts = await session.scalar(select(func.count()).select_from(Account))
    assert dead.payload["id"] == "the-poison"
    assert dead.attempts == 3
    assert "character varying(64)" in (dead.last_error or "")
    # The 500 and the poison's own, all known before (store_native declares their records):
    # the failing transactions left nothing behind.
    assert accounts == 501
