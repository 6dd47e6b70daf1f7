"""The portfolio's reads on SQLite and PostgreSQL: the 91 days of band counts and ARR against a
day-by-day count made here, the week's movers, the renewals window, the facets, and another
connection's accounts never counted. Rows are written straight into the tables."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from webhooks import portfolio
from webhooks.accounts_view import AccountQuery
from webhooks.errors import InvalidFields
from webhooks.store import portfolio as queries
from webhooks.store.account_views import AccountFilter
from webhooks.store.models import (
    Account,
    AttributeChange,
    CRMOwnerContact,
    HealthSnapshot,
    core_table,
)

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)
TODAY = NOW.date()
FIRST = TODAY - timedelta(days=90)
BANDS = ("healthy", "neutral", "at_risk", "onboarding", "unknown")


def account_row(n: int, **values: Any) -> dict[str, Any]:
    """An `accounts` row of the default connection, live, a customer, nothing else known."""
    row: dict[str, Any] = {
        "id": n, "connection": "default", "crm": "hubspot", "crm_id": str(n),
        "name": f"Account {n}", "attributes": {}, "band": "unknown", "score": None,
        "customer": True, "created_at": NOW - timedelta(days=400), "segment": None,
        "owner": None, "arr": None, "renewal_date": None, "deleted_at": None,
        "not_found_at": None,
    }  # fmt: skip
    row.update(values)
    return row


def health(n: int, at: datetime, band: str, score: int | None = 50) -> dict[str, Any]:
    return {"account_id": n, "computed_at": at, "band": band, "score": score}


def arr_change(n: int, at: datetime, value: str | None) -> dict[str, Any]:
    return {"account_id": n, "name": "arr", "at": at, "value": value}


async def write(
    sessions,
    accounts: Sequence[dict[str, Any]],
    history: Sequence[dict[str, Any]] = (),
    arr: Sequence[dict[str, Any]] = (),
    owners: Sequence[dict[str, Any]] = (),
) -> None:
    async with sessions() as session, session.begin():
        for model, rows in (
            (Account, accounts),
            (HealthSnapshot, history),
            (AttributeChange, arr),
            (CRMOwnerContact, owners),
        ):
            if rows:
                await session.execute(insert(core_table(model)), list(rows))


def day_end(index: int) -> datetime:
    return datetime.combine(FIRST + timedelta(days=index + 1), time(), UTC)


async def read_portfolio(sessions, **filters: Any) -> portfolio.Portfolio:
    return await portfolio.portfolio(
        sessions,
        connection="default",
        query=AccountQuery(**filters),
        now=NOW,
        currency="EUR",
        record_url=lambda record: f"https://crm.test/{record}",
    )


# --- the history against a day-by-day count --------------------------------------------------


_ARR_TEXT = re.compile(r"[ \t\n\r]*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,2})?[ \t\n\r]*")


def arr_of(text: str | None) -> float:
    """An ARR as the portfolio reads attribute_history's text: a JSON number from 0 to 1e13,
    exponent of two digits at most (0: none or unreadable)."""
    if text is None or len(text) > 100 or not _ARR_TEXT.fullmatch(text):
        return 0.0
    number = float(text)
    return number if 0 <= number <= 1e13 else 0.0


def counted_by_hand(
    accounts: list[dict[str, Any]], history: list[dict[str, Any]], arr: list[dict[str, Any]]
) -> dict[tuple[int, str], tuple[int, float]]:
    """What the history should hold, counted day by day: each account in the band of its last
    health row by the end of the day, with the ARR of its last ARR row by then when its ARR
    changed in the window (else its column)."""
    start, end = day_end(-1), day_end(90)
    found: dict[tuple[int, str], tuple[int, float]] = {}
    for index in range(91):
        cut = day_end(index)
        for account in accounts:
            if account["connection"] != "default" or not account["customer"]:
                continue
            if account["deleted_at"] is not None:
                continue
            mine = sorted(
                (row["computed_at"], row["id"], row["band"])
                for row in history
                if row["account_id"] == account["id"] and row["computed_at"] < cut
            )
            if not mine:
                continue
            band = mine[-1][2]
            changes = [row for row in arr if row["account_id"] == account["id"]]
            if any(start <= row["at"] < end for row in changes):
                held = sorted(
                    (row["at"], row["id"], row["value"]) for row in changes if row["at"] < cut
                )
                value = arr_of(held[-1][2]) if held else 0.0
            else:
                value = account["arr"] or 0.0
            count, total = found.get((index, band), (0, 0.0))
            found[(index, band)] = (count + 1, total + value)
    return {key: (count, round(total, 2)) for key, (count, total) in found.items()}


def random_book(
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Accounts with histories made to find the edges: rows before the window and none, rows at
    the window's first moment and at midnights, several on a day, ARR changed in the window or
    not, unreadable ARR, deleted accounts, non-customers, another connection."""
    rng = random.Random(seed)
    accounts, history, arr = [], [], []
    edges = [day_end(-1), day_end(-1) - timedelta(microseconds=1), day_end(44), day_end(89)]
    for n in range(1, 61):
        accounts.append(
            account_row(
                n,
                connection="emea" if n % 13 == 0 else "default",
                customer=n % 11 != 0,
                deleted_at=NOW if n % 17 == 0 else None,
                arr=rng.choice([None, 1000.0, 2500.5, 40000.0]),
            )
        )
        moments = [NOW - timedelta(days=rng.uniform(0, 200)) for _ in range(rng.randrange(0, 6))]
        if rng.random() < 0.3:
            moments.append(rng.choice(edges))
        if moments and rng.random() < 0.3:
            moments.append(moments[0] + timedelta(minutes=5))  # a second change that day
        for at in moments:
            history.append(health(n, min(at, NOW), rng.choice(BANDS)))
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            at = NOW - timedelta(days=rng.uniform(0, 200))
            value = rng.choice(["1000", "2500.5", " 750 ", "1e+4", "n/a", "1e400", "-5", None])
            arr.append(arr_change(n, at, value))
    for number, row in enumerate(history, start=1):
        row["id"] = number
    for number, row in enumerate(arr, start=1):
        row["id"] = number
    return accounts, history, arr


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_history_matches_a_count_made_day_by_day(sessions, seed) -> None:
    accounts, history, arr = random_book(seed)
    await write(sessions, accounts, history, arr)
    where = AccountFilter(connection="default", customer=True)
    async with sessions() as session:
        moves = [
            move
            for changed in (False, True)
            for move in await queries.day_moves(
                session, where=where, first=FIRST, last=TODAY, arr_changed=changed
            )
        ]
    assert queries.band_days(moves, first=FIRST, last=TODAY) == counted_by_hand(
        accounts, history, arr
    )


