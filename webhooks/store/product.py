"""Product accounts and users repository: which CRM account a product account (Segment
groupId) is, which product account a user acts in, and the events still waiting for their
account: product events for that mapping, any event for an account id whose record is not
known yet."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from connector.segment import AccountMatch, GroupCall
from webhooks.store.dialect import rare, upsert_insert
from webhooks.store.models import Account, InboxEvent, ProductGroup, ProductUser, core_table

UNMATCHED = "unmatched"


def group_key(group_id: str) -> str:
    return f"group:{group_id}"


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def account_key(crm_id: str) -> str:
    """Events for an account id whose record is not known yet (webhooks.worker.staging)."""
    return f"account:{crm_id}"


async def save_group_calls(
    session: AsyncSession, *, connection: str, calls: Iterable[GroupCall], now: datetime
) -> None:
    """Record what group calls say about product accounts and who acts in them. Calls arrive
    out of order: a newer call's values win, an older one only fills what is still unknown."""
    groups: dict[str, GroupCall] = {}
    members: dict[str, GroupCall] = {}
    for call in sorted(calls, key=lambda c: c.at):
        groups[call.group_id] = _merged(groups.get(call.group_id), call)
        if call.user_id is not None:
            members[call.user_id] = call
    if groups:
        table = core_table(ProductGroup)
        statement = upsert_insert(session, ProductGroup)
        newer = statement.excluded.updated_at >= table.c.updated_at

        def prefer(column: str) -> object:
            mine, theirs = table.c[column], statement.excluded[column]
            return case((newer, func.coalesce(theirs, mine)), else_=func.coalesce(mine, theirs))

        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["connection", "group_id"],
                set_={
                    "name": prefer("name"),
                    "match_value": prefer("match_value"),
                    "updated_at": case(
                        (newer, statement.excluded.updated_at), else_=table.c.updated_at
                    ),
                },
            ),
            [
                {
                    "connection": connection,
                    "group_id": call.group_id,
                    "name": call.name,
                    "match_value": call.match,
                    "crm_id": None,
                    "updated_at": call.at,
                    "first_seen_at": now,
                }
                for call in groups.values()
            ],
        )
    if members:
        table = core_table(ProductUser)
        statement = upsert_insert(session, ProductUser)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["connection", "user_id"],
                set_={
                    "group_id": statement.excluded.group_id,
                    "updated_at": statement.excluded.updated_at,
                },
                where=statement.excluded.updated_at >= table.c.updated_at,
            ),
            [
                {
                    "connection": connection,
                    "user_id": user_id,
                    "group_id": call.group_id,
                    "updated_at": call.at,
                }
                for user_id, call in members.items()
            ],
        )


def _merged(earlier: GroupCall | None, later: GroupCall) -> GroupCall:
    if earlier is None:
        return later
    return GroupCall(
        group_id=later.group_id,
        user_id=later.user_id,
        name=later.name or earlier.name,
        match=later.match or earlier.match,
        at=later.at,
    )


async def assign_accounts(
    session: AsyncSession, *, connection: str, group_ids: Collection[str], match: AccountMatch
) -> set[str]:
    """Point each of these groups at its CRM account as the mapping now says; return the groups
    that gained (or changed) their account, whose waiting events can now be processed."""
    if not group_ids:
        return set()
    rows = (
        await session.execute(
            select(ProductGroup.group_id, ProductGroup.match_value, ProductGroup.crm_id).where(
                ProductGroup.connection == connection, ProductGroup.group_id.in_(group_ids)
            )
        )
    ).all()
    by_domain: dict[str, str] = {}
    if match == "domain":
        by_domain = await accounts_by_domain(
            session, connection=connection, domains={row[1] for row in rows if row[1]}
        )
    changed: dict[str, str | None] = {}
    for group_id, match_value, current in rows:
        if match == "group_id":
            wanted: str | None = group_id
        elif match == "domain":
            wanted = by_domain.get(match_value) if match_value else None
        else:
            wanted = match_value
        if wanted is not None and wanted != current:
            changed[group_id] = wanted
    await _set_accounts(session, connection=connection, accounts=changed)
    return set(changed)


async def match_domains(
    session: AsyncSession, *, connection: str, domains: Mapping[str, str]
) -> set[str]:
    """CRM accounts that just got these domains ({domain: crm_id}) take the unmatched groups
    whose website is one of them; return those groups."""
    if not domains:
        return set()
    rows = (
        await session.execute(
            select(ProductGroup.group_id, ProductGroup.match_value).where(
                ProductGroup.connection == connection,
                ProductGroup.crm_id.is_(None),
                ProductGroup.match_value.in_(list(domains)),
            )
        )
    ).all()
    changed = {group_id: domains[str(match_value)] for group_id, match_value in rows}
    await _set_accounts(session, connection=connection, accounts=changed)
    return set(changed)


async def _set_accounts(
    session: AsyncSession, *, connection: str, accounts: Mapping[str, str | None]
) -> None:
    for group_id, crm_id in accounts.items():
        await session.execute(
            update(ProductGroup)
            .where(ProductGroup.connection == connection, ProductGroup.group_id == group_id)
            .values(crm_id=crm_id)
        )


async def accounts_by_domain(
    session: AsyncSession, *, connection: str, domains: Collection[str]
) -> dict[str, str]:
    """{domain: crm_id} of live accounts; where two accounts share a domain (a duplicate in the
    CRM), the older one is taken."""
    if not domains:
        return {}
    rows = await session.execute(
        select(Account.domain, Account.crm_id)
        .where(
            Account.connection == connection,
            Account.domain.in_(list(domains)),
            Account.deleted_at.is_(None),
        )
        .order_by(Account.id.desc())
    )
    return {domain: crm_id for domain, crm_id in rows if domain is not None}


