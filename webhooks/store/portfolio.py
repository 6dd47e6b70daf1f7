"""Read-only queries behind the portfolio: one connection's live customer accounts counted and
their ARR summed by band, now and at the end of each day of a window (in SQL: the rows read
grow with the window's changes, never with the whole history), the biggest score moves, the
renewals ahead, and the segments and owners to filter by."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    Float,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from connector.bounds import MAX_ARR
from webhooks.store import accounts
from webhooks.store.account_views import AccountFilter, conditions
from webhooks.store.dialect import is_postgresql
from webhooks.store.models import (
    Account,
    AccountRow,
    AttributeChange,
    CRMOwnerContact,
    HealthSnapshot,
)

# An ARR as attribute_history keeps it is text: a JSON number, as the service writes numbers
# (str of a float: "12000.5", "1e+16"), at most 100 characters, from 0 to MAX_ARR. Intakes only
# let such values in, but a value stored before they checked must read as no ARR, not fail the
# read, and read alike on both databases. SQLite reads it with its JSON functions (one parse,
# where patterns would take the text apart again and again); PostgreSQL with this expression,
# whose exponent of at most two digits keeps its cast in range.
_PG_NUMBER = r"^[ \t\n\r]*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,2})?[ \t\n\r]*$"
_SQLITE_LONG_EXPONENT = "*[eE]*[0-9][0-9][0-9]*"
_MAX_NUMBER_TEXT = 100
_ARR = "arr"


@dataclass(frozen=True, slots=True)
class BandSum:
    """Accounts of one band and their ARR summed (`with_arr` of them have one)."""

    band: str
    accounts: int
    arr: float
    with_arr: int = 0


def midnight(day: date) -> datetime:
    """The start of a UTC day."""
    return datetime.combine(day, time(), UTC)


def _number(session: AsyncSession, value: Any) -> ColumnElement[Any]:
    """`value` (text) read as an ARR in SQL: NULL where it is not a JSON number from 0 to
    MAX_ARR (see _PG_NUMBER)."""
    if is_postgresql(session):
        readable: ColumnElement[bool] = and_(
            func.length(value) <= _MAX_NUMBER_TEXT, value.op("~", is_comparison=True)(_PG_NUMBER)
        )
    else:
        # json_type fails on text that is no JSON: a CASE asks it only of valid JSON.
        numeric = case(
            (func.json_valid(value) == 1, func.json_type(value).in_(("integer", "real"))),
            else_=false(),
        )
        readable = and_(
            func.length(value) <= _MAX_NUMBER_TEXT,
            numeric,
            ~value.op("GLOB", is_comparison=True)(_SQLITE_LONG_EXPONENT),
        )
    number = cast(value, Float)
    return case((readable, case((number.between(0, MAX_ARR), number), else_=null())), else_=null())


def _day(session: AsyncSession, moment: Any) -> ColumnElement[Any]:
    """The UTC day of `moment`: a date on PostgreSQL, its ISO text on SQLite (see `_as_day`)."""
    if is_postgresql(session):
        return cast(func.timezone("UTC", moment), Date)
    # SQLite keeps UTC moments as naive ISO text: its first ten characters are the UTC day
    # (cheaper than date(), which parses the whole text).
    return func.substr(moment, 1, 10)


def _day_literal(session: AsyncSession, day: date) -> ColumnElement[Any]:
    return literal(day, Date) if is_postgresql(session) else literal(day.isoformat())


def _as_day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _whole_book(session: AsyncSession, where: AccountFilter) -> list[ColumnElement[bool]]:
    """The terms of `where` for a read of most of the connection's accounts: on SQLite, one
    that reads the table in order (see account_views.conditions). PostgreSQL's planner, which
    has statistics, chooses well by itself (and an expression would spoil its estimates)."""
    return conditions(where, scan=not is_postgresql(session))


async def by_band(session: AsyncSession, *, where: AccountFilter) -> list[BandSum]:
    """The matching accounts now: per band, how many, their ARR summed and how many have one."""
    rows = await session.execute(
        select(
            Account.band,
            func.count(),
            func.coalesce(func.sum(Account.arr), 0.0),
            func.count(Account.arr),
        )
        .where(*_whole_book(session, where))
        .group_by(Account.band)
    )
    return [
        BandSum(band, int(n), float(arr or 0), int(with_arr)) for band, n, arr, with_arr in rows
    ]


def _in_force(
    model: Any,
    moment: str,
    value: str,
    account: Any,
    at: Any,
    *,
    name: str | None = None,
    inclusive: bool = True,
    read: Callable[[Any], Any] | None = None,
) -> Any:
    """The `value` of the account's latest `model` row at `at` (or before it only, when not
    `inclusive`), of attribute `name` only when given, as `read` reads it: one index probe
    (reading inside the subquery: an expression naming it twice would probe twice)."""
    row = model.__table__.alias()
    named = () if name is None else (row.c.name == name,)
    when = row.c[moment] <= at if inclusive else row.c[moment] < at
    column = row.c[value] if read is None else read(row.c[value])
    return (
        select(column)
        .where(row.c.account_id == account, *named, when)
        # Rows of one moment come newest first in a backward index scan (SQLite: the highest
        # row id; PostgreSQL: the last heap position, as good as the last written). Ordering
        # by the id too would make PostgreSQL read and sort every earlier row of the account.
        .order_by(row.c[moment].desc())
        .limit(1)
        .correlate_except(row)
        .scalar_subquery()
    )


def _latest(model: Any, moment: str, account: Any, at: Any, *, after: bool = False) -> Any:
    """When the account's last `model` row before `at` was made (or its first one after `at`,
    when `after`): an index probe."""
    row = model.__table__.alias()
    time_column = row.c[moment]
    return (
        select(func.min(time_column) if after else func.max(time_column))
        .where(row.c.account_id == account, time_column > at if after else time_column < at)
        .correlate_except(row)
        .scalar_subquery()
    )


def _health_rows(
    session: AsyncSession, *, account: Any, start: datetime, end: datetime
) -> tuple[Any, Any]:
    """Each account's health rows from the one in force at `start` to `end`: a FROM to join to
    what holds `account` (its id), and the condition to join on. A range of the (account,
    time) index per account, however long the history: PostgreSQL is told so with a LATERAL
    subquery (it would hash the whole history otherwise, probing for each row where the range
    starts); SQLite's planner walks the accounts and looks each range up by itself."""
    opened = _latest(HealthSnapshot, "computed_at", account, start)
    at = HealthSnapshot.computed_at
    bounds = (at >= func.coalesce(opened, start), at < end)
    if is_postgresql(session):
        rows = (
            select(at, HealthSnapshot.id, HealthSnapshot.band)
            .where(HealthSnapshot.account_id == account, *bounds)
            # OFFSET 0: a subquery its planner may not merge into the join around it.
            .offset(0)
            .lateral("history")
        )
        return rows, true()
    table = HealthSnapshot.__table__
    return table, and_(table.c.account_id == account, *bounds)