async def test_an_account_healthy_for_60_days_then_at_risk_counts_in_each_band_on_its_days(
    sessions,
) -> None:
    turned = FIRST + timedelta(days=60)
    await write(
        sessions,
        [account_row(1, band="at_risk", score=30, arr=80000.0)],
        [
            health(1, NOW - timedelta(days=200), "healthy", 80) | {"id": 1},
            health(1, datetime.combine(turned, time(9), UTC), "at_risk", 30) | {"id": 2},
        ],
        [
            arr_change(1, NOW - timedelta(days=300), "50000") | {"id": 1},
            # ARR grew 20 days into the window, while the account was healthy.
            arr_change(1, datetime.combine(FIRST + timedelta(days=20), time(12), UTC), "80000")
            | {"id": 2},
        ],
    )
    history = (await read_portfolio(sessions)).history
    assert len(history) == 91
    assert (history[0].day, history[-1].day) == (FIRST, TODAY)
    for index, day in enumerate(history):
        expected_band = "healthy" if index < 60 else "at_risk"
        expected_arr = 50000.0 if index < 20 else 80000.0
        assert list(day.bands) == list(BANDS)
        for band, counted in day.bands.items():
            if band == expected_band:
                assert (counted.accounts, counted.arr) == (1, expected_arr), (index, band)
            else:
                assert (counted.accounts, counted.arr) == (0, 0.0), (index, band)


async def test_an_account_not_scored_yet_is_in_no_band_until_its_first_health(sessions) -> None:
    born = FIRST + timedelta(days=30)
    await write(
        sessions,
        [account_row(1, band="neutral", arr=10.0), account_row(2, band="unknown")],
        [health(1, datetime.combine(born, time(23, 59), UTC), "neutral") | {"id": 1}],
    )
    history = (await read_portfolio(sessions)).history
    assert [day.bands["neutral"].accounts for day in history[29:32]] == [0, 1, 1]
    assert sum(day.bands[band].accounts for day in history for band in BANDS) == 61


# --- totals, bands, movers, renewals, facets --------------------------------------------------


