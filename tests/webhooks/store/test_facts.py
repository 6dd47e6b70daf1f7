"""Facts store on SQLite and PostgreSQL: folding events and reading windowed snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from connector.model import (
    AccountAttributes,
    Collaboration,
    ContactUpsert,
    Interaction,
    NormalisedEvent,
    Ticket,
    Usage,
)
from webhooks.store import accounts, facts
from webhooks.store.models import ContactFact

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
KEY = ("default", "hubspot", "42")


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def fold(sessions, *events: NormalisedEvent, key=KEY) -> None:
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[key], now=NOW)
        await facts.fold(session, events=[(locked[key], e) for e in events], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))


async def snapshot(sessions, key=KEY):
    async with sessions() as session:
        locked = await accounts.lock_accounts(session, keys=[key], now=NOW)
        account = locked[key]
        return (await facts.read_facts(session, accounts=[account], as_of=NOW))[account.id]


async def test_account_without_any_source_has_no_data_anywhere(sessions) -> None:
    await fold(sessions, AccountAttributes(account="42", at=ago(1), attributes={"name": "Acme"}))
    snap = await snapshot(sessions)
    assert snap.active_users_30d is None
    assert snap.total_interactions_90d is None
    assert snap.collaboration_events_180d is None
    assert snap.tickets_90d is None
    assert snap.attributes == {"name": "Acme"}


async def test_source_seen_elsewhere_gives_this_account_a_real_zero(sessions) -> None:
    # Both the source (tickets) and the account go back further than the 90-day window.
    other = ("default", "hubspot", "7")
    await fold(sessions, Ticket(account="7", at=ago(100), ticket="t", priority="low"), key=other)
    await fold(sessions, AccountAttributes(account="42", at=ago(100), attributes={}))
    snap = await snapshot(sessions)
    assert (snap.tickets_90d, snap.escalations_90d) == (0, 0)
    assert snap.active_users_30d is None


@pytest.mark.parametrize(
    ("source_days", "account_days"),
    [(100, 5), (5, 100)],
    ids=["account-5-days-old", "source-5-days-old"],
)
async def test_a_zero_is_no_data_before_the_account_was_visible_for_the_window(
    sessions, source_days: float, account_days: float
) -> None:
    # Issue 20, finding 4: absent records of a new account (or of a new source) are no data.
    other = ("default", "hubspot", "7")
    await fold(
        sessions, Ticket(account="7", at=ago(source_days), ticket="t", priority="low"), key=other
    )
    await fold(sessions, AccountAttributes(account="42", at=ago(account_days), attributes={}))
    snap = await snapshot(sessions)
    assert (snap.tickets_90d, snap.escalations_90d) == (None, None)
    # A count above zero is evidence whatever the age.
    await fold(sessions, Ticket(account="42", at=ago(1), ticket="t2", priority="high"))
    snap = await snapshot(sessions)
    assert (snap.tickets_90d, snap.escalations_90d) == (1, 1)


async def test_usage_windows_count_distinct_users_and_user_days(sessions) -> None:
    await fold(
        sessions,
        Usage(account="42", at=ago(1), user="a"),
        Usage(account="42", at=ago(1.01), user="a"),  # same day: counted once
        Usage(account="42", at=ago(2), user="a"),
        Usage(account="42", at=ago(3), user="b"),
        Usage(account="42", at=ago(40), user="a"),
        Usage(account="42", at=ago(45), user="c"),
        Usage(account="42", at=ago(50), user="d"),
        Usage(account="42", at=ago(70), user="e"),  # outside 60 days
    )
    snap = await snapshot(sessions)
    assert (snap.active_users_30d, snap.active_users_prev_30d) == (2, 3)
    assert snap.mean_daily_active_users_30d == pytest.approx(3 / 30)
    assert snap.last_usage_at == ago(1)


async def test_interactions_count_direction_people_and_executives(sessions) -> None:
    await fold(
        sessions,
        ContactUpsert(account="42", at=ago(100), contact="ceo", title="CEO", executive=True),
        ContactUpsert(account="42", at=ago(100), contact="ops", title="Ops"),
        ContactUpsert(account="42", at=ago(100), contact="gone", executive=True),
        ContactUpsert(account="42", at=ago(5), contact="gone", executive=True, left=True),
        Interaction(account="42", at=ago(1), channel="email", direction="customer", contact="ceo"),
        Interaction(account="42", at=ago(2), channel="call", direction="ours", contact="ops"),
        Interaction(account="42", at=ago(3), channel="call", direction="ours", contact="ops"),
        Interaction(account="42", at=ago(4), channel="email", direction="ours", contact="gone"),
        Interaction(account="42", at=ago(95), channel="note", direction="customer", contact="x"),
    )
    snap = await snapshot(sessions)
    assert (snap.customer_interactions_90d, snap.total_interactions_90d) == (1, 4)
    assert snap.contacts_engaged_90d == 2, "ceo and ops; the contact who left does not count"
    assert snap.executives_engaged_90d == 1


async def test_identified_interaction_seen_again_replaces_instead_of_counting_twice(
    sessions,
) -> None:
    first = Interaction(account="42", at=ago(2), channel="meeting", direction="ours",
                        source_id="meetings:9")  # fmt: skip
    await fold(sessions, first)
    await fold(sessions, Interaction(account="42", at=ago(1), channel="meeting",
                                     direction="customer", source_id="meetings:9"))  # fmt: skip
    snap = await snapshot(sessions)
    assert (snap.customer_interactions_90d, snap.total_interactions_90d) == (1, 1)


async def test_older_contact_change_arriving_late_does_not_undo_a_newer_one(sessions) -> None:
    await fold(sessions, ContactUpsert(account="42", at=ago(1), contact="c", executive=True))
    await fold(sessions, ContactUpsert(account="42", at=ago(9), contact="c", executive=False))
    await fold(sessions, Interaction(account="42", at=ago(1), channel="call",
                                     direction="ours", contact="c"))  # fmt: skip
    assert (await snapshot(sessions)).executives_engaged_90d == 1


async def test_a_contact_is_first_seen_at_its_earliest_event_even_within_one_batch(
    sessions,
) -> None:
    # Joined 70 days ago and left 15 days ago, both told in one batch (a backfill): the batch
    # keeps the latest values, but the contact was gained 70 days ago, not on leaving.
    await fold(
        sessions,
        ContactUpsert(account="42", at=ago(15), contact="dana", title="Ops", left=True),
        ContactUpsert(account="42", at=ago(70), contact="dana", title="Ops"),
    )
    await fold(sessions, ContactUpsert(account="42", at=ago(2), contact="dana", title="COO"))
    async with sessions() as session:
        row = (await session.execute(select(ContactFact))).scalar_one()
    assert (row.first_seen_at, row.title, row.left_at) == (ago(70), "COO", None)


async def test_tickets_and_escalations_in_90_days_each_ticket_once(sessions) -> None:
    await fold(
        sessions,
        Ticket(account="42", at=ago(10), ticket="1", priority="low"),
        Ticket(account="42", at=ago(5), ticket="1", priority="urgent"),  # escalated later
        Ticket(account="42", at=ago(20), ticket="2", priority="high"),
        Ticket(account="42", at=ago(30), ticket="3", priority="medium"),
        Ticket(account="42", at=ago(120), ticket="4", priority="urgent"),
    )
    snap = await snapshot(sessions)
    assert (snap.tickets_90d, snap.escalations_90d) == (3, 2)


async def test_collaboration_counts_180_days(sessions) -> None:
    await fold(
        sessions,
        Collaboration(account="42", at=ago(10), kind="beta"),
        Collaboration(account="42", at=ago(170), kind="referral"),
        Collaboration(account="42", at=ago(200), kind="case_study"),
    )
    assert (await snapshot(sessions)).collaboration_events_180d == 2


async def test_arr_a_year_ago_and_latest_attribute_wins_out_of_order(sessions) -> None:
    await fold(
        sessions,
        AccountAttributes(account="42", at=ago(400), attributes={"arr": "100000"}),
        AccountAttributes(account="42", at=ago(200), attributes={"arr": "110000"}),
        AccountAttributes(account="42", at=ago(1), attributes={"arr": "90000", "seats": "50"}),
    )
    await fold(sessions, AccountAttributes(account="42", at=ago(30), attributes={"seats": "10"}))
    snap = await snapshot(sessions)
    assert (snap.arr, snap.arr_12m_ago, snap.seats) == (90000.0, 100000.0, 50)
