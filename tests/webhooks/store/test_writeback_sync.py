"""Write-back sync state per connection and the retry of stuck rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sync_rows import LONG_ERROR, NOW, seed

from webhooks.store import writeback
from webhooks.store.models import WritebackItem


async def _rows(sessions) -> dict[str, tuple[str, int, str | None]]:
    async with sessions() as session:
        rows = await session.execute(
            select(
                WritebackItem.record_id,
                WritebackItem.status,
                WritebackItem.attempts,
                WritebackItem.last_error,
            )
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def test_counts_each_state_per_connection(sessions) -> None:
    await seed(sessions)
    async with sessions() as session:
        summary = await writeback.sync_by_connection(session, error_chars=40)
    assert sorted(summary) == ["default", "emea"]
    default = summary["default"]
    # Pending counts waiting and sending rows; failing those with a failed attempt among them.
    assert (default.pending, default.sending, default.failing, default.failed) == (3, 1, 2, 1)
    # The failed row's own wait is not the oldest pending one: it waits for a person.
    assert default.oldest_pending_since == NOW - timedelta(minutes=40)
    assert default.last_written_at == NOW - timedelta(minutes=10)
    assert default.failing_error == "HTTP 503 Service Unavailable"
    assert default.failed_error == "record 6 was deleted in the CRM"
    emea = summary["emea"]
    assert (emea.pending, emea.sending, emea.failing, emea.failed) == (1, 0, 0, 1)
    assert emea.last_written_at is None
    assert emea.failing_error is None
    assert emea.failed_error == LONG_ERROR[:39] + "…"


async def test_a_connection_with_everything_written_is_listed_with_its_last_success(
    sessions,
) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        await session.execute(
            update(WritebackItem)
            .where(WritebackItem.connection == "default")
            .values(status="done", attempts=0, pending_since=None)
        )
    async with sessions() as session:
        listed = await writeback.sync_by_connection(session)
        assert sorted(listed) == ["default", "emea"], "nothing owed is an answer too"
        assert sorted(await writeback.sync_by_connection(session, include=["new"])) == [
            "default",
            "emea",
            "new",
        ]
    default = listed["default"]
    assert (default.pending, default.failing, default.failed) == (0, 0, 0)
    assert default.oldest_pending_since is None
    assert default.last_written_at == NOW - timedelta(minutes=10)


async def test_only_reads_that_connection(sessions) -> None:
    await seed(sessions)
    async with sessions() as session:
        summary = await writeback.sync_by_connection(session, only="emea")
        assert list(summary) == ["emea"]
        assert summary["emea"].failed == 1
        assert list(await writeback.sync_by_connection(session, only="apac")) == ["apac"]


async def test_nothing_stored_summarises_to_no_connection(sessions) -> None:
    async with sessions() as session:
        assert await writeback.sync_by_connection(session) == {}


async def test_retry_requeues_failed_rows_due_now_with_fresh_attempts(sessions) -> None:
    await seed(sessions)
    later = NOW + timedelta(minutes=1)
    async with sessions() as session, session.begin():
        result = await writeback.retry(
            session, now=later, failed=True, failing=False, connection="default"
        )
    assert (result.failed, result.failing, result.unknown) == (1, 0, ())
    rows = await _rows(sessions)
    assert rows["6"] == ("pending", 0, None)
    assert rows["7"][0] == "failed", "another connection's row is left alone"
    assert rows["4"] == ("pending", 3, "HTTP 503 Service Unavailable")
    async with sessions() as session:
        claimed = await writeback.claim_due(
            session, connections=["default"], now=later, limit=10, lease_seconds=60
        )
    assert {row[3] for row in claimed} == {"3", "6"}


async def test_retry_of_failing_rows_skips_their_backoff_but_not_a_send_in_flight(
    sessions,
) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        result = await writeback.retry(session, now=NOW, failed=False, failing=True)
    assert (result.failed, result.failing) == (0, 1)
    rows = await _rows(sessions)
    assert rows["4"] == ("pending", 0, None)
    assert rows["5"] == ("sending", 1, "timeout")
    assert rows["6"][0] == rows["7"][0] == "failed"
    async with sessions() as session:
        summary = await writeback.sync_by_connection(session)
    assert summary["default"].failing == 1


async def test_retry_of_named_accounts_reports_the_unknown_ones(sessions) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        result = await writeback.retry(
            session,
            now=NOW,
            failed=True,
            failing=True,
            connection="emea",
            record_ids=["7", "6", "404"],
        )
    # 6 is a record of the default connection, not of emea.
    assert (result.failed, result.failing, result.unknown) == (1, 0, ("404", "6"))
    rows = await _rows(sessions)
    assert rows["7"] == ("pending", 0, None)
    assert rows["6"][0] == "failed"


async def test_retry_of_record_ids_needs_their_connection(sessions) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match="connection"):
            await writeback.retry(session, now=NOW, failed=True, failing=True, record_ids=["1"])