async def test_totals_and_bands_count_live_customer_accounts_only(sessions) -> None:
    await write(
        sessions,
        [
            account_row(1, band="healthy", arr=100.0),
            account_row(2, band="at_risk", arr=40.0),
            account_row(3, band="at_risk"),
            account_row(4, band="neutral", arr=5.5),
            account_row(5, band="healthy", arr=1000.0, customer=False),
            account_row(6, band="healthy", arr=1000.0, deleted_at=NOW),
            account_row(7, band="healthy", arr=1000.0, not_found_at=NOW),
            account_row(8, band="healthy", arr=1000.0, connection="emea"),
        ],
    )
    found = await read_portfolio(sessions)
    assert found.currency == "EUR"
    assert found.totals.model_dump() == {
        "accounts": 4,
        "arr": 145.5,
        "accounts_without_arr": 1,
        "accounts_at_risk": 2,
        "arr_at_risk": 40.0,
    }
    assert [(b.band, b.accounts, b.arr) for b in found.bands] == [
        ("healthy", 1, 100.0),
        ("neutral", 1, 5.5),
        ("at_risk", 2, 40.0),
        ("onboarding", 0, 0.0),
        ("unknown", 0, 0.0),
    ]


async def test_movers_are_the_largest_score_changes_of_the_week(sessions) -> None:
    week_ago = NOW - timedelta(days=7)
    accounts, history = [], []

    def scored(n: int, before: int | None, now: int | None, **values: Any) -> None:
        accounts.append(account_row(n, score=now, band="neutral", **values))
        if before is not None:
            history.append(health(n, week_ago - timedelta(days=3), "healthy", before))
        if now is not None:
            history.append(health(n, NOW - timedelta(days=1), "neutral", now))

    scored(1, 80, 40, arr=10.0)  # -40
    scored(2, 20, 70)  # +50
    scored(3, 60, 30, arr=5.0)  # -30, tie with 4 and 5: larger ARR first, then id
    scored(4, 60, 90, arr=9.0)  # +30
    scored(5, 60, 90)  # +30, no ARR
    scored(6, None, 10)  # new this week: no score a week ago
    scored(7, 50, None)  # no score now
    scored(8, 50, 50)  # back where it was
    for n in range(9, 20):
        scored(n, 50, 51 + n % 3)  # small moves: 10 movers at most
    # Moved earlier than the week: the score a week ago is already the new one.
    accounts.append(account_row(20, score=5, band="at_risk"))
    history += [
        health(20, week_ago - timedelta(days=30), "healthy", 95),
        health(20, week_ago - timedelta(hours=1), "at_risk", 5),
    ]
    accounts.append(account_row(21, score=0, band="at_risk", connection="emea"))
    history.append(health(21, week_ago - timedelta(days=3), "healthy", 100))
    history.append(health(21, NOW - timedelta(days=1), "at_risk", 0))
    await write(sessions, accounts, [row | {"id": i} for i, row in enumerate(history, 1)])

    movers = (await read_portfolio(sessions)).movers
    assert movers.days == 7
    assert [(m.id, m.change) for m in movers.items] == [
        ("2", 50), ("1", -40), ("4", 30), ("3", -30), ("5", 30),
        ("11", 3), ("14", 3), ("17", 3), ("10", 2), ("13", 2),
    ]  # fmt: skip
    first = movers.items[1]
    assert (first.score, first.band, first.score_before, first.band_before) == (
        40, "neutral", 80, "healthy",
    )  # fmt: skip
    assert first.record_url == "https://crm.test/1"


async def test_renewals_run_from_today_to_today_plus_90_days(sessions) -> None:
    days = {1: -1, 2: 0, 3: 45, 4: 90, 5: 91, 6: 10, 7: 10}
    await write(
        sessions,
        [
            account_row(
                n,
                renewal_date=TODAY + timedelta(days=ahead),
                arr=float(n),
                band=band,
                owner="o1" if n == 6 else None,
            )
            for (n, ahead), band in zip(days.items(), BANDS * 2, strict=False)
        ]
        + [account_row(8, renewal_date=TODAY, connection="emea")],
        owners=[
            {
                "connection": "default",
                "owner_id": "o1",
                "email": None,
                "name": "Ann Lee",
                "found": True,
                "fetched_at": NOW,
            },
        ],
    )
    renewals = (await read_portfolio(sessions)).renewals
    assert (renewals.days, renewals.total) == (90, 5)
    assert [(item.id, item.days_left) for item in renewals.items] == [
        ("2", 0), ("7", 10), ("6", 10), ("3", 45), ("4", 90),
    ]  # fmt: skip
    assert renewals.items[2].owner_name == "Ann Lee"
    assert [(b.band, b.accounts, b.arr) for b in renewals.bands] == [
        ("healthy", 1, 6.0), ("neutral", 2, 9.0), ("at_risk", 1, 3.0), ("onboarding", 1, 4.0),
        ("unknown", 0, 0.0),
    ]  # fmt: skip