@dataclass(frozen=True, slots=True)
class Move:
    """What changed on a day in a band: accounts in it (+ in, - out), and ARR."""

    day: date
    band: str
    accounts: int
    arr: float


async def prepare(session: AsyncSession) -> None:
    """Settings for the portfolio's reads, in the session's transaction. PostgreSQL: no JIT
    compilation. The probes make its cost estimates huge, and compiling the history's query
    took longer than half of running it."""
    if is_postgresql(session):
        await session.execute(text("SET LOCAL jit = off"))


async def day_moves(
    session: AsyncSession,
    *,
    where: AccountFilter,
    first: date,
    last: date,
    arr_changed: bool,
) -> list[Move]:
    """How the matching accounts moved between bands from `first` to `last` (UTC days), with
    their ARR: of the accounts whose ARR changed in that window when `arr_changed`, else of
    the others (two queries, which may run at once). See `band_days`.

    Health history is a step function: each account's rows, from the one in force when the
    window opens to the last, are one range of the (account, time) index. Each row moves the
    account into its band, out of the band of the row before, on its day (the row in force
    when the window opened: on the first day). An account whose ARR did not change in the
    window keeps its `arr` column throughout (the value in force), and its rows come in index
    order, which the window function needs no sort for. For the others the changes of ARR in
    the window (attribute_history rows of `arr`) are steps among the health rows, each with
    the band in force at its moment and the difference it makes, so that a running sum gives
    each step its ARR. The sums are made in the database: a few thousand rows leave it,
    however many accounts and changes there are."""
    start, end = midnight(first), midnight(last + timedelta(days=1))
    terms = _whole_book(session, where)
    in_window = (
        AttributeChange.name == _ARR,
        AttributeChange.at >= start,
        AttributeChange.at < end,
    )
    changed = exists().where(AttributeChange.account_id == Account.id, *in_window)
    first_day = _day_literal(session, first)
    if arr_changed:
        steps = _arr_steps(session, terms=terms, changed=changed, start=start, end=end)
    else:
        history, joined = _health_rows(session, account=Account.id, start=start, end=end)
        steps = (
            select(
                history.c.computed_at.label("at"),
                history.c.band.label("band"),
                func.lag(history.c.band)
                .over(partition_by=Account.id, order_by=(history.c.computed_at, history.c.id))
                .label("before"),
                func.coalesce(Account.arr, 0.0).label("arr"),
                func.coalesce(Account.arr, 0.0).label("arr_before"),
            )
            .select_from(Account)
            .join(history, joined)
            .where(*terms, ~changed)
            .subquery("steps")
        )
    # The row in force when the window opened moves on its first day.
    day = case((steps.c.at < start, first_day), else_=_day(session, steps.c.at)).label("day")
    totals = select(
        day,
        steps.c.band,
        steps.c.before,
        func.count(),
        func.sum(steps.c.arr),
        func.sum(steps.c.arr_before),
    ).group_by(day, steps.c.band, steps.c.before)
    found: list[Move] = []
    days: dict[object, date] = {}
    for on, band, before, n, arr, arr_before in await session.execute(totals):
        if on is None:
            continue  # the opening steps of ARR: no band, nothing moved
        when = days.get(on) or days.setdefault(on, _as_day(on))
        if band is not None:
            found.append(Move(when, band, int(n), float(arr or 0)))
        if before is not None:
            found.append(Move(when, before, -int(n), -float(arr_before or 0)))
    return found


