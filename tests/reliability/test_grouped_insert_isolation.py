"""One bad request in a grouped insert never fails another request (SQLite and PostgreSQL).

The inbox writer commits the events of concurrent requests in one statement. Here bad values
reach the store directly (intake validation would refuse them first): the statement fails, each
request is tried on its own, the good ones are stored and acknowledged, and the bad ones get an
error that quotes neither the database's message nor their values. A database outage still
fails every request at once, with 503."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from webhooks.errors import InvalidFields, StorageUnavailable
from webhooks.inbox_writer import InboxWriter
from webhooks.store import inbox
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import InboxEvent

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SOURCES = ("hubspot", "segment", "native", "dynamics", "salesforce")
SECRET_KEY = "stored-dedup-key-\ud800"


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def stored(engine) -> int:
    async with create_session_factory(engine)() as session:
        return int((await session.execute(select(func.count(InboxEvent.id)))).scalar_one())


def good(index: int) -> list[inbox.NewEvent]:
    return [
        inbox.NewEvent(dedup_key=f"r{index}-e{n}", kind="company.creation", payload={"n": n})
        for n in range(5)
    ]


def bad(index: int) -> list[inbox.NewEvent]:
    """A request with one event no backend stores, among good ones."""
    poison = [
        # SQLite cannot decode it back, PostgreSQL's json refuses it.
        inbox.NewEvent(dedup_key=SECRET_KEY, kind="k", payload={}),
        inbox.NewEvent(dedup_key=f"b{index}", kind="Update\ud800", payload={}),
        inbox.NewEvent(dedup_key=f"b{index}", kind="k", payload={"name": "a\ud800"}),
    ][index % 3]
    return [*good(1000 + index)[:2], poison]


async def test_sixty_good_requests_beside_ten_bad_ones_are_all_acknowledged(engine) -> None:
    writer = InboxWriter(engine)
    requests = [("good", index, good(index)) for index in range(60)]
    requests += [("bad", index, bad(index)) for index in range(10)]
    # Interleaved, so the bad ones share every group with good ones.
    requests.sort(key=lambda item: item[1] % 7)
    results = await asyncio.gather(
        *(
            writer.write(
                source=SOURCES[index % len(SOURCES)],
                connection=f"{kind}-{index % 4}",
                events=events,
                received_at=NOW,
            )
            for kind, index, events in requests
        ),
        return_exceptions=True,
    )
    await writer.aclose()
    outcomes = {
        (kind, index): result for (kind, index, _), result in zip(requests, results, strict=True)
    }
    good_failed = [key for key, result in outcomes.items() if key[0] == "good" and result != 5]
    assert good_failed == []
    bad_results = [result for key, result in outcomes.items() if key[0] == "bad"]
    refused = [result for result in bad_results if isinstance(result, InvalidFields)]
    if engine.dialect.name == "postgresql":
        assert len(refused) == 10
    else:
        # SQLite stores a lone surrogate it is not asked to read back (in kind or payload):
        # only the dedup key, which the insert returns, fails there.
        assert len(refused) == 4
        assert [r for r in bad_results if not isinstance(r, BaseException)] == [3] * 6
    for error in refused:
        assert "nothing of this request was stored" in error.message
        assert "stored-dedup-key" not in error.message
        assert "decode" not in error.message.lower()
    # 60 good requests of 5 events, and nothing of a refused request, not even its good events.
    assert await stored(engine) == 300 + 3 * (10 - len(refused))


async def test_a_request_failing_for_an_unknown_reason_gets_a_503_without_internals(
    engine, monkeypatch
) -> None:
    real = inbox.insert_grouped

    async def refusing(connection, *, groups):
        if any(source == "doomed" for source, *_ in groups):
            raise RuntimeError("ERROR: internal detail of the database, key=doomed-key")
        return await real(connection, groups=groups)

    monkeypatch.setattr("webhooks.inbox_writer.inbox.insert_grouped", refusing)
    writer = InboxWriter(engine)
    kept, doomed = await asyncio.gather(
        writer.write(source="s", connection="c", events=good(1), received_at=NOW),
        writer.write(source="doomed", connection="c", events=good(2), received_at=NOW),
        return_exceptions=True,
    )
    await writer.aclose()
    assert kept == 5
    assert isinstance(doomed, StorageUnavailable)
    assert doomed.message == "events could not be stored, send them again"


async def test_an_outage_fails_every_request_at_once_without_retrying_each(
    engine, monkeypatch
) -> None:
    calls = 0

    async def down(connection, *, groups):
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr("webhooks.inbox_writer.inbox.insert_grouped", down)
    writer = InboxWriter(engine)
    results = await asyncio.gather(
        *(
            writer.write(source="s", connection="c", events=good(i), received_at=NOW)
            for i in range(20)
        ),
        return_exceptions=True,
    )
    await writer.aclose()
    assert all(isinstance(result, StorageUnavailable) for result in results)
    assert calls == 1
