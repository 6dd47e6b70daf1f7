"""Sentiments CSMs set on the CRM record's picklists (webhooks.sentiment.record_sentiments):
a change sets one for the configured days, a read of the record that finds the values held
renews nothing, a stale delivery changes nothing, and an empty rating clears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.base import SENTIMENT_AUTHOR_ATTRIBUTE, SENTIMENT_FIELD, SENTIMENT_REASON_FIELD
from connector.model import AccountAttributes, CsmSentiment, Usage
from signals.config import SentimentConfig
from webhooks.sentiment import record_sentiments

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
CONFIG = SentimentConfig(crm_field=True, default_days=30)


def change(minutes: float, **values: str | None) -> AccountAttributes:
    names = {
        "rating": SENTIMENT_FIELD,
        "reason": SENTIMENT_REASON_FIELD,
        "author": SENTIMENT_AUTHOR_ATTRIBUTE,
    }
    return AccountAttributes(
        account="42",
        at=NOW + timedelta(minutes=minutes),
        attributes={names[key]: value for key, value in values.items()},
    )


def held(minutes: float, **values: str | None) -> dict[str, object]:
    at = (NOW + timedelta(minutes=minutes)).isoformat()
    names = {"rating": SENTIMENT_FIELD, "reason": SENTIMENT_REASON_FIELD}
    return {
        names[key]: {"value": value, "at": at, "origin": "crm"} for key, value in values.items()
    }


def test_a_rating_and_then_its_reason_are_two_changes_the_later_complete() -> None:
    found = record_sentiments(
        [
            change(1, rating="Red", author="HubSpot user 7"),
            Usage(account="42", at=NOW, user="u"),
            change(2, reason="CHAMPION LEFT"),
        ],
        held=None,
        config=CONFIG,
    )
    assert found == [
        CsmSentiment(
            account="42", at=NOW + timedelta(minutes=1), rating="red", author="HubSpot user 7",
            until=NOW + timedelta(minutes=1, days=30),
        ),
        CsmSentiment(
            account="42", at=NOW + timedelta(minutes=2), rating="red", reason="champion left",
            author="the CRM record", until=NOW + timedelta(minutes=2, days=30),
        ),
    ]  # fmt: skip


def test_reading_the_record_again_renews_nothing() -> None:
    # A backfill or any company change reads the whole record, sentiment included.
    again = change(60 * 24 * 20, rating="red", reason="budget cut")
    assert (
        record_sentiments([again], held=held(0, rating="red", reason="budget cut"), config=CONFIG)
        == []
    )


def test_a_stale_delivery_changes_nothing() -> None:
    stale = change(-5, rating="green")
    assert record_sentiments([stale], held=held(0, rating="red"), config=CONFIG) == []


def test_an_emptied_rating_clears_and_an_unknown_one_is_left_alone() -> None:
    cleared = record_sentiments([change(1, rating="")], held=held(0, rating="amber"), config=CONFIG)
    assert [(s.rating, s.until) for s in cleared] == [(None, None)]
    assert record_sentiments([change(1, rating="purple")], held=None, config=CONFIG) == []
    # A reason picked while no rating is set: nothing to clear.
    assert record_sentiments([change(1, reason="budget cut")], held=None, config=CONFIG) == []


def test_a_reason_no_longer_listed_is_kept_as_the_csm_picked_it() -> None:
    found = record_sentiments(
        [change(1, rating="amber", reason="Old reason")], held=None, config=CONFIG
    )
    assert found[0].reason == "Old reason"
