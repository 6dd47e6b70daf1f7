"""Accounts repository: account rows (created on first sight, locked while worked on), their
current health and its history.

Every function works on a whole batch of accounts at once: the worker's cost per batch is a
handful of statements, not a handful per account.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, Select, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from signals.config import HealthConfig
from signals.model import Band, Health
from webhooks.store.dialect import upsert_insert
from webhooks.store.latest import latest_rows
from webhooks.store.models import (
    ACCOUNT_ROW_COLUMNS,
    Account,
    AccountRow,
    HealthSnapshot,
    core_table,
)

AccountKey = tuple[str, str, str]  # (connection, crm, crm_id)


async def known_keys(session: AsyncSession, *, keys: Collection[AccountKey]) -> set[AccountKey]:
    """The keys that have an account row."""
    by_connection: dict[str, list[str]] = defaultdict(list)
    for connection, _, crm_id in keys:
        by_connection[connection].append(crm_id)
    # One connection at a time: `connection = ? AND crm_id IN (...)` walks the unique index,
    # where a row-value IN over both columns made SQLite scan.
    known = {
        (row[0], row[1])
        for connection, crm_ids in by_connection.items()
        for row in await session.execute(
            select(Account.connection, Account.crm_id).where(
                Account.connection == connection, Account.crm_id.in_(crm_ids)
            )
        )
    }
    return {key for key in keys if (key[0], key[2]) in known}


async def lock_accounts(
    session: AsyncSession,
    *,
    keys: Collection[AccountKey],
    now: datetime,
    known: Collection[AccountKey] | None = None,
) -> dict[AccountKey, AccountRow]:
    """Fetch the accounts, creating new ones, locked for this transaction on PostgreSQL.
    Only confirmed records may be new here (see webhooks.worker.staging: events of unknown ids wait
    as unmatched); `known` saves reading which keys exist when the caller just did.

    Rows are locked in id order so concurrent workers cannot deadlock on each other.
    """
    if not keys:
        return {}
    by_connection: dict[str, list[str]] = defaultdict(list)
    for connection, _, crm_id in keys:
        by_connection[connection].append(crm_id)
    existing = await known_keys(session, keys=keys) if known is None else set(known)
    # Inserted in key order: two workers inserting overlapping new accounts in event order
    # waited on each other's unique-index entries (PostgreSQL reported deadlocks).
    new = sorted(key for key in keys if key not in existing)
    if new:
        await session.execute(
            upsert_insert(session, Account).on_conflict_do_nothing(
                index_elements=["connection", "crm_id"]
            ),
            [
                {"connection": connection, "crm": crm, "crm_id": crm_id, "attributes": {},
                 "band": "unknown", "created_at": now}
                for connection, crm, crm_id in new
            ],
        )  # fmt: skip
    locked: list[AccountRow] = []
    # Connections in name order, rows in id order: every worker locks in the same order.
    for connection, crm_ids in sorted(by_connection.items()):
        locked.extend(
            await read_rows(
                session,
                select_rows()
                .where(Account.connection == connection, Account.crm_id.in_(crm_ids))
                .order_by(Account.id)
                .with_for_update(),
            )
        )
    return {(a.connection, a.crm, a.crm_id): a for a in locked}


def select_rows() -> Select[Any]:
    """A select of the accounts' columns, for `read_rows` (add the where and order)."""
    return select(*(_TABLE.c[name] for name in ACCOUNT_ROW_COLUMNS))


async def read_rows(session: AsyncSession, statement: Select[Any]) -> list[AccountRow]:
    """The accounts `statement` (built on `select_rows`) finds, their values as read kept
    for `save`, which writes what changed in one UPDATE for all of them."""
    found = [AccountRow(*row) for row in await session.execute(statement)]
    for account in found:
        _AS_READ[account] = _values(account)
    return found


_MUTABLE = (
    "name", "domain", "attributes", "last_usage_at", "last_interaction_at", "deleted_at", "score",
    "band", "customer", "first_seen_at", "health_updated_at", "segment", "owner", "arr",
    "renewal_date", "trend_30d", "signals", "drivers", "coverage", "config_version",
    "not_found_at", "not_found_reason", "indicators_at_risk",
)  # fmt: skip
# The values each account row was read (or last saved) with (see `_changed`).
_AS_READ: WeakKeyDictionary[AccountRow, tuple[Any, ...]] = WeakKeyDictionary()
# What a scoring sets: health_updated_at moves only when one of them does.
_HEALTH = (
    "score", "band", "config_version", "customer", "trend_30d", "signals", "drivers", "coverage",
    "indicators_at_risk",
)  # fmt: skip
# Tuples of those values read in one C call each: a getattr per name in Python was a tenth of
# a recompute's CPU per account (the values are taken when a row is read, at scoring and
# at save).
_values = attrgetter(*_MUTABLE)
_health_values = attrgetter(*_HEALTH)
_health_as_read = itemgetter(*(_MUTABLE.index(name) for name in _HEALTH))
_BINDS = tuple(f"new_{name}" for name in _MUTABLE)
_TABLE = core_table(Account)


