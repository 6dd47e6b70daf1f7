"""Survey answers in the facts store, on SQLite and PostgreSQL: folded, deduplicated, read
as the account's NPS and CSAT, live and as of a past moment, and as custom indicators'
survey sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from connector.model import AccountAttributes, NormalisedEvent, SurveyResponse
from signals.config import NO_READS, FactReads, SurveySource
from webhooks.store import accounts, facts
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import SurveyFact

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
KEY = ("default", "hubspot", "42")


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def nps(score: float, days: float, who: str, comment: str | None = None) -> SurveyResponse:
    return SurveyResponse(
        account="42", at=ago(days), kind="nps", score=score, respondent=who, comment=comment
    )


async def fold(sessions, *events: NormalisedEvent) -> None:
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
        await facts.fold(session, events=[(locked[KEY], e) for e in events], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))


async def snapshot(
    sessions, *, as_of: datetime = NOW, historical: bool = False, reads: FactReads = NO_READS
):
    async with sessions() as session:
        locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
        account = locked[KEY]
        found = await facts.read_facts(
            session, accounts=[account], as_of=as_of, historical=historical, reads=reads
        )
        return found[account.id]


async def test_an_account_without_answers_has_no_voice(sessions) -> None:
    await fold(sessions, nps(9, 400, "old@acme.test"))
    snap = await snapshot(sessions)
    assert (snap.nps_90d, snap.nps_latest, snap.csat_90d, snap.csat_latest) == (None,) * 4


async def test_answers_are_read_as_nps_and_csat_and_a_resend_is_one_answer(sessions) -> None:
    await fold(
        sessions,
        nps(10, 80, "a@acme.test"),
        nps(2, 50, "b@acme.test", comment="Support <b>never</b> answers"),
        nps(8, 10, "c@acme.test"),
        SurveyResponse(account="42", at=ago(5), kind="csat", score=4, respondent="a@acme.test"),
    )
    # The survey tool sends b's answer again, corrected: it replaces the first.
    await fold(sessions, nps(3, 50, "b@acme.test", comment="Support never answers"))
    snap = await snapshot(sessions)
    assert snap.nps_90d == pytest.approx(100 * (1 - 1) / 3)
    assert snap.nps_latest == 8
    assert snap.csat_90d is None  # one answer: below the minimum
    assert snap.csat_latest == 4
    async with sessions() as session:
        held = (
            await session.execute(
                select(SurveyFact.respondent, SurveyFact.score, SurveyFact.comment)
                .where(SurveyFact.kind == "nps")
                .order_by(SurveyFact.at)
            )
        ).all()
    assert [tuple(row) for row in held] == [
        ("a@acme.test", 10.0, None),
        ("b@acme.test", 3.0, "Support never answers"),
        ("c@acme.test", 8.0, None),
    ]


async def test_a_past_moment_sees_only_the_answers_given_by_then(sessions) -> None:
    await fold(
        sessions,
        nps(10, 120, "a@acme.test"),
        nps(9, 110, "b@acme.test"),
        nps(10, 100, "c@acme.test"),
        nps(0, 20, "a@acme.test"),
    )
    then = await snapshot(sessions, as_of=ago(60), historical=True)
    assert (then.nps_90d, then.nps_latest) == (100.0, 10.0)
    now = await snapshot(sessions)
    # Today only the detractor is within 90 days: no NPS, but the latest answer is theirs.
    assert (now.nps_90d, now.nps_latest) == (None, 0.0)


async def test_answers_are_read_only_for_connections_that_ever_sent_one(
    sessions, database_url: str
) -> None:
    other = ("emea", "hubspot", "42")
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[KEY, other], now=NOW)
        await facts.fold(session, events=[(locked[KEY], nps(9, 5, "a@acme.test"))], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))
    statements: list[str] = []
    engine = create_engine(database_url)
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement),
    )
    try:
        async with create_session_factory(engine)() as session:
            locked = await accounts.lock_accounts(session, keys=[KEY, other], now=NOW)
            statements.clear()
            await facts.read_facts(session, accounts=[locked[other]], as_of=NOW)
            assert not any("survey_responses" in statement for statement in statements)
            found = await facts.read_facts(session, accounts=list(locked.values()), as_of=NOW)
            assert found[locked[KEY].id].nps_latest == 9
            assert found[locked[other].id].nps_latest is None
    finally:
        await engine.dispose()


def survey_source(survey: str, aggregation: str, days: int = 90, least: int = 1) -> SurveySource:
    return SurveySource.model_validate(
        {"survey": survey, "aggregation": aggregation, "days": days, "min_responses": least}
    )


async def custom_values(sessions, *sources: SurveySource, as_of: datetime = NOW):
    found = await snapshot(
        sessions, as_of=as_of, historical=as_of != NOW, reads=FactReads(sources=sources)
    )
    return [found.custom[source.key] for source in sources]


async def test_survey_sources_read_their_kind_window_and_minimum(sessions) -> None:
    effort = [
        SurveyResponse(account="42", at=ago(days), kind="ces", score=score, respondent=who)
        for score, days, who in ((6, 100, "a"), (5, 40, "b"), (3, 20, "c"), (2, 2, "a"))
    ]
    await fold(sessions, *effort, nps(10, 30, "a"), nps(4, 10, "b"))
    values = await custom_values(
        sessions,
        survey_source("ces", "mean"),  # 5, 3, 2
        survey_source("ces", "mean", least=4),  # three answers: no data
        survey_source("ces", "latest", days=30),
        survey_source("ces", "responses", days=365),
        survey_source("nps", "nps", least=2),  # a promoter and a detractor
        survey_source("csat", "responses"),
    )
    assert values == [pytest.approx(10 / 3), None, 2.0, 4.0, 0.0, 0.0]
    # Twenty days ago: the answers given by then.
    then = await custom_values(
        sessions, survey_source("ces", "latest"), as_of=ago(20) + timedelta(hours=1)
    )
    assert then == [3.0]


async def test_a_survey_count_is_no_data_where_no_survey_was_ever_sent(sessions) -> None:
    await fold(sessions, AccountAttributes(account="42", at=ago(300), attributes={"name": "Acme"}))
    assert await custom_values(sessions, survey_source("nps", "responses")) == [None]
