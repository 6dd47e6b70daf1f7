"""Product events find their CRM account: a product account (Segment groupId) maps to a CRM
record through its group call's trait, its domain, or its own id. Events whose mapping has not
arrived yet wait in the inbox ("unmatched") and go back to the worker the moment it does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from connector.model import NormalisedEvent
from connector.segment import Activity, GroupCall, ProductMessage, SegmentOptions
from webhooks.connections import ConnectionRegistry
from webhooks.store import product
from webhooks.store.accounts import AccountKey
from webhooks.store.db import AsyncSession

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Matched:
    """Per claimed product event: its facts (by account), or waiting, or nothing to do."""

    events: dict[AccountKey, list[NormalisedEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    done: list[int] = field(default_factory=list)
    # {event id: (match key, why it waits)}
    waiting: dict[int, tuple[str, str]] = field(default_factory=dict)
    ignored: list[int] = field(default_factory=list)
    # {event id: the account its facts are for}: such an account must be known already.
    origin: dict[int, AccountKey] = field(default_factory=dict)


def _why_group_waits(group_id: str, options: SegmentOptions) -> str:
    if options.account_match == "domain":
        return (
            f"product account {group_id!r} matches no CRM account yet: no group call gave its "
            f"`{options.account_trait}` trait, or no CRM account has that domain"
        )
    return (
        f"product account {group_id!r} has no CRM account yet: send a group call with the "
        f"`{options.account_trait}` trait (the CRM record id)"
    )


def _why_user_waits(user_id: str) -> str:
    return (
        f"user {user_id!r} is in no product account yet: send a group call for the user, or "
        "context.groupId on the call"
    )


async def match_product_events(
    session: AsyncSession,
    *,
    messages: Mapping[int, tuple[str, ProductMessage]],
    connections: ConnectionRegistry,
    crm_of: Callable[[str], str],
    now: datetime,
) -> Matched:
    """Apply this batch's group calls first, so a track and the group call that maps it can
    arrive together in any order; then place each activity on its CRM account."""
    matched = Matched()
    by_connection: dict[str, dict[int, ProductMessage]] = defaultdict(dict)
    for event_id, (connection, message) in messages.items():
        by_connection[connection][event_id] = message
    for connection, batch in by_connection.items():
        options = connections.segment_options(connection)
        calls = [m for m in batch.values() if isinstance(m, GroupCall)]
        await product.save_group_calls(session, connection=connection, calls=calls, now=now)
        mapped = await product.assign_accounts(
            session,
            connection=connection,
            group_ids={call.group_id for call in calls},
            match=options.account_match,
        )
        activities = {i: m for i, m in batch.items() if isinstance(m, Activity)}
        member_of = await product.user_groups(
            session,
            connection=connection,
            user_ids={a.user_id for a in activities.values() if a.group_id is None and a.user_id},
        )
        group_of = {
            event_id: activity.group_id
            or (member_of.get(activity.user_id) if activity.user_id else None)
            for event_id, activity in activities.items()
        }
        groups = {group for group in group_of.values() if group is not None}
        if options.account_match == "group_id":
            account_of: dict[str, str | None] = {group: group for group in groups}
        else:
            account_of = await product.group_accounts(
                session, connection=connection, group_ids=groups
            )
        crm = crm_of(connection)
        for event_id, activity in activities.items():
            group = group_of[event_id]
            account = account_of.get(group) if group is not None else None
            if account is not None:
                matched.events[(connection, crm, account)].extend(activity.events(account))
                matched.origin[event_id] = (connection, crm, account)
                matched.done.append(event_id)
            elif group is not None:
                waiting = (product.group_key(group), _why_group_waits(group, options))
                matched.waiting[event_id] = waiting
            elif activity.user_id is not None:
                waiting = (product.user_key(activity.user_id), _why_user_waits(activity.user_id))
                matched.waiting[event_id] = waiting
            else:
                # Anonymous and in no product account: nothing could ever place it.
                matched.ignored.append(event_id)
        matched.done.extend(i for i, m in batch.items() if isinstance(m, GroupCall))
        released = await product.release(
            session,
            connection=connection,
            keys={product.group_key(group) for group in mapped}
            | {product.user_key(call.user_id) for call in calls if call.user_id is not None},
            now=now,
        )
        if released:
            log.info("product_events_matched", connection=connection, released=released)
    return matched


async def match_new_domains(
    session: AsyncSession,
    *,
    domains: Mapping[str, Mapping[str, str]],
    connections: ConnectionRegistry,
    now: datetime,
) -> int:
    """CRM accounts that just got a domain ({connection: {domain: crm_id}}) take the waiting
    product accounts with that website, on connections that match by domain."""
    released = 0
    for connection, by_domain in domains.items():
        if connections.segment_options(connection).account_match != "domain":
            continue
        mapped = await product.match_domains(session, connection=connection, domains=by_domain)
        released += await product.release(
            session,
            connection=connection,
            keys={product.group_key(group) for group in mapped},
            now=now,
        )
    return released