async def save(session: AsyncSession, *, accounts: Sequence[AccountRow]) -> None:
    """Write the changed state of accounts in one executemany UPDATE; an account
    whose values are all as read (or were set again to what they were) is not written."""
    changed = [
        (account, values) for account in accounts if (values := _changed(account)) is not None
    ]
    if not changed:
        return
    # Only the columns some account changed: a rescore sets the health ones, and writing the
    # others as they were read (the attributes JSON encoded again for every row) was most of
    # the UPDATE's cost.
    columns = sorted(
        {
            position
            for account, values in changed
            for position in _differing(values, _AS_READ.get(account))
        }
    )
    await session.execute(
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("account_id"))
        .values({_MUTABLE[position]: bindparam(_BINDS[position]) for position in columns}),
        [
            {"account_id": a.id, **{_BINDS[position]: values[position] for position in columns}}
            for a, values in changed
        ],
    )
    for account, values in changed:
        _AS_READ[account] = values


def _changed(account: AccountRow) -> tuple[Any, ...] | None:
    """The account's values when any differs from what it was read (or last saved) with, else
    None; an equal value assigned again is no change. Compared here rather than through the
    ORM's attribute history, which cost five times as much per account."""
    values: tuple[Any, ...] = _values(account)
    return values if values != _AS_READ.get(account) else None


def _differing(values: tuple[Any, ...], read: tuple[Any, ...] | None) -> Iterable[int]:
    """The positions (in `_MUTABLE`) where `values` differ from what was `read`: all of them
    when nothing was."""
    if read is None:
        return range(len(values))
    return (
        position for position, (new, old) in enumerate(zip(values, read, strict=True)) if new != old
    )


def _health_changed(account: AccountRow) -> bool:
    """Whether a health field (`_HEALTH`) differs from what the account was read with."""
    read = _AS_READ.get(account)
    return read is None or _health_values(account) != _health_as_read(read)


async def scores_at_or_before(
    session: AsyncSession,
    *,
    account_ids: Collection[int],
    at: datetime,
    versions: Mapping[int, str] | None = None,
) -> dict[int, int | None]:
    """Each account's latest recorded score at or before `at` (for trends). With `versions`
    ({account id: scoring version}), only scores computed under the account's version (or
    recorded before versions were: NULL) count: what a score-drop rule compares with, so a
    configuration change is never read as a fall."""
    if versions is None:
        return {account_id: score for account_id, score, _ in await _latest(
            session, account_ids=account_ids, at=at, version=None
        )}  # fmt: skip
    found: dict[int, int | None] = {}
    for version, ids in _by_version(account_ids, versions).items():
        for account_id, score, _ in await _latest(
            session, account_ids=ids, at=at, version=version, legacy=True
        ):
            found[account_id] = score
    return found


async def bands_under(
    session: AsyncSession, *, versions: Mapping[int, str], at: datetime
) -> dict[int, str]:
    """Each account's latest recorded band (at or before `at`) computed under the given
    scoring version ({account id: version}): the band the configuration in force last gave
    it, from which hysteresis resumes after a configuration change (and a rollback)."""
    found: dict[int, str] = {}
    for version, ids in _by_version(versions, versions).items():
        for account_id, _, band in await _latest(session, account_ids=ids, at=at, version=version):
            found[account_id] = band
    return found


def scoring_versions(live: Sequence[AccountRow], config: HealthConfig) -> dict[int, str]:
    """{account id: the scoring version of the configuration that applies to its connection}."""
    by_connection: dict[str, str] = {}
    for account in live:
        if account.connection not in by_connection:
            by_connection[account.connection] = config.for_connection(
                account.connection
            ).scoring_version
    return {account.id: by_connection[account.connection] for account in live}


async def previous_bands(
    session: AsyncSession,
    *,
    accounts: Sequence[AccountRow],
    versions: Mapping[int, str],
    at: datetime,
) -> dict[int, Band | None]:
    """The band hysteresis starts from when each account is scored under `versions` ({account
    id: scoring version}): its current band when computed under that version (or before
    versions were recorded), else the band that version last gave it (a rollback resumes
    where it left off), else none: a configuration change rebases hysteresis, so the band
    never depends on the path of changes that led to the configuration in force."""
    found: dict[int, Band | None] = {}
    rebased: dict[int, str] = {}
    for account in accounts:
        version = versions[account.id]
        if account.config_version is None or account.config_version == version:
            found[account.id] = Band(account.band)
        else:
            rebased[account.id] = version
    last = await bands_under(session, versions=rebased, at=at) if rebased else {}
    for account_id in rebased:
        band = last.get(account_id)
        found[account_id] = None if band is None else Band(band)
    return found