def _arr_steps(
    session: AsyncSession, *, terms: Any, changed: Any, start: datetime, end: datetime
) -> Any:
    """The steps of the accounts whose ARR changed in [start, end): moment (NULL for the
    opening one), band and the band before, ARR after and before. Each account's steps: one
    adding the ARR in force when the window opened (no band: it moves nothing itself), its
    health rows, and its ARR changes with the band in force at their moment."""

    def opened_arr(account: Any) -> Any:
        return _in_force(
            AttributeChange, "at", "value", account, start, name=_ARR, inclusive=False,
            read=lambda value: _number(session, value),
        )  # fmt: skip

    accounts_changed = (
        select(Account.id.label("account_id")).where(*terms, changed).cte("arr_changed")
    )
    account = accounts_changed.c.account_id
    history, joined = _health_rows(session, account=account, start=start, end=end)
    opened = select(
        account.label("account_id"),
        cast(null(), HealthSnapshot.computed_at.type).label("at"),
        literal(0).label("id"),
        cast(null(), HealthSnapshot.band.type).label("band"),
        func.coalesce(opened_arr(account), 0.0).label("arr_change"),
    )
    health = (
        select(account, history.c.computed_at, history.c.id, history.c.band, literal(0.0))
        .select_from(accounts_changed)
        .join(history, joined)
    )
    changer = AttributeChange.account_id
    values = (
        select(
            changer.label("account_id"),
            AttributeChange.at,
            AttributeChange.id,
            func.coalesce(_number(session, AttributeChange.value), 0.0).label("arr"),
        )
        .join(accounts_changed, account == changer)
        .where(AttributeChange.name == _ARR, AttributeChange.at >= start, AttributeChange.at < end)
        .subquery("arr_values")
    )
    previous = func.lag(values.c.arr).over(
        partition_by=values.c.account_id, order_by=(values.c.at, values.c.id)
    )
    arr_changes = select(
        values.c.account_id,
        values.c.at,
        values.c.id,
        _in_force(HealthSnapshot, "computed_at", "band", values.c.account_id, values.c.at),
        # The first change's difference is from the opening step's value.
        values.c.arr - func.coalesce(previous, opened_arr(values.c.account_id), 0.0),
    )
    steps = union_all(opened, health, arr_changes).subquery("all_steps")
    # One window (the default frame: up to this step; (at, id) is unique within an account)
    # for both, computed in one pass.
    order = (steps.c.at.nulls_first(), steps.c.id)
    arr = func.sum(steps.c.arr_change).over(partition_by=steps.c.account_id, order_by=order)
    return select(
        steps.c.at,
        steps.c.band,
        func.lag(steps.c.band)
        .over(partition_by=steps.c.account_id, order_by=order)
        .label("before"),
        arr.label("arr"),
        (arr - steps.c.arr_change).label("arr_before"),
    ).subquery("steps")


def band_days(
    moves: Iterable[Move], *, first: date, last: date
) -> dict[tuple[int, str], tuple[int, float]]:
    """Per day from `first` to `last` (its index from 0) and band: how many accounts were in
    the band at the end of the day, and their ARR summed (each day the moves of the days up
    to it added up); days and bands nobody was in are left out."""
    by_day: dict[int, list[Move]] = {}
    for move in moves:
        by_day.setdefault((move.day - first).days, []).append(move)
    found: dict[tuple[int, str], tuple[int, float]] = {}
    held: dict[str, tuple[int, float]] = {}
    for index in range((last - first).days + 1):
        for move in by_day.get(index, ()):
            count, total = held.get(move.band, (0, 0.0))
            held[move.band] = (count + move.accounts, total + move.arr)
        for band, (count, total) in held.items():
            if count:
                # Sums of differences: rounded to cents, the float noise goes.
                found[(index, band)] = (count, round(total, 2))
    return found


