"""CRM fields a custom indicator reads (source kind crm_property), on SQLite and PostgreSQL:
read from the account's attributes as a number or as days from or to a date, kept in the
attribute history so a backtest reads the value in force then, and no data where the record
has no usable value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.base import property_attribute
from connector.model import AccountAttributes
from signals.config import CrmPropertySource, FactReads
from webhooks.store import accounts, facts

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
KEY = ("default", "hubspot", "42")
NPS = CrmPropertySource(hubspot="nps_score", salesforce="NPS__c", value="number")
SINCE_QBR = CrmPropertySource(hubspot="last_qbr_date", value="days_since")
UNTIL_RENEWAL = CrmPropertySource(
    dynamics="new_contractend", hubspot="contract_end", value="days_until"
)
READS = FactReads(sources=(NPS, SINCE_QBR, UNTIL_RENEWAL))


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def record(days_ago: float, **properties: str | None) -> AccountAttributes:
    return AccountAttributes(
        account="42",
        at=ago(days_ago),
        attributes={property_attribute(name): value for name, value in properties.items()},
    )


async def fold(sessions, *events: AccountAttributes) -> None:
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
        await facts.fold(session, events=[(locked[KEY], e) for e in events], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))


async def custom(sessions, *, as_of: datetime = NOW, historical: bool = False):
    async with sessions() as session:
        locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
        account = locked[KEY]
        found = await facts.read_facts(
            session, accounts=[account], as_of=as_of, historical=historical, reads=READS
        )
        return [found[account.id].custom[source.key] for source in READS.sources]


async def test_a_number_and_dates_are_read_from_the_record(sessions) -> None:
    await fold(
        sessions,
        record(
            3,
            nps_score="42",
            last_qbr_date=ago(40).isoformat(),
            # HubSpot keeps a date as epoch milliseconds.
            contract_end=str(int((NOW + timedelta(days=90)).timestamp() * 1000)),
        ),
    )
    assert await custom(sessions) == [42.0, pytest.approx(40.0), pytest.approx(90.0)]


async def test_a_record_without_a_usable_value_is_no_data(sessions) -> None:
    await fold(sessions, record(3, nps_score="n/a", last_qbr_date="31/12/2026"))
    assert await custom(sessions) == [None, None, None]
    await fold(sessions, record(2, nps_score="nan", last_qbr_date=""))
    assert await custom(sessions) == [None, None, None]


async def test_a_date_already_past_is_zero_days_until_it(sessions) -> None:
    await fold(sessions, record(3, contract_end=ago(5).date().isoformat()))
    assert (await custom(sessions))[2] == 0.0


async def test_a_backtest_reads_the_value_in_force_then(sessions) -> None:
    await fold(sessions, record(100, nps_score="10"))
    await fold(sessions, record(20, nps_score="55"))
    await fold(sessions, record(1, nps_score=None))
    assert (await custom(sessions))[0] is None
    assert (await custom(sessions, as_of=ago(50), historical=True))[0] == 10.0
    assert (await custom(sessions, as_of=ago(10), historical=True))[0] == 55.0
    # Before the first value the record had none.
    assert (await custom(sessions, as_of=ago(150), historical=True))[0] is None