def _by_version(account_ids: Collection[int], versions: Mapping[int, str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for account_id in account_ids:
        grouped[versions[account_id]].append(account_id)
    return grouped


async def _latest(
    session: AsyncSession,
    *,
    account_ids: Collection[int],
    at: datetime,
    version: str | None,
    legacy: bool = False,
) -> list[tuple[int, int | None, str]]:
    """(account id, score, band) of each account's latest history row at or before `at`,
    among the rows computed under `version` (and NULL ones when `legacy`); any row when
    `version` is None."""

    def kept(row: Any) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = [row.computed_at <= at]
        if version is not None:
            same = row.config_version == version
            found.append(or_(same, row.config_version.is_(None)) if legacy else same)
        return found

    rows = await latest_rows(
        session,
        HealthSnapshot,
        columns=("account_id", "score", "band"),
        account_ids=account_ids,
        time="computed_at",
        where=kept,
    )
    return [(account_id, score, band) for account_id, score, band in rows]


async def record_health(
    session: AsyncSession,
    *,
    scored: Sequence[tuple[AccountRow, Health]],
    at: datetime,
    versions: Mapping[int, str] | None = None,
) -> None:
    """Keep each account's current health on its row; append to the history when the score,
    the band or the scoring configuration (`versions`: {account id: scoring version}) moved.
    The history is a step function: the latest row at or before a moment is the health at
    that moment, so unchanged rescores add nothing to it. `health_updated_at` says when the
    health last changed: a rescore giving the same health leaves the row untouched."""
    versions = versions or {}
    changed: list[AccountRow] = []
    for account, health in scored:
        coverage = health.coverage
        version = versions.get(account.id)
        if (
            account.health_updated_at is None
            or account.score != health.score
            or account.band != health.band.value
            or account.config_version != version
        ):
            changed.append(account)
        account.score = health.score
        account.band = health.band.value
        account.config_version = version
        account.customer = health.customer
        account.trend_30d = health.trend_30d
        account.signals = {
            name: None if value is None else round(value, 1)
            for name, value in health.signals.items()
        }
        account.drivers = list(health.drivers)
        account.coverage = {
            "ratio": coverage.ratio,
            "signals": list(coverage.signals),
            "indicators": list(coverage.indicators),
        }
        account.indicators_at_risk = [
            f"{result.signal}.{result.name}" for result in health.indicators if result.score <= 0
        ]
        # A rescore that gives the same health leaves the row as it was (no UPDATE).
        if account.health_updated_at is None or _health_changed(account):
            account.health_updated_at = at
    if not changed:
        return
    await session.execute(
        insert(core_table(HealthSnapshot)),
        [
            {
                "account_id": account.id,
                "computed_at": at,
                "score": account.score,
                "band": account.band,
                "config_version": account.config_version,
            }
            for account in changed
        ],
    )


async def accounts_after(
    session: AsyncSession, *, after_id: int, limit: int, connection: str | None = None
) -> list[AccountRow]:
    """Live accounts (of `connection`, or of all) with ids above `after_id`, in id order,
    locked (a recompute's next chunk); records the CRM does not have are left out."""
    where = [Account.id > after_id, Account.deleted_at.is_(None), Account.not_found_at.is_(None)]
    if connection is not None:
        where.append(Account.connection == connection)
    return await read_rows(
        session, select_rows().where(*where).order_by(Account.id).limit(limit).with_for_update()
    )


async def mark_not_found(
    session: AsyncSession, *, account_ids: Mapping[int, str], now: datetime
) -> None:
    """The CRM has no such records ({account id: its answer}): not scored, listed or written
    back until the CRM sends them (the pipeline clears the mark then)."""
    for account_id, reason in account_ids.items():
        await session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(not_found_at=now, not_found_reason=reason[:2000])
        )


async def not_found_by_connection(session: AsyncSession) -> dict[str, int]:
    """{connection: accounts a write-back found missing from the CRM}."""
    rows = await session.execute(
        select(Account.connection, func.count())
        .where(Account.not_found_at.is_not(None), Account.deleted_at.is_(None))
        .group_by(Account.connection)
    )
    return {str(connection): int(count) for connection, count in rows}
