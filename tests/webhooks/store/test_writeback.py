"""Write-back outbox on SQLite and PostgreSQL: change detection, versions, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webhooks.store import accounts, writeback

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


async def _account_id(sessions) -> int:
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[("default", "hubspot", "42")], now=NOW)
        return locked["default", "hubspot", "42"].id


async def _stage(sessions, account_id: int, fields: dict[str, object]) -> bool:
    async with sessions() as session, session.begin():
        owed = writeback.Owed(
            account_id=account_id,
            connection="default",
            record_id="42",
            fields=fields,
            fingerprint=writeback.fields_fingerprint(fields, ignore={"health_updated_at"}),
        )
        return bool(await writeback.stage(session, owed=[owed], now=NOW))


async def _claim(sessions, now=NOW):
    async with sessions() as session, session.begin():
        return await writeback.claim_due(
            session, connections=["default"], now=now, limit=10, lease_seconds=60
        )


async def test_unchanged_values_are_not_staged_again(sessions) -> None:
    account_id = await _account_id(sessions)
    assert await _stage(sessions, account_id, {"health_score": 80, "health_updated_at": "t1"})
    assert not await _stage(sessions, account_id, {"health_score": 80, "health_updated_at": "t2"})
    assert await _stage(sessions, account_id, {"health_score": 81, "health_updated_at": "t3"})


async def test_written_version_is_settled_and_not_claimed_again(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    [(_, _, version, _, _, _)] = await _claim(sessions)
    async with sessions() as session, session.begin():
        await writeback.mark_written(session, account_id=account_id, version=version, now=NOW)
    assert await _claim(sessions, NOW + timedelta(hours=1)) == []
    async with sessions() as session:
        row = await writeback.get_item(session, account_id=account_id)
        assert row is not None
        assert (row.status, row.written_version) == ("done", 1)


async def test_values_staged_during_a_send_are_sent_after_it(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    [(_, _, version, _, _, _)] = await _claim(sessions)
    assert await _stage(sessions, account_id, {"health_score": 60})
    assert await _claim(sessions) == [], "no second sender while the first is in flight"
    async with sessions() as session, session.begin():
        await writeback.mark_written(session, account_id=account_id, version=version, now=NOW)
    [(_, _, version, _, fields, _)] = await _claim(sessions)
    assert (version, fields) == (2, {"health_score": 60})


async def test_failed_write_is_retried_however_often_it_failed(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    for attempt in range(1, 51):
        [(_, _, version, _, _, _)] = await _claim(sessions, NOW + timedelta(hours=attempt))
        async with sessions() as session, session.begin():
            status = await writeback.mark_write_failed(
                session, account_id=account_id, version=version, error="503",
                now=NOW + timedelta(hours=attempt), retry_in_seconds=30,
            )  # fmt: skip
        assert status == "pending", "an outage never ends a write-back"
    async with sessions() as session:
        item = await writeback.get_item(session, account_id=account_id)
    assert item is not None
    assert (item.attempts, item.last_error, item.pending_since) == (50, "503", NOW)


async def test_refused_write_is_failed_at_once_and_left_for_a_person(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    [(_, _, version, _, _, _)] = await _claim(sessions)
    async with sessions() as session, session.begin():
        status = await writeback.mark_write_failed(
            session, account_id=account_id, version=version, error="record deleted",
            now=NOW, retry_in_seconds=30, refused=True,
        )  # fmt: skip
    assert status == "failed"
    assert await _claim(sessions, NOW + timedelta(days=1)) == []


async def _status(sessions, account_id: int) -> tuple[str, int, object, object]:
    async with sessions() as session:
        item = await writeback.get_item(session, account_id=account_id)
        assert item is not None
        return item.status, item.attempts, item.available_at, item.pending_since


async def test_resend_queues_written_and_failed_rows_again_due_now(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    [(_, _, version, _, _, _)] = await _claim(sessions)
    async with sessions() as session, session.begin():
        await writeback.mark_write_failed(
            session, account_id=account_id, version=version, error="refused", now=NOW,
            retry_in_seconds=60, refused=True,
        )  # fmt: skip
    later = NOW + timedelta(hours=5)

    async with sessions() as session, session.begin():
        assert await writeback.resend(session, account_ids=[account_id], now=later) == 1

    status, attempts, available_at, pending_since = await _status(sessions, account_id)
    assert (status, attempts, available_at) == ("pending", 0, later)
    assert pending_since == NOW, "values that never landed keep their age"
    [(_, claimed_id, _, _, _, _)] = await _claim(sessions, later)
    assert claimed_id == account_id


async def test_resend_of_a_written_row_dates_it_from_now(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    [(_, _, version, _, _, _)] = await _claim(sessions)
    async with sessions() as session, session.begin():
        await writeback.mark_written(session, account_id=account_id, version=version, now=NOW)
    later = NOW + timedelta(days=1)

    async with sessions() as session, session.begin():
        await writeback.resend(session, account_ids=[account_id], now=later)

    assert await _status(sessions, account_id) == ("pending", 0, later, later)


async def test_resend_leaves_a_row_being_sent_to_its_sender(sessions) -> None:
    account_id = await _account_id(sessions)
    await _stage(sessions, account_id, {"health_score": 80})
    await _claim(sessions)

    async with sessions() as session, session.begin():
        assert await writeback.resend(session, account_ids=[account_id], now=NOW) == 0

    status, *_ = await _status(sessions, account_id)
    assert status == "sending"