async def test_facets_count_every_live_customer_account_whatever_the_filters(sessions) -> None:
    await write(
        sessions,
        [
            account_row(1, segment="enterprise", owner="o1", band="healthy"),
            account_row(2, segment="enterprise", owner="o2", band="at_risk"),
            account_row(3, segment="smb", owner="o1", band="at_risk"),
            account_row(4, segment=None, owner=None),
            account_row(5, segment="gone", owner="o3", deleted_at=NOW),
            account_row(6, segment="other", owner="o4", connection="emea"),
        ],
        owners=[
            {
                "connection": "default",
                "owner_id": "o1",
                "email": None,
                "name": "Ann Lee",
                "found": True,
                "fetched_at": NOW,
            },
            {
                "connection": "default",
                "owner_id": "o2",
                "email": None,
                "name": "Gone",
                "found": False,
                "fetched_at": NOW,
            },
            {
                "connection": "emea",
                "owner_id": "o1",
                "email": None,
                "name": "Not her",
                "found": True,
                "fetched_at": NOW,
            },
        ],
    )
    found = await read_portfolio(sessions, bands=["healthy"], segments=["smb"])
    assert found.totals.accounts == 0
    assert [f.model_dump() for f in found.facets.segments] == [
        {"value": "enterprise", "accounts": 2},
        {"value": "smb", "accounts": 1},
    ]
    assert [f.model_dump() for f in found.facets.owners] == [
        {"value": "o1", "name": "Ann Lee", "accounts": 2},
        {"value": "o2", "name": None, "accounts": 1},
    ]


async def test_filters_narrow_every_part_but_the_facets(sessions) -> None:
    await write(
        sessions,
        [
            account_row(
                1,
                band="at_risk",
                segment="smb",
                owner="o1",
                arr=10.0,
                score=20,
                renewal_date=TODAY + timedelta(days=5),
            ),
            account_row(
                2,
                band="at_risk",
                segment="enterprise",
                owner="o1",
                arr=20.0,
                score=20,
                renewal_date=TODAY + timedelta(days=50),
            ),
            account_row(
                3,
                band="healthy",
                segment="smb",
                owner="o2",
                arr=40.0,
                score=90,
                renewal_date=TODAY + timedelta(days=5),
            ),
        ],
        [
            health(n, NOW - timedelta(days=100), band, score) | {"id": n}
            for n, band, score in ((1, "at_risk", 20), (2, "at_risk", 20), (3, "healthy", 90))
        ],
    )
    found = await read_portfolio(
        sessions, bands=["at_risk,healthy"], owners=["o1"], renewal_within_days=30
    )
    assert (found.totals.accounts, found.totals.arr) == (1, 10.0)
    assert found.history[-1].bands["at_risk"].accounts == 1
    assert [item.id for item in found.renewals.items] == ["1"]
    assert len(found.facets.owners) == 2


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"bands": ["great"]}, "band"),
        ({"renewal_within_days": -1}, "renewal_within_days"),
        ({"renewal_within_days": 3651}, "renewal_within_days"),
    ],
)
async def test_a_filter_that_cannot_be_is_refused_naming_it(sessions, filters, field) -> None:
    with pytest.raises(InvalidFields, match=field):
        await read_portfolio(sessions, **filters)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000", 1000.0), ("2500.5", 2500.5), ("50000.0", 50000.0), ("1e+4", 10000.0),
        ("1E2", 100.0), ("5e-1", 0.5), (" 750 ", 750.0), ("0", 0.0), ("n/a", 0.0),
        ("12abc", 0.0), ("1.2.3", 0.0), ("-5", 0.0), ("+5", 0.0), ("007", 0.0), ("7.", 0.0),
        (".5", 0.0), ("1e400", 0.0), ("1e99", 0.0), ("1e-999", 0.0), ("e5", 0.0), ("1e", 0.0),
        ("", 0.0), ("1" * 120, 0.0), ("1-2", 0.0), ("0x10", 0.0), ("[1]", 0.0),
        ('"5"', 0.0), ("true", 0.0), ("NaN", 0.0), ("Infinity", 0.0), ("2e13", 0.0),
    ],
)  # fmt: skip
async def test_arr_history_text_reads_alike_on_both_databases(sessions, text, expected) -> None:
    # Changed in the window, so the history (not the column) gives the ARR.
    await write(
        sessions,
        [account_row(1, band="healthy", arr=123.0)],
        [health(1, NOW - timedelta(days=200), "healthy") | {"id": 1}],
        [arr_change(1, NOW - timedelta(days=3), text) | {"id": 1}],
    )
    history = (await read_portfolio(sessions)).history
    assert history[-1].bands["healthy"].arr == expected
    assert arr_of(text) == expected
