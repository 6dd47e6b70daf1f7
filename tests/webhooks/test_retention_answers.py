"""Retention keeps what scoring, backtests and the health readers use: a book of accounts
with four years of facts and a year of outcomes gives the same backtest, the same scores and
the same 90-day health views before and after a prune with the default policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from connector.model import (
    AccountAttributes,
    Collaboration,
    ContactUpsert,
    Interaction,
    NormalisedEvent,
    Outcome,
    Ticket,
    Usage,
)
from signals.config import HealthConfig
from signals.scoring import score
from webhooks import calibration, retention
from webhooks.store import account_views, accounts, facts
from webhooks.store.models import (
    Account,
    AttributeChange,
    HealthSnapshot,
    InteractionFact,
    OutcomeFact,
)

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
START = NOW - timedelta(days=4 * 365)
ACCOUNTS = 12
HORIZONS = [30, 90, 180]


def book(rng: random.Random, crm_id: str, index: int) -> list[NormalisedEvent]:
    """Four years of one account: weekly use and contact, monthly tickets, quarterly ARR
    changes, collaboration now and then; some accounts fade in the last year."""
    events: list[NormalisedEvent] = []
    fading = index % 3 == 0
    arr = 10_000.0 * (1 + index)
    for week in range(4 * 52):
        at = START + timedelta(weeks=week, hours=rng.randint(0, 100))
        late = at > NOW - timedelta(days=365)
        dying = fading and late
        users = 1 if dying else 3 + index % 4
        for user in range(users):
            if rng.random() < (0.2 if dying else 0.8):
                events.append(Usage(account=crm_id, at=at, user=f"u{user}"))
        if not dying or rng.random() < 0.1:
            events.append(
                Interaction(
                    account=crm_id,
                    at=at,
                    channel="email",
                    direction="customer" if rng.random() < 0.5 else "ours",
                    contact=f"c{week % 4}",
                )
            )
        if week % 4 == 0 or dying:
            events.append(
                Ticket(
                    account=crm_id,
                    at=at,
                    ticket=f"t{week}",
                    priority="urgent" if dying else "low",
                )
            )
        if week % 9 == 0:
            events.append(Collaboration(account=crm_id, at=at, kind="feedback"))
        if week % 13 == 0:
            arr *= 0.5 if dying else 1.1
            events.append(
                AccountAttributes(
                    account=crm_id, at=at, attributes={"arr": f"{arr:.0f}", "seats": "20"}
                )
            )
    for contact in range(4):
        events.append(
            ContactUpsert(account=crm_id, at=START, contact=f"c{contact}", executive=contact == 0)
        )
    outcome_at = NOW - timedelta(days=rng.randint(20, 300))
    events.append(
        Outcome(account=crm_id, at=outcome_at, outcome="churned" if fading else "renewed")
    )
    events.sort(key=lambda event: event.at)
    return events


async def load_book(sessions) -> None:
    rng = random.Random(24)
    for index in range(ACCOUNTS):
        key = ("default", "hubspot", str(1000 + index))
        events = book(rng, key[2], index)
        async with sessions() as session, session.begin():
            locked = await accounts.lock_accounts(session, keys=[key], now=START)
            # Folded as of the start: every kind of fact has been sent from then on.
            await facts.fold(session, events=[(locked[key], e) for e in events], now=START)
            await accounts.save(session, accounts=list(locked.values()))


async def load_health(sessions) -> None:
    """Two years of health history: several rows a day, a configuration change now and then."""
    rng = random.Random(7)
    async with sessions() as session, session.begin():
        ids = list((await session.execute(select(Account.id))).scalars())
        rows: list[dict[str, Any]] = []
        for account_id in ids:
            at = NOW - timedelta(days=800)
            while at < NOW:
                days = (NOW - at).days
                rows.append(
                    {
                        "account_id": account_id, "computed_at": at,
                        "score": rng.randint(20, 90), "band": rng.choice(["healthy", "neutral"]),
                        "config_version": f"v{days // 200}",
                    }
                )  # fmt: skip
                at += timedelta(hours=rng.randint(3, 30))
        await session.execute(insert(HealthSnapshot), rows)


async def answers(sessions) -> dict[str, Any]:
    """Everything the kept data must answer the same: the backtest, every account's score
    now, and the health readers within 90 days."""
    async with sessions() as session:
        result = await calibration.run_backtest(
            session,
            connection="default",
            request=calibration.BacktestRequest(horizons=list(HORIZONS)),
            now=NOW,
        )
    # What it measured, not when it did.
    result.pop("computed_at")
    async with sessions() as session:
        book_accounts = list(
            (await session.execute(select(Account).order_by(Account.id))).scalars()
        )
        snapshots = await facts.read_facts(session, accounts=book_accounts, as_of=NOW)
        config = HealthConfig()
        scores = {}
        for account in book_accounts:
            health = score(snapshots[account.id], config)
            scores[account.crm_id] = (
                health.score, health.band, health.signals, list(health.drivers),
            )  # fmt: skip
        ids = [account.id for account in book_accounts]
        # What the backtest reads for each case and horizon, compared fact by fact (its result
        # only counts bands).
        moments = sorted(
            {calibration._as_of(outcome.at, days) for outcome in await outcomes_of(session)
             for days in HORIZONS}
        )  # fmt: skip
        cases = {
            as_of: await facts.read_facts(
                session, accounts=book_accounts, as_of=as_of, historical=True
            )
            for as_of in moments
        }
        first = await facts.first_records(session, accounts=book_accounts)
        history = await account_views.history(
            session, account_ids=ids, since=NOW - timedelta(days=90)
        )
        earlier = {
            days: await accounts.scores_at_or_before(
                session, account_ids=ids, at=NOW - timedelta(days=days)
            )
            for days in (1, 7, 30, 60, 89)
        }
    return {
        "backtest": result,
        "scores": scores,
        "cases": cases,
        "first": first,
        "history": history,
        "earlier": earlier,
    }


async def outcomes_of(session) -> list[OutcomeFact]:
    return list((await session.execute(select(OutcomeFact))).scalars())


async def rows(sessions, model: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_prune_with_defaults_changes_no_backtest_score_or_recent_health(sessions) -> None:
    await load_book(sessions)
    await load_health(sessions)
    before = await answers(sessions)
    flagged = sum(h["flagged_churned"] for h in before["backtest"]["horizons"])
    assert before["backtest"]["outcomes"] == ACCOUNTS
    # The book is no trivial one: cases are scored, and some churn is seen coming.
    assert flagged > 0
    counts = {model: await rows(sessions, model) for model in (InteractionFact, AttributeChange)}
    health_rows = await rows(sessions, HealthSnapshot)

    report = await retention.prune(sessions, policy=retention.RetentionPolicy(), now=NOW)

    assert report.rows["interactions"] > 0
    assert report.rows["attribute_history"] > 0
    assert report.rows["health_history"] > 0
    assert await rows(sessions, InteractionFact) < counts[InteractionFact]
    assert await rows(sessions, AttributeChange) < counts[AttributeChange]
    assert await rows(sessions, HealthSnapshot) < health_rows
    after = await answers(sessions)
    assert after["backtest"] == before["backtest"]
    assert after["scores"] == before["scores"]
    assert after["cases"] == before["cases"]
    # Each account's first record is still before every moment a backtest scores it at.
    earliest_moment = min(before["cases"])
    assert all(first <= earliest_moment for first in after["first"].values())
    assert after["history"] == before["history"]
    assert after["earlier"] == before["earlier"]
