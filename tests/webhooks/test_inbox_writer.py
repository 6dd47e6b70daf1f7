"""Group commit: concurrent requests share a transaction; each learns how many of its events
were new; a request the database refuses fails alone (nothing acknowledged is lost)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from webhooks.errors import InvalidFields, StorageUnavailable
from webhooks.inbox_writer import InboxWriter
from webhooks.store import inbox
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import InboxEvent

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def events(*keys: str) -> list[inbox.NewEvent]:
    return [inbox.NewEvent(dedup_key=key, kind="k", payload={"n": key}) for key in keys]


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def stored_keys(engine) -> list[str]:
    async with create_session_factory(engine)() as session:
        rows = await session.execute(select(InboxEvent.dedup_key).order_by(InboxEvent.dedup_key))
        return list(rows.scalars())


async def test_concurrent_requests_are_stored_with_their_own_counts(engine):
    writer = InboxWriter(engine)
    results = await asyncio.gather(
        writer.write(source="s", connection="c", events=events("a", "b"), received_at=NOW),
        writer.write(source="s", connection="c", events=events("b", "c"), received_at=NOW),
        writer.write(source="s", connection="d", events=events("a"), received_at=NOW),
    )
    await writer.aclose()
    # "b" twice in one group: stored once, counted for the request that stored it.
    assert sorted(results) == [1, 1, 2]
    assert sum(results) == 4
    assert await stored_keys(engine) == ["a", "a", "b", "c"]


async def test_an_event_already_stored_counts_as_a_duplicate(engine):
    writer = InboxWriter(engine)
    assert await writer.write(source="s", connection="c", events=events("a"), received_at=NOW) == 1
    assert await writer.write(source="s", connection="c", events=events("a"), received_at=NOW) == 0
    await writer.aclose()


async def test_the_body_is_stored_as_text(engine):
    writer = InboxWriter(engine)
    body = '{"batch": []}'
    event = inbox.NewEvent(dedup_key="r", kind="request:batch", payload={}, body=body)
    await writer.write(source="segment", connection="c", events=[event], received_at=NOW)
    await writer.aclose()
    async with create_session_factory(engine)() as session:
        assert (await session.execute(select(InboxEvent.body))).scalar_one() == body


async def test_a_request_the_database_refuses_fails_alone(engine):
    writer = InboxWriter(engine)
    # A payload the database cannot take (not JSON): the group's statement fails, and each
    # request is tried on its own.
    broken = inbox.NewEvent(dedup_key="b", kind="k", payload={"x": object()})
    good, refused = await asyncio.gather(
        writer.write(source="s", connection="c", events=events("a"), received_at=NOW),
        writer.write(source="s", connection="c", events=[broken], received_at=NOW),
        return_exceptions=True,
    )
    await writer.aclose()
    assert good == 1
    assert isinstance(refused, InvalidFields)
    assert refused.message == "event 0: payload is not JSON; nothing of this request was stored"
    assert await stored_keys(engine) == ["a"]


async def test_close_finishes_what_was_handed_over(engine):
    writer = InboxWriter(engine)
    pending = asyncio.ensure_future(
        writer.write(source="s", connection="c", events=events("a"), received_at=NOW)
    )
    await asyncio.sleep(0)
    await writer.aclose()
    assert await pending == 1


async def test_rows_read_back_through_the_orm_as_written_and_are_claimable(engine):
    """The grouped insert bypasses the ORM's bind processing: what it stores must read back
    the same (aware UTC times, JSON payload, text body) and be claimable at its time."""
    received = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    payload = {"name": "Zoë \u00e9 \u4e2d", "n": 12345678901234, "nested": {"x": [1, None, True]}}
    writer = InboxWriter(engine)
    new = [inbox.NewEvent(dedup_key="k1", kind="company", payload=payload, body='{"raw": 1}')]
    assert await writer.write(source="s", connection="c", events=new, received_at=received) == 1
    await writer.aclose()
    sessions = create_session_factory(engine)
    async with sessions() as session:
        row = (await session.execute(select(InboxEvent))).scalar_one()
        assert (row.payload, row.body, row.kind) == (payload, '{"raw": 1}', "company")
        assert row.received_at == received
        assert row.available_at == received
        assert (row.status, row.attempts) == (inbox.PENDING, 0)
    async with sessions() as session, session.begin():
        early = await inbox.claim_batch(
            session, now=received.replace(microsecond=0), limit=10, lease_seconds=60
        )
        assert early == []
        [claimed] = await inbox.claim_batch(session, now=received, limit=10, lease_seconds=60)
        assert (claimed.payload, claimed.received_at) == (payload, received)


async def test_a_payload_json_cannot_hold_is_stored_by_the_plain_statement(engine):
    """NaN is no JSON for SQLite's json_each: the row goes through the ORM's statement, which
    stores it as the JSON column always did. PostgreSQL's json type refuses NaN whichever
    statement sends it: the request fails as unstored (answered 503, so the sender retries)
    rather than being acknowledged."""
    writer = InboxWriter(engine)
    nan = [inbox.NewEvent(dedup_key="nan", kind="k", payload={"x": float("nan")})]
    if engine.dialect.name == "sqlite":
        assert await writer.write(source="s", connection="c", events=nan, received_at=NOW) == 1
        assert await stored_keys(engine) == ["nan"]
    else:
        with pytest.raises(StorageUnavailable):
            await writer.write(source="s", connection="c", events=nan, received_at=NOW)
        assert await stored_keys(engine) == []
    await writer.aclose()