@dataclass(frozen=True, slots=True)
class Mover:
    account: AccountRow
    score: int
    score_before: int
    band_before: str


async def movers(
    session: AsyncSession, *, where: AccountFilter, since: datetime, limit: int
) -> list[Mover]:
    """The matching accounts whose score moved most since `since` (the score now against the
    one in force then; ties: the larger ARR, then the record id), `limit` at most. Only
    accounts with a health change since then can have moved (history rows are added when
    score or band move), so only theirs are looked up; an account unscored then or now is
    left out, and so is one back where it was."""

    def before(column: Any) -> Any:
        row = HealthSnapshot.__table__.alias()
        return (
            select(row.c[column])
            .where(row.c.account_id == Account.id, row.c.computed_at <= since)
            .order_by(row.c.computed_at.desc(), row.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )

    moved = exists().where(
        HealthSnapshot.account_id == Account.id, HealthSnapshot.computed_at > since
    )
    candidates = (
        select(
            Account.id.label("account_id"),
            Account.score.label("score"),
            before("score").label("score_before"),
            before("band").label("band_before"),
        )
        .where(*_whole_book(session, where), Account.score.is_not(None), moved)
        .subquery("candidates")
    )
    change = func.abs(candidates.c.score - candidates.c.score_before)
    picked = (
        select(
            candidates.c.account_id,
            candidates.c.score,
            candidates.c.score_before,
            candidates.c.band_before,
        )
        .join(Account, Account.id == candidates.c.account_id)
        .where(candidates.c.score_before.is_not(None), change > 0)
        .order_by(change.desc(), Account.arr.is_(None), Account.arr.desc(), Account.crm_id)
        .limit(limit)
    )
    found = [(int(a), int(n), int(s), str(b)) for a, n, s, b in await session.execute(picked)]
    rows = await accounts.read_rows(
        session, accounts.select_rows().where(Account.id.in_([a for a, *_ in found]))
    )
    by_id = {row.id: row for row in rows}
    return [Mover(by_id[a], n, s, b) for a, n, s, b in found if a in by_id]


async def renewals(
    session: AsyncSession, *, where: AccountFilter, first: date, last: date, limit: int
) -> tuple[list[BandSum], list[AccountRow]]:
    """The matching accounts renewing from `first` to `last` (inclusive): per band, how many
    and their ARR; and the `limit` soonest (ties: the larger ARR, then the record id)."""
    terms = [
        *conditions(where),
        Account.renewal_date >= first,
        Account.renewal_date <= last,
    ]
    sums = await session.execute(
        select(Account.band, func.count(), func.coalesce(func.sum(Account.arr), 0.0))
        .where(*terms)
        .group_by(Account.band)
    )
    bands = [BandSum(band, int(n), float(arr or 0)) for band, n, arr in sums]
    rows = await accounts.read_rows(
        session,
        accounts.select_rows()
        .where(*terms)
        .order_by(Account.renewal_date, Account.arr.is_(None), Account.arr.desc(), Account.crm_id)
        .limit(limit),
    )
    return bands, rows


@dataclass(frozen=True, slots=True)
class Facet:
    value: str
    accounts: int
    name: str | None = None


async def facets(session: AsyncSession, *, where: AccountFilter) -> tuple[list[Facet], list[Facet]]:
    """The segments and the owners of the matching accounts, each with how many accounts it
    has (most first, then by value); an owner with its name where the CRM gave one."""
    terms = _whole_book(session, where)
    segments = await session.execute(
        select(Account.segment, func.count())
        .where(*terms, Account.segment.is_not(None))
        .group_by(Account.segment)
        .order_by(func.count().desc(), Account.segment)
    )
    owners = (
        select(Account.owner.label("owner"), func.count().label("accounts"))
        .where(*terms, Account.owner.is_not(None))
        .group_by(Account.owner)
        .subquery("owners")
    )
    named = await session.execute(
        select(owners.c.owner, owners.c.accounts, CRMOwnerContact.name)
        .outerjoin(
            CRMOwnerContact,
            and_(
                CRMOwnerContact.connection == where.connection,
                CRMOwnerContact.owner_id == owners.c.owner,
                CRMOwnerContact.found.is_(True),
            ),
        )
        .order_by(owners.c.accounts.desc(), owners.c.owner)
    )
    return (
        [Facet(str(value), int(n)) for value, n in segments],
        [Facet(str(value), int(n), name or None) for value, n, name in named],
    )
