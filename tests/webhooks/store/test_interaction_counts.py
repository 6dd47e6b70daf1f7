"""Interactions per window (count, customer-started, engaged people, executives), grouped per
contact before the contacts join: the same counts as per interaction, on a seeded random
history, open and closed windows, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from testkit import bare_accounts
from webhooks.store import facts
from webhooks.store.models import Account, ContactFact, InteractionFact, core_table

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNTS = range(1, 9)


async def test_counts_equal_a_count_per_interaction(sessions) -> None:
    rng = random.Random(90)
    # Contacts c0..c5 are known (some left, some executives); c6, c7 and None are not.
    contacts = {
        (n, f"c{k}"): (
            rng.random() < 0.3,
            NOW - timedelta(days=rng.randrange(200)) if rng.random() < 0.4 else None,
        )
        for n in ACCOUNTS
        for k in range(6)
    }
    interactions = [
        (n, NOW - timedelta(days=rng.uniform(0, 200)), rng.choice(("customer", "ours")),
         rng.choice([None, *(f"c{k}" for k in range(8))]))
        for n in ACCOUNTS
        for _ in range(rng.randrange(0, 80))
    ]  # fmt: skip
    async with sessions() as session, session.begin():
        await session.execute(insert(core_table(Account)), bare_accounts(ACCOUNTS, created_at=NOW))
        await session.execute(
            insert(core_table(ContactFact)),
            [
                {"account_id": n, "contact": c, "executive": executive, "left_at": left,
                 "updated_at": NOW}
                for (n, c), (executive, left) in contacts.items()
            ],
        )  # fmt: skip
        await session.execute(
            insert(core_table(InteractionFact)),
            [
                {"account_id": n, "at": at, "channel": "email", "direction": d, "contact": c}
                for n, at, d, c in interactions
            ],
        )
    for since, until in ((NOW - timedelta(days=90), None),
                         (NOW - timedelta(days=150), NOW - timedelta(days=60))):  # fmt: skip
        expected: dict[int, tuple[int, int, int, int]] = {}
        for n in ACCOUNTS:
            seen = [
                (d, c) for m, at, d, c in interactions
                if m == n and at > since and (until is None or at <= until)
            ]  # fmt: skip
            if not seen:
                continue
            people = {c for _, c in seen if c is not None and present(contacts, (n, c), until)}
            expected[n] = (
                len(seen),
                sum(d == "customer" for d, _ in seen),
                len(people),
                sum(contacts.get((n, c), (False, None))[0] for c in people),
            )
        async with sessions() as session:
            assert await facts._interactions(session, ACCOUNTS, since, until) == expected


def present(
    contacts: dict[tuple[int, str], tuple[bool, datetime | None]],
    key: tuple[int, str],
    until: datetime | None,
) -> bool:
    """Still there (at `until`), or unknown to the contacts facts."""
    _, left = contacts.get(key, (False, None))
    return left is None or (until is not None and left > until)