async def group_accounts(
    session: AsyncSession, *, connection: str, group_ids: Collection[str]
) -> dict[str, str | None]:
    """{group_id: crm_id or None} of the groups known so far."""
    if not group_ids:
        return {}
    rows = await session.execute(
        select(ProductGroup.group_id, ProductGroup.crm_id).where(
            ProductGroup.connection == connection, ProductGroup.group_id.in_(list(group_ids))
        )
    )
    return {str(group_id): crm_id for group_id, crm_id in rows}


async def user_groups(
    session: AsyncSession, *, connection: str, user_ids: Collection[str]
) -> dict[str, str]:
    """{user_id: the group the user last acted in}."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(ProductUser.user_id, ProductUser.group_id).where(
            ProductUser.connection == connection, ProductUser.user_id.in_(list(user_ids))
        )
    )
    return {str(user_id): str(group_id) for user_id, group_id in rows}


# --- events waiting for their mapping -----------------------------------------------------------


async def park(
    session: AsyncSession, *, waiting: Mapping[int, tuple[str, str]], now: datetime
) -> None:
    """Keep claimed events whose account is not known yet ({event id: (match key, reason)}):
    status "unmatched" until `release` sends them back to the worker."""
    for event_id, (match_key, reason) in waiting.items():
        await session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == event_id)
            .values(
                status=UNMATCHED,
                match_key=match_key,
                processed_at=now,
                lease_until=None,
                last_error=reason,
            )
        )


async def release(
    session: AsyncSession, *, connection: str, keys: Collection[str], now: datetime
) -> int:
    """Send the events waiting on these keys back to the worker (the mapping arrived)."""
    if not keys:
        return 0
    result = await session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.connection == connection,
            InboxEvent.match_key.in_(list(keys)),
            InboxEvent.status == UNMATCHED,
        )
        .values(status="pending", available_at=now, match_key=None, processed_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release_resolvable(session: AsyncSession, *, now: datetime) -> int:
    """Send back every waiting event whose mapping exists by now. The worker runs this now and
    then: it catches a mapping saved by another worker while this one parked its event."""
    group_ready = select(literal("group:") + ProductGroup.group_id).where(
        ProductGroup.connection == InboxEvent.connection, ProductGroup.crm_id.is_not(None)
    )
    user_ready = select(literal("user:") + ProductUser.user_id).where(
        ProductUser.connection == InboxEvent.connection
    )
    account_ready = select(literal("account:") + Account.crm_id).where(
        Account.connection == InboxEvent.connection
    )
    result = await session.execute(
        update(InboxEvent)
        .where(
            rare(session, InboxEvent.status == UNMATCHED),
            InboxEvent.match_key.is_not(None),
            or_(
                InboxEvent.match_key.in_(group_ready),
                InboxEvent.match_key.in_(user_ready),
                InboxEvent.match_key.in_(account_ready),
            ),
        )
        .values(status="pending", available_at=now, match_key=None, processed_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def unknown_accounts_by_connection(session: AsyncSession) -> dict[str, int]:
    """{connection: account ids whose events wait because no such account is known}."""
    rows = await session.execute(
        select(InboxEvent.connection, func.count(func.distinct(InboxEvent.match_key)))
        .where(InboxEvent.status == UNMATCHED, InboxEvent.match_key.startswith(account_key("")))
        .group_by(InboxEvent.connection)
    )
    return {str(connection): int(count) for connection, count in rows}


@dataclass(frozen=True, kw_only=True)
class Unmatched:
    connection: str
    key: str
    events: int
    first_received_at: datetime
    last_received_at: datetime
    reason: str | None
    group_name: str | None
    match_value: str | None


async def list_unmatched(
    session: AsyncSession, *, connection: str | None, limit: int, offset: int = 0
) -> tuple[list[Unmatched], int]:
    """The keys events wait on, most events first, and how many keys there are."""
    where = [InboxEvent.status == UNMATCHED, InboxEvent.match_key.is_not(None)]
    if connection is not None:
        where.append(InboxEvent.connection == connection)
    grouped = (
        select(
            InboxEvent.connection,
            InboxEvent.match_key,
            func.count().label("events"),
            func.min(InboxEvent.received_at).label("first"),
            func.max(InboxEvent.received_at).label("last"),
            func.max(InboxEvent.last_error).label("reason"),
        )
        .where(*where)
        .group_by(InboxEvent.connection, InboxEvent.match_key)
    )
    total = (
        await session.execute(select(func.count()).select_from(grouped.subquery()))
    ).scalar_one()
    rows = (
        await session.execute(
            grouped.order_by(func.count().desc(), InboxEvent.connection, InboxEvent.match_key)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    # Names and trait values of the groups listed, to help whoever fixes the mapping.
    wanted: dict[str, list[str]] = {}
    for name, match_key, *_ in rows:
        if str(match_key).startswith("group:"):
            wanted.setdefault(name, []).append(str(match_key).removeprefix("group:"))
    groups: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for name, ids in wanted.items():
        found = await session.execute(
            select(ProductGroup.group_id, ProductGroup.name, ProductGroup.match_value).where(
                ProductGroup.connection == name, ProductGroup.group_id.in_(ids)
            )
        )
        groups.update({(name, gid): (gname, value) for gid, gname, value in found})
    items = []
    for conn, match_key, events, first, last, reason in rows:
        key = str(match_key)
        group = groups.get((conn, key.removeprefix("group:")), (None, None))
        items.append(
            Unmatched(
                connection=conn,
                key=key,
                events=events,
                first_received_at=first,
                last_received_at=last,
                reason=reason,
                group_name=group[0],
                match_value=group[1],
            )
        )
    return items, int(total)
