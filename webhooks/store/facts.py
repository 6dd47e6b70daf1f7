"""Facts repository: fold normalised events into per-account facts, read scoring snapshots.

Both directions work on a whole batch of accounts with a handful of statements, so the
worker's cost grows with the batch, not with the number of statements per event.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import TextClause

from connector import bounds
from connector.base import PROPERTY_ATTRIBUTE_PREFIX, property_attribute
from connector.bounds import parse_timestamp
from connector.model import (
    AccountAttributes,
    AccountDeleted,
    AttributeOrigin,
    Collaboration,
    ContactUpsert,
    CsmSentiment,
    Interaction,
    NormalisedEvent,
    Outcome,
    SurveyResponse,
    Ticket,
    Usage,
)
from connector.segment import normalised_domain
from signals.config import (
    NO_READS,
    AnySource,
    CrmPropertySource,
    FactReads,
    ProductEventsSource,
    SurveySource,
)
from signals.model import AccountFacts, Rating, Sentiment, feature_key
from signals.voice import LATEST_DAYS, NO_VOICE, Answer, Voice, survey_value, voice
from webhooks.store import pruning
from webhooks.store.dialect import is_postgresql, upsert_insert
from webhooks.store.latest import latest_rows
from webhooks.store.models import (
    Account,
    AccountRow,
    AttributeChange,
    CollaborationFact,
    ContactFact,
    FeatureMonth,
    InteractionFact,
    OutcomeFact,
    SentimentFact,
    SourceKind,
    SurveyFact,
    TicketFact,
    UsageMonth,
    core_table,
)

# Momentum compares ARR with its value this long before the moment scored; retention keeps
# attribute history this much longer than the other facts for it.
ARR_LOOKBACK = timedelta(days=365)

_Latest = TypeVar("_Latest", ContactUpsert, Ticket)
_Read = TypeVar("_Read")
# Which source wins where the CRM and a native source both give an attribute (settings'
# attribute_precedence): the CRM whenever it has a value, or the later value.
Precedence = Literal["crm", "latest"]

# Attributes whose past values matter (ARR a year ago); others only keep their latest value.
# Attributes whose every change is kept (attribute_history), for the value in force at a past
# moment: these, and the CRM properties custom indicators read (PROPERTY_ATTRIBUTE_PREFIX).
TRACKED_ATTRIBUTES = frozenset({"arr", "seats"})


def _tracked(name: str) -> bool:
    return name in TRACKED_ATTRIBUTES or name.startswith(PROPERTY_ATTRIBUTE_PREFIX)


ESCALATION_PRIORITIES = ("high", "urgent")
# Attributes also copied to a column of their own, for the accounts API's filters.
COLUMN_ATTRIBUTES = frozenset({"segment", "owner"})

_KIND_OF: dict[type, str] = {
    Usage: "usage",
    Interaction: "interaction",
    ContactUpsert: "contact",
    Collaboration: "collaboration",
    Ticket: "ticket",
    # Not for zero counts (no answer is never a count): read_facts reads survey answers only
    # for connections that ever sent one, so a deployment without surveys pays nothing.
    SurveyResponse: "survey",
    # Likewise: sentiments are read only for connections where one was ever set.
    CsmSentiment: "sentiment",
}


def _kinds_of(event: NormalisedEvent) -> tuple[str, ...]:
    """The kinds of facts an event is evidence of: usage naming a feature is also "feature",
    so where a source never names features, key-feature adoption is no data, not zero."""
    kind = _KIND_OF.get(type(event))
    if kind is None:
        return ()
    if isinstance(event, Usage) and event.feature is not None:
        return (kind, "feature")
    return (kind,)


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


def _replaces(
    held: Mapping[str, Any] | None,
    value: str | None,
    *,
    at: datetime,
    origin: AttributeOrigin,
    precedence: Precedence,
) -> bool:
    """Whether `value` (from `origin`, as of `at`) replaces the attribute value `held`.

    A source only erases what it gave itself: a CRM without a value for an attribute (a
    property the portal lacks, an empty field) never clears one a native source gave; a
    native `null` is the explicit clear. Under `crm` precedence the CRM's value wins whenever
    it has one, and a native value only fills what the CRM leaves empty. Otherwise, as
    delivery is out of order, only a later `at` replaces.
    """
    if held is None or held.get("value") is None:
        return held is None or datetime.fromisoformat(held["at"]) <= at
    # Values stored before sources were recorded are taken as another source's: no CRM
    # blank erases them.
    held_origin = held.get("origin", "native")
    if value is None and origin == "crm" and held_origin != "crm":
        return False
    if precedence == "crm" and origin != held_origin:
        return origin == "crm" and value is not None
    return datetime.fromisoformat(held["at"]) <= at


def apply_attributes(
    account: AccountRow,
    *,
    attributes: Mapping[str, str | None],
    at: datetime,
    origin: AttributeOrigin = "crm",
    precedence: Precedence = "crm",
) -> None:
    """Merge attribute values into the account, per attribute as `_replaces` decides."""
    merged: dict[str, Any] = dict(account.attributes or {})
    for name, value in attributes.items():
        if not _replaces(merged.get(name), value, at=at, origin=origin, precedence=precedence):
            continue
        merged[name] = {"value": value, "at": at.isoformat(), "origin": origin}
        if name == "name":
            account.name = value
        elif name == "domain":
            account.domain = None if value is None else normalised_domain(value)
        elif name in COLUMN_ATTRIBUTES:
            setattr(account, name, None if value in (None, "") else str(value)[:255])
        elif name == "arr":
            arr = _float(value)
            account.arr = arr if arr is not None and math.isfinite(arr) and arr >= 0 else None
        elif name == "renewal_date":
            account.renewal_date = _calendar_date(value)
    account.attributes = merged


def _last_changed(account: AccountRow) -> datetime:
    """When the record's attributes last changed, as far as the events told (the minimum
    datetime when they told nothing)."""
    times = [
        datetime.fromisoformat(entry["at"])
        for entry in (account.attributes or {}).values()
        if isinstance(entry, dict) and "at" in entry
    ]
    return max(times, default=datetime.min.replace(tzinfo=UTC))


def _dated_row(
    account_id: int, event: Collaboration | Outcome | CsmSentiment
) -> tuple[type, dict[str, Any]]:
    """The table and row of a fact that is only appended: its account, time and what it says."""
    match event:
        case Collaboration():
            return CollaborationFact, {"account_id": account_id, "at": event.at, "kind": event.kind}
        case Outcome():
            return OutcomeFact, {
                "account_id": account_id, "at": event.at, "outcome": event.outcome,
                "arr": event.arr,
            }  # fmt: skip
    return SentimentFact, {
        "account_id": account_id, "at": event.at, "rating": event.rating, "reason": event.reason,
        "note": event.note, "author": event.author, "until": event.until,
    }  # fmt: skip


class _Batch:
    """The rows one batch of events adds, collected first and written in bulk."""

    def __init__(self, precedence: Precedence) -> None:
        self.precedence = precedence
        # {(account id, month, user): [the bits of the days used, events]}, merged before
        # writing; the same per feature, {(account id, feature, month, user): [...]}.
        self.usage: dict[tuple[int, date, str], list[int]] = {}
        self.features: dict[tuple[int, str, date, str], list[int]] = {}
        self.contacts: dict[tuple[int, str], ContactUpsert] = {}
        # The earliest event of each contact in the batch: its first_seen_at when it is new.
        self.contacts_first_seen: dict[tuple[int, str], datetime] = {}
        self.tickets: dict[tuple[int, str], Ticket] = {}
        # {(account id, kind, respondent, at): the answer}: a resend within the batch is one.
        self.surveys: dict[tuple[int, str, str, datetime], SurveyResponse] = {}
        # Interactions the source identifies, the last version in the batch per id.
        self.identified: dict[tuple[int, str], dict[str, Any]] = {}
        self.rows: dict[type, list[dict[str, Any]]] = {
            InteractionFact: [], CollaborationFact: [], OutcomeFact: [], AttributeChange: [],
            SentimentFact: [],
        }  # fmt: skip

    def add(self, account: AccountRow, event: NormalisedEvent) -> None:
        match event:
            case Usage():
                self._add_usage(account, event)
            case Interaction(at=at):
                row = {"account_id": account.id, "at": at, "channel": event.channel,
                       "direction": event.direction, "contact": event.contact,
                       "source_id": event.source_id}  # fmt: skip
                if event.source_id is None:
                    self.rows[InteractionFact].append(row)
                else:
                    self.identified[(account.id, event.source_id)] = row
                account.last_interaction_at = _later(account.last_interaction_at, at)
            case ContactUpsert(contact=contact, at=at):
                _keep_latest(self.contacts, (account.id, contact), event)
                seen = self.contacts_first_seen.get((account.id, contact))
                self.contacts_first_seen[(account.id, contact)] = (
                    at if seen is None else min(seen, at)
                )
            case SurveyResponse(at=at, kind=kind, respondent=respondent):
                self.surveys[(account.id, kind, respondent, at)] = event
            case Ticket(ticket=ticket):
                _keep_latest(self.tickets, (account.id, ticket), event)
            case Collaboration() | Outcome() | CsmSentiment():
                model, row = _dated_row(account.id, event)
                self.rows[model].append(row)
            case AccountAttributes(at=at, attributes=attributes, origin=origin):
                if account.deleted_at is not None and at > account.deleted_at:
                    # Only a restored record changes after its deletion (HubSpot's restore).
                    account.deleted_at = None
                apply_attributes(
                    account,
                    attributes=attributes,
                    at=at,
                    origin=origin,
                    precedence=self.precedence,
                )
                self.rows[AttributeChange].extend(
                    {"account_id": account.id, "name": name, "at": at, "value": value}
                    for name, value in attributes.items()
                    if _tracked(name)
                )
            case AccountDeleted(at=at):
                # A deletion older than the record's latest change arrived late: the change
                # after it was a restore, so the record lives (the mirror of the case above).
                if at >= _last_changed(account):
                    account.deleted_at = at

    def _add_usage(self, account: AccountRow, event: Usage) -> None:
        day = event.at.astimezone(UTC).date()
        month, bit = _month_of(day), _day_bit(day)
        _count(self.usage, (account.id, month, event.user), bit)
        if event.feature is not None and (feature := feature_key(event.feature)):
            _count(self.features, (account.id, feature, month, event.user), bit)
        account.last_usage_at = _later(account.last_usage_at, event.at)

    async def write(self, session: AsyncSession) -> None:
        if self.usage:
            await _merge_roll_up(session, UsageMonth, self.usage)
        if self.features:
            await _merge_roll_up(session, FeatureMonth, self.features)
        for model, rows in self.rows.items():
            if rows:
                await session.execute(upsert_insert(session, model), rows)
        if self.identified:
            insert = upsert_insert(session, InteractionFact)
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["account_id", "source_id"],
                    index_where=InteractionFact.source_id.is_not(None),
                    set_={
                        name: insert.excluded[name]
                        for name in ("at", "channel", "direction", "contact")
                    },
                ),
                list(self.identified.values()),
            )
        if self.contacts:
            await _upsert_contacts(session, self.contacts, self.contacts_first_seen)
        if self.tickets:
            await _upsert_tickets(session, self.tickets)
        if self.surveys:
            await _upsert_surveys(session, self.surveys)


# Usage roll-ups: per user and month, the bits of the days used and the events of those days.
# Their keys, in order, with the PostgreSQL array type each is bound as.
_ROLL_UP_KEYS: dict[type, tuple[tuple[str, str], ...]] = {
    UsageMonth: (("account_id", "bigint"), ("month", "date"), ("user", "varchar")),
    FeatureMonth: (
        ("account_id", "bigint"), ("feature", "varchar"), ("month", "date"), ("user", "varchar"),
    ),
}  # fmt: skip


def _merge_roll_up_postgresql(model: type) -> TextClause:
    """The batch's rows merged by an UPDATE of those that exist and an INSERT of those that do
    not, in one statement. An ON CONFLICT DO UPDATE locks each existing row before it looks at
    it, and that lock is a WAL record of its own (about 50 bytes an event); an UPDATE needs
    none. The ON CONFLICT stays for a row another transaction adds meanwhile (the accounts are
    locked, so only a worker that does not lock them could). A month whose events are not
    known (NULL, from before they were counted) stays unknown."""
    table, keys = model.__tablename__, _ROLL_UP_KEYS[model]  # type: ignore[attr-defined]
    columns = [f'"{name}"' for name, _ in keys]
    arrays = [f"CAST(:{name} AS {kind}[])" for name, kind in keys]
    joined = " AND ".join(f"held.{c} = batch.{c}" for c in columns)
    names = ", ".join([*columns, "days", "events"])
    return text(f"""
WITH batch AS (
    SELECT * FROM unnest({", ".join(arrays)}, CAST(:days AS integer[]), CAST(:events AS integer[]))
        AS b ({names})
), merged AS (
    UPDATE {table} AS held SET days = held.days | batch.days, events = held.events + batch.events
    FROM batch WHERE {joined}
)
INSERT INTO {table} ({names})
SELECT {", ".join(f"batch.{c}" for c in [*columns, "days", "events"])} FROM batch
WHERE NOT EXISTS (SELECT FROM {table} AS held WHERE {joined})
ON CONFLICT ({", ".join(columns)}) DO UPDATE
SET days = {table}.days | excluded.days, events = {table}.events + excluded.events""")  # noqa: S608 - names are this module's constants


_MERGE_ROLL_UP_POSTGRESQL = {model: _merge_roll_up_postgresql(model) for model in _ROLL_UP_KEYS}


async def _merge_roll_up(
    session: AsyncSession, model: type, rows: Mapping[tuple[Any, ...], list[int]]
) -> None:
    """Add the batch's days and events to a usage roll-up (`usage_months`, `feature_months`):
    `rows` maps each key (in _ROLL_UP_KEYS order) to [day bits, events]."""
    names = [name for name, _ in _ROLL_UP_KEYS[model]]
    if is_postgresql(session):
        keys = list(rows)
        columns: dict[str, list[Any]] = {
            name: [key[i] for key in keys] for i, name in enumerate(names)
        }
        columns["days"] = [days for days, _ in rows.values()]
        columns["events"] = [events for _, events in rows.values()]
        await session.execute(_MERGE_ROLL_UP_POSTGRESQL[model], columns)
        return
    insert = upsert_insert(session, model)
    held = core_table(model).c
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=names,
            set_={
                "days": held.days.bitwise_or(insert.excluded.days),
                "events": held.events + insert.excluded.events,
            },
        ),
        [
            {**dict(zip(names, key, strict=True)), "days": days, "events": events}
            for key, (days, events) in rows.items()
        ],
    )


def _count(held: dict[Any, list[int]], key: Any, bit: int) -> None:
    """One more event of a roll-up row on the day of `bit`."""
    found = held.get(key)
    if found is None:
        held[key] = [bit, 1]
    else:
        found[0] |= bit
        found[1] += 1


def _keep_latest(
    held: dict[tuple[int, str], _Latest], key: tuple[int, str], event: _Latest
) -> None:
    current = held.get(key)
    if current is None or event.at >= current.at:
        held[key] = event


async def fold(
    session: AsyncSession,
    *,
    events: Sequence[tuple[AccountRow, NormalisedEvent]],
    now: datetime,
    precedence: Precedence = "crm",
) -> None:
    """Fold a batch of events into the facts of their (locked) accounts.

    Each kind of fact a connection sends is recorded with the earliest time it reaches back to
    (an import of last quarter's usage covers last quarter): read_facts takes a zero count as
    evidence only for windows the source covered.
    """
    batch = _Batch(precedence)
    kinds: dict[tuple[str, str], datetime] = {}
    for account, event in events:
        known_since = account.first_seen_at or account.created_at
        if known_since is None or event.at < known_since:
            account.first_seen_at = event.at
        for kind in _kinds_of(event):
            key = (account.connection, kind)
            kinds[key] = min(kinds.get(key, now), event.at)
        batch.add(account, event)
    await batch.write(session)
    if kinds:
        insert = upsert_insert(session, SourceKind)
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["connection", "kind"],
                set_={"first_seen_at": insert.excluded.first_seen_at},
                where=SourceKind.first_seen_at > insert.excluded.first_seen_at,
            ),
            [
                {"connection": c, "kind": k, "first_seen_at": at}
                for (c, k), at in sorted(kinds.items())
            ],
        )


async def contact_accounts(
    session: AsyncSession, *, connection: str, contacts: Collection[str]
) -> dict[str, list[str]]:
    """Where each contact is now: the CRM ids of the `connection` accounts whose facts hold the
    contact without having seen it leave."""
    if not contacts:
        return {}
    rows = await session.execute(
        select(ContactFact.contact, Account.crm_id)
        .join(Account, Account.id == ContactFact.account_id)
        .where(
            Account.connection == connection,
            ContactFact.contact.in_(contacts),
            ContactFact.left_at.is_(None),
        )
        .order_by(ContactFact.contact, Account.crm_id)
    )
    found: dict[str, list[str]] = {}
    for contact, crm_id in rows:
        found.setdefault(contact, []).append(crm_id)
    return found


async def _upsert_contacts(
    session: AsyncSession,
    contacts: Mapping[tuple[int, str], ContactUpsert],
    first_seen: Mapping[tuple[int, str], datetime],
) -> None:
    insert = upsert_insert(session, ContactFact)
    # A later event wins; an older one arriving late must not undo it.
    statement = insert.on_conflict_do_update(
        index_elements=["account_id", "contact"],
        set_={
            "title": insert.excluded.title,
            "executive": insert.excluded.executive,
            "left_at": insert.excluded.left_at,
            "updated_at": insert.excluded.updated_at,
        },
        where=ContactFact.updated_at <= insert.excluded.updated_at,
    )
    await session.execute(
        statement,
        [
            {
                "account_id": account_id,
                "contact": contact,
                "title": event.title,
                "executive": bool(event.executive),
                "left_at": event.at if event.left else None,
                "updated_at": event.at,
                # Kept from the first insert on: a later event updates the rest only.
                "first_seen_at": first_seen.get((account_id, contact), event.at),
            }
            for (account_id, contact), event in contacts.items()
        ],
    )


async def _upsert_surveys(
    session: AsyncSession, surveys: Mapping[tuple[int, str, str, datetime], SurveyResponse]
) -> None:
    """A resent answer (same respondent, kind and moment) replaces the one held."""
    insert = upsert_insert(session, SurveyFact)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["account_id", "kind", "respondent", "at"],
            set_={"score": insert.excluded.score, "comment": insert.excluded.comment},
        ),
        [
            {"account_id": account_id, "kind": kind, "respondent": respondent, "at": at,
             "score": answer.score, "comment": answer.comment}
            for (account_id, kind, respondent, at), answer in sorted(
                surveys.items(), key=lambda item: item[0]
            )
        ],
    )  # fmt: skip


async def _upsert_tickets(session: AsyncSession, tickets: Mapping[tuple[int, str], Ticket]) -> None:
    insert = upsert_insert(session, TicketFact)
    # The first sighting sets when it was opened; later events may change its priority.
    statement = insert.on_conflict_do_update(
        index_elements=["account_id", "ticket"],
        set_={"priority": insert.excluded.priority, "updated_at": insert.excluded.updated_at},
        where=TicketFact.updated_at <= insert.excluded.updated_at,
    )
    await session.execute(
        statement,
        [
            {
                "account_id": account_id,
                "ticket": ticket,
                "opened_at": event.at,
                "priority": event.priority,
                "updated_at": event.at,
            }
            for (account_id, ticket), event in tickets.items()
        ],
    )


async def read_facts(
    session: AsyncSession,
    *,
    accounts: Sequence[AccountRow],
    as_of: datetime,
    historical: bool = False,
    reads: FactReads = NO_READS,
) -> dict[int, AccountFacts]:
    """Scoring snapshots for the accounts, every windowed count in one grouped query per table.

    A count is None (no data) where the account's connection has never sent that kind of fact.
    A zero count is evidence only when the account has been visible to that source for the
    whole window (both the account's first sighting, its first record or an older event about
    it, and the source's first fact of that kind are at least a window old); before that it is
    None too, so a new account is not judged
    on records nobody could have sent yet. A count above zero is always kept.

    `historical` reads the facts as they stood at a past `as_of` (backtests): every window also
    ends at `as_of`, the last use is the last usage day up to it, contacts who left later still
    count, seats and ARR are their tracked values at that time (none before the first), and
    other attributes count only when their current value was set by then. Contact titles and
    which kinds of facts the connection sends are as they are now. The worker reads
    with the windows open-ended, so a future-dated event still counts as soon as it arrives.

    `reads` says what the configuration needs beyond the built-in facts: its key features,
    whose users make the key-feature adoption, and its custom indicators' sources, read into
    `custom`. No key features, or a connection that never named a feature, is no data.
    """
    if not accounts:
        return {}
    ids = [account.id for account in accounts]
    connections = {account.connection for account in accounts}
    seen: dict[tuple[str, str], datetime] = {
        (connection, kind): _aware(first_seen_at)
        for connection, kind, first_seen_at in (
            await session.execute(
                select(SourceKind.connection, SourceKind.kind, SourceKind.first_seen_at).where(
                    SourceKind.connection.in_(connections)
                )
            )
        ).all()
    }
    today = as_of.astimezone(UTC).date()
    until = as_of if historical else None
    usage = await _usage(session, ids, today, closed=historical)
    key_users: dict[int, tuple[int, float]] = {}
    if reads.key_features:
        key_users = await _feature_usage(session, ids, reads.key_features, today, closed=historical)
    interactions = await _interactions(session, ids, as_of - timedelta(days=90), until)
    collaboration = await _counts(
        session,
        CollaborationFact,
        CollaborationFact.at,
        ids,
        as_of - timedelta(days=180),
        until=until,
    )
    tickets = await _tickets(session, ids, as_of - timedelta(days=90), until)
    voices = await _of_senders(
        accounts, seen, "survey", lambda ids: _voices(session, ids, as_of, until)
    )
    sentiments = await _of_senders(
        accounts, seen, "sentiment", lambda ids: sentiments_in_force(session, ids, as_of)
    )
    arr_before = await _attribute_at(session, ids, "arr", as_of - ARR_LOOKBACK)
    past: dict[str, dict[int, str | None]] = {}
    last_used: dict[int, datetime | None] = {}
    if historical:
        tracked = ("arr", "seats", *_property_attributes(reads.sources))
        past = {name: await _attribute_at(session, ids, name, as_of) for name in tracked}
        last_used = await _last_usage_until(
            session,
            [a.id for a in accounts if a.last_usage_at is not None and a.last_usage_at > as_of],
            as_of,
        )

    snapshots: dict[int, AccountFacts] = {}
    # Each account's rule for a zero count (custom indicators are read after).
    zero_evidence: dict[int, Callable[..., int | None]] = {}
    for account in accounts:
        # Since when this account has been visible to each kind of source.
        visible = {
            kind: max(_aware(account.first_seen_at or account.created_at), first_seen)
            for (connection, kind), first_seen in seen.items()
            if connection == account.connection
        }

        def count(
            value: int, kind: str, days: int, visible: dict[str, datetime] = visible
        ) -> int | None:
            """The count as evidence, or None: see the docstring."""
            since = visible.get(kind)
            if since is None:
                return None
            return value if value > 0 or since <= as_of - timedelta(days=days) else None

        zero_evidence[account.id] = count

        values = {
            k: v["value"]
            for k, v in (account.attributes or {}).items()
            # Historical: a value set after `as_of` was not in force then (nor known).
            if v["value"] and not (historical and datetime.fromisoformat(v["at"]) > as_of)
        }
        last_usage_at = account.last_usage_at
        if historical:
            for name, found in past.items():
                # Tracked attributes: the value in force then, and none before the first one.
                value = found.get(account.id)
                if value is None:
                    values.pop(name, None)
                else:
                    values[name] = str(value)
            if last_usage_at is not None and last_usage_at > as_of:
                last_usage_at = last_used.get(account.id)
        used = usage.get(account.id, _NO_USAGE)
        users_30 = count(used.users_30d, "usage", 30)
        users_prev = count(used.users_prev_30d, "usage", 60)
        total, customer, engaged, executives = interactions.get(account.id, (0, 0, 0, 0))
        opened, escalated = tickets.get(account.id, (0, 0))
        snapshots[account.id] = AccountFacts(
            account_id=account.crm_id,
            as_of=as_of,
            crm=account.crm,
            attributes=values,
            customer_since=_customer_since(account, values),
            seats=_int(values.get("seats")),
            active_users_30d=users_30,
            active_users_prev_30d=users_prev,
            mean_daily_active_users_30d=None if users_30 is None else used.user_days_30d / 30.0,
            # Events are evidence wherever the users are (they are counted from the same rows).
            usage_events_30d=None if users_30 is None else used.events_30d,
            usage_events_prev_30d=None if users_prev is None else used.events_prev_30d,
            key_feature_users_30d=count(key_users.get(account.id, (0,))[0], "feature", 30)
            if reads.key_features and users_30 is not None else None,
            last_usage_at=last_usage_at,
            # The customer's share needs the total as evidence, whatever its own count.
            customer_interactions_90d=None if (interactions_90d := count(
                total, "interaction", 90)) is None else customer,
            total_interactions_90d=interactions_90d,
            collaboration_events_180d=count(collaboration.get(account.id, 0), "collaboration", 180),
            contacts_engaged_90d=count(engaged, "interaction", 90),
            executives_engaged_90d=count(executives, "interaction", 90),
            tickets_90d=count(opened, "ticket", 90),
            # Escalations are a share of the tickets: evidence where the tickets are.
            escalations_90d=None if count(opened, "ticket", 90) is None else escalated,
            arr=_float(values.get("arr")),
            arr_12m_ago=_float(arr_before.get(account.id)),
            sentiment=sentiments.get(account.id),
            **asdict(voices.get(account.id, NO_VOICE)),
        )  # fmt: skip
    if reads.sources:
        custom = await _custom_values(
            session,
            snapshots,
            reads.sources,
            as_of,
            historical=historical,
            evidence=lambda account_id, value, **where: zero_evidence[account_id](value, **where),
        )
        snapshots = {
            account_id: replace(facts, custom=custom[account_id])
            for account_id, facts in snapshots.items()
        }
    return snapshots


async def first_records(
    session: AsyncSession, *, accounts: Sequence[AccountRow]
) -> dict[int, datetime | None]:
    """When each account's first record dates from: its earliest fact of any kind (an
    attribute value, a usage day, an interaction, a collaboration event, a ticket); None when
    it has none. Before it the account did not exist as far as we know: a backtest leaves
    such cases unscored rather than read the missing facts as zeros."""
    ids = [account.id for account in accounts]
    first: dict[int, datetime | None] = dict.fromkeys(ids)

    def keep(account_id: int, at: datetime | None) -> None:
        known = first.get(account_id)
        if at is not None and (known is None or at < known):
            first[account_id] = at

    for account in accounts:
        for entry in (account.attributes or {}).values():
            if isinstance(entry, Mapping) and entry.get("at"):
                keep(account.id, datetime.fromisoformat(str(entry["at"])))
    dated: tuple[tuple[Any, Any], ...] = (
        (AttributeChange.account_id, AttributeChange.at),
        (InteractionFact.account_id, InteractionFact.at),
        (CollaborationFact.account_id, CollaborationFact.at),
        (TicketFact.account_id, TicketFact.opened_at),
    )
    for account_id, at in dated:
        rows = await session.execute(
            select(account_id, func.min(at)).where(account_id.in_(ids)).group_by(account_id)
        )
        for found_id, earliest in rows:
            keep(found_id, earliest)
    earliest_usage = aliased(UsageMonth)
    # Per account, its first month: one index probe on the primary key (account, month). A
    # grouped min() joined back let PostgreSQL misjudge it and scan the whole table per call
    # (330 ms for 17 accounts on a 100,000-account book); materialised as in _last_usage_until.
    first_month = (
        select(
            Account.id.label("account_id"),
            select(earliest_usage.month)
            .where(earliest_usage.account_id == Account.id)
            .order_by(earliest_usage.month)
            .limit(1)
            .scalar_subquery()
            .label("month"),
        )
        .where(Account.id.in_(ids))
        .cte("first_months")
        .prefix_with("MATERIALIZED")
    )
    # The lowest set bit of a month's days is its first day; the smallest of them among the
    # users is the month's first day of use.
    days = await session.execute(
        select(
            UsageMonth.account_id,
            UsageMonth.month,
            func.min(UsageMonth.days.bitwise_and(-UsageMonth.days)),
        )
        .join(
            first_month,
            and_(
                UsageMonth.account_id == first_month.c.account_id,
                UsageMonth.month == first_month.c.month,
            ),
        )
        .group_by(UsageMonth.account_id, UsageMonth.month)
    )
    for found_id, month, lowest in days:
        day = month + timedelta(days=int(lowest).bit_length() - 1)
        # Usage is kept per day: the account existed from that day's start at the latest.
        keep(found_id, datetime.combine(day, time.min, tzinfo=UTC))
    return first


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _customer_since(account: AccountRow, values: Mapping[str, str]) -> datetime | None:
    """Since when the account is a customer, for its onboarding period: the customer-since
    date the CRM or a native event gives; else, where the record states a lifecycle (so it is
    known to be a customer, not merely assumed), its creation in the CRM, or for an account
    without CRM record its first sighting. None: never onboarding."""
    since = parse_timestamp(values.get("customer_since"))
    if since is not None or not values.get("lifecycle"):
        return since
    created = parse_timestamp(values.get("created"))
    if created is None and account.crm == "native":
        created = _aware(account.first_seen_at or account.created_at)
    return created


def _calendar_date(value: str | None) -> date | None:
    try:
        return None if value in (None, "") else bounds.calendar_date(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


# Bit d-1 of UsageMonth.days is day d of the month.
_ALL_DAYS = (1 << 31) - 1


def _month_of(day: date) -> date:
    return day.replace(day=1)


def _day_bit(day: date) -> int:
    return 1 << (day.day - 1)


def _next_month(month: date) -> date:
    return (month + timedelta(days=31)).replace(day=1)


def _days_between(month: date, first: date | None, last: date | None) -> int:
    """The bits of `month`'s days from `first` to `last`, both included (None: unbounded)."""
    start = month if first is None else max(first, month)
    month_end = _next_month(month) - timedelta(days=1)
    end = month_end if last is None else min(last, month_end)
    if start > end:
        return 0
    return ((1 << end.day) - 1) & ~((1 << (start.day - 1)) - 1)


def _window_bits(
    first: date, last: date | None, months: Sequence[date], model: type = UsageMonth
) -> ColumnElement[int]:
    """A roll-up's `days` cut to the days from `first` to `last` (None: no end), for rows of
    `months` (the months of the read) or, when `last` is None, any later month."""
    masks = {month: _days_between(month, first, last) for month in months}
    mask = case(masks, value=model.month, else_=_ALL_DAYS if last is None else 0)  # type: ignore[attr-defined]
    return cast(model.days.bitwise_and(mask), BigInteger)  # type: ignore[attr-defined]


def _popcount(bits: Any) -> Any:
    """The set bits of a value below 2**32, as SQL: neither SQLite nor PostgreSQL has a
    popcount for integers, so the SWAR sum of bit pairs, nibbles and bytes on 64-bit integers
    (constants inlined: PostgreSQL has no `bigint >> bigint` for a bound shift)."""

    def n(value: int) -> Any:
        return literal_column(str(value))

    pairs = bits - bits.bitwise_rshift(n(1)).bitwise_and(n(0x55555555))
    nibbles = pairs.bitwise_and(n(0x33333333)) + pairs.bitwise_rshift(n(2)).bitwise_and(
        n(0x33333333)
    )
    bytes_ = (nibbles + nibbles.bitwise_rshift(n(4))).bitwise_and(n(0x0F0F0F0F))
    return (bytes_ * n(0x01010101)).bitwise_and(n(0xFFFFFFFF)).bitwise_rshift(n(24))


class _Usage(NamedTuple):
    users_30d: int = 0
    users_prev_30d: int = 0
    user_days_30d: int = 0
    # None where a month of the window began before events were counted (migration 0027).
    events_30d: float | None = 0.0
    events_prev_30d: float | None = 0.0


_NO_USAGE = _Usage()


def _months_back(today: date, days: int) -> list[date]:
    """The months of the `days` days up to `today`, oldest first."""
    months = [_month_of(today - timedelta(days=days - 1))]
    while months[-1] < _month_of(today):
        months.append(_next_month(months[-1]))
    return months


async def _usage(
    session: AsyncSession, ids: Collection[int], today: date, *, closed: bool = False
) -> dict[int, _Usage]:
    """Per account: distinct users in the 30 days to `today` and in the 30 days before those,
    user-days in the first (each day counted once per user), and the events of both windows.
    Open-ended (`closed` False), days after `today` count as recent.

    Events are kept per user and month: a month only partly in a window gives it the share of
    its events its active days in the window hold (a user's events spread over their days)."""
    last_30, last_60 = today - timedelta(days=30), today - timedelta(days=60)
    months = _months_back(today, 60)
    window = [UsageMonth.account_id.in_(ids), UsageMonth.month >= months[0]]
    if closed:
        window.append(UsageMonth.month <= months[-1])
    bits = (
        select(
            UsageMonth.account_id,
            UsageMonth.user,
            # 64 bits, as the window bits: the popcount's products overflow 32.
            cast(UsageMonth.days, BigInteger).label("days"),
            UsageMonth.events,
            _window_bits(last_30 + timedelta(days=1), today if closed else None, months).label(
                "recent"
            ),
            _window_bits(last_60 + timedelta(days=1), last_30, months).label("earlier"),
        )
        .where(*window)
        # OFFSET 0 keeps the window bits computed once per row: merged into the outer query (as
        # both SQLite and PostgreSQL would), the popcount's eight uses of `recent` each
        # recomputed its CASE, 40% of the read's time.
        .offset(0)
        .subquery()
    )
    active_days = _popcount(bits.c.days)

    def events_in(part: Any) -> Any:
        return func.sum(cast(bits.c.events, Float) * _popcount(part) / active_days)

    def unknown_in(part: Any) -> Any:
        return func.sum(case((and_(part != 0, bits.c.events.is_(None)), 1), else_=0))

    rows = await session.execute(
        select(
            bits.c.account_id,
            func.count(func.distinct(case((bits.c.recent != 0, bits.c.user)))),
            func.count(func.distinct(case((bits.c.earlier != 0, bits.c.user)))),
            func.sum(_popcount(bits.c.recent)),
            events_in(bits.c.recent),
            unknown_in(bits.c.recent),
            events_in(bits.c.earlier),
            unknown_in(bits.c.earlier),
        ).group_by(bits.c.account_id)
    )
    return {
        row[0]: _Usage(
            users_30d=row[1],
            users_prev_30d=row[2],
            user_days_30d=int(row[3] or 0),
            events_30d=None if row[5] else float(row[4] or 0.0),
            events_prev_30d=None if row[7] else float(row[6] or 0.0),
        )
        for row in rows
    }


async def _feature_usage(
    session: AsyncSession,
    ids: Collection[int],
    features: Collection[str],
    today: date,
    *,
    days: int = 30,
    closed: bool = False,
) -> dict[int, tuple[int, float]]:
    """Per account: the distinct users who used any of `features` (feature_key form) in the
    `days` to `today` (open-ended unless `closed`), and those features' events in them (a
    month partly in the window as in `_usage`)."""
    months = _months_back(today, days)
    window = [
        FeatureMonth.account_id.in_(ids),
        FeatureMonth.feature.in_(features),
        FeatureMonth.month >= months[0],
    ]
    if closed:
        window.append(FeatureMonth.month <= months[-1])
    inside = (
        select(
            FeatureMonth.account_id,
            FeatureMonth.user,
            FeatureMonth.events,
            cast(FeatureMonth.days, BigInteger).label("days"),
            _window_bits(
                today - timedelta(days=days - 1),
                today if closed else None,
                months,
                FeatureMonth,
            ).label("recent"),
        )
        .where(*window)
        .offset(0)  # see _usage
        .subquery()
    )
    rows = await session.execute(
        select(
            inside.c.account_id,
            func.count(func.distinct(inside.c.user)),
            func.sum(
                cast(inside.c.events, Float) * _popcount(inside.c.recent) / _popcount(inside.c.days)
            ),
        )
        .where(inside.c.recent != 0)
        .group_by(inside.c.account_id)
    )
    return {row[0]: (row[1], float(row[2] or 0.0)) for row in rows}


def _custom_value(
    source: ProductEventsSource, users: int, events: float, facts: AccountFacts
) -> float | None:
    """A product-events source's raw value for one account, None where its divisor is."""
    seats, active = facts.seats, facts.active_users_30d
    match source.aggregation:
        case "events":
            return events
        case "users":
            return float(users)
        case "events_per_user":
            return events / users if users else None
        case "events_per_seat":
            return events / seats if seats else None
        case "users_per_seat":
            return users / seats if seats else None
        case "share_of_active_users":
            return min(1.0, users / active) if active else None


def _property_attributes(sources: Sequence[AnySource]) -> list[str]:
    """The attributes the CRM-property sources among `sources` read, once each."""
    names = (
        name
        for source in sources
        if isinstance(source, CrmPropertySource)
        for name in source.field_names
    )
    return [property_attribute(name) for name in dict.fromkeys(names)]


def _property_value(source: CrmPropertySource, facts: AccountFacts) -> float | None:
    """A CRM-property source's raw value for one account: the first of its fields the record
    carries (an account has one CRM), as a number or as days from or to its date; None where
    the record has no value or one that is not a finite number or a date."""
    text = next(
        (
            value
            for name in source.field_names
            if (value := facts.attributes.get(property_attribute(name)))
        ),
        None,
    )
    if text is None:
        return None
    if source.value == "number":
        number = _float(text)
        return number if number is not None and math.isfinite(number) else None
    moment = parse_timestamp(text)
    if moment is None:
        return None
    days = (facts.as_of - moment).total_seconds() / 86_400
    return days if source.value == "days_since" else max(0.0, -days)


async def _custom_values(
    session: AsyncSession,
    snapshots: Mapping[int, AccountFacts],
    sources: Sequence[AnySource],
    as_of: datetime,
    *,
    historical: bool,
    evidence: Callable[..., int | None],
) -> dict[int, dict[str, float | None]]:
    """Per account, each source's value by its key: one read per set of features and window,
    one of survey answers for them all. `evidence(account id, count, kind=, days=)` is
    read_facts' rule for a zero (None: no data)."""
    values: dict[int, dict[str, float | None]] = {account_id: {} for account_id in snapshots}
    today = as_of.astimezone(UTC).date()
    reads: dict[tuple[tuple[str, ...], int], list[ProductEventsSource]] = {}
    surveys: list[SurveySource] = []
    for source in sources:
        if isinstance(source, CrmPropertySource):
            # Read with the record: the snapshot's attributes (as of then, for a backtest).
            for account_id, facts in snapshots.items():
                values[account_id][source.key] = _property_value(source, facts)
        elif isinstance(source, SurveySource):
            surveys.append(source)
        else:
            reads.setdefault((source.feature_keys, source.days), []).append(source)
    for (features, days), group in reads.items():
        found = await _feature_usage(
            session, list(snapshots), features, today, days=days, closed=historical
        )
        for account_id, facts in snapshots.items():
            users, events = found.get(account_id, (0, 0.0))
            known = evidence(account_id, users, kind="feature", days=days) is not None
            for source in group:
                values[account_id][source.key] = (
                    _custom_value(source, users, events, facts) if known else None
                )
    if surveys:
        answers = await _answers(
            session,
            list(snapshots),
            kinds={source.survey for source in surveys},
            since=as_of - timedelta(days=max(source.days for source in surveys)),
            until=as_of if historical else None,
        )
        for account_id in snapshots:
            found_answers = answers.get(account_id, [])
            for survey in surveys:
                value = survey_value(
                    found_answers,
                    as_of,
                    kind=survey.survey,
                    aggregation=survey.aggregation,
                    days=survey.days,
                    min_responses=survey.min_responses,
                )
                if survey.aggregation == "responses" and value is not None:
                    counted = evidence(account_id, int(value), kind="survey", days=survey.days)
                    value = None if counted is None else value
                values[account_id][survey.key] = value
    return values


async def _last_usage_until(
    session: AsyncSession, ids: Collection[int], as_of: datetime
) -> dict[int, datetime | None]:
    """The last use up to `as_of`, to the day: the end of the last usage day, capped at `as_of`
    (usage is kept per day, so an earlier time of day is not known)."""
    if not ids:
        return {}
    today = as_of.astimezone(UTC).date()
    month = _month_of(today)

    def until(row: Any) -> Any:
        """The row's days up to `as_of`."""
        cut = case((row.month == month, _days_between(month, None, today)), else_=_ALL_DAYS)
        return row.days.bitwise_and(cut)

    earlier = aliased(UsageMonth)
    # Per account, the latest month with a day up to `as_of`: one backwards index probe.
    latest = (
        select(earlier.month)
        .where(earlier.account_id == Account.id, earlier.month <= month, until(earlier) != 0)
        .order_by(earlier.month.desc())
        .limit(1)
        .scalar_subquery()
    )
    # Materialised first: flattened into the join, SQLite ran the probe once per usage row.
    picks = (
        select(Account.id.label("account_id"), latest.label("month"))
        .where(Account.id.in_(ids))
        .cte("last_months")
        .prefix_with("MATERIALIZED")
    )
    # The largest of the users' bits has the highest bit of them all: the last day.
    rows = await session.execute(
        select(UsageMonth.account_id, UsageMonth.month, func.max(until(UsageMonth)))
        .join(
            picks,
            and_(UsageMonth.account_id == picks.c.account_id, UsageMonth.month == picks.c.month),
        )
        .group_by(UsageMonth.account_id, UsageMonth.month)
    )
    found: dict[int, datetime | None] = {}
    for account_id, found_month, highest in rows:
        day = found_month + timedelta(days=int(highest).bit_length() - 1)
        end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        found[account_id] = min(end_of_day, as_of)
    return found


USAGE_ROLL_UPS: tuple[type, ...] = tuple(_ROLL_UP_KEYS)


async def prune_usage(
    session: AsyncSession, *, before: date, limit: int, model: type = UsageMonth
) -> int:
    """Delete up to `limit` rows of a usage roll-up (USAGE_ROLL_UPS) of months entirely before
    `before`; returns how many (the caller repeats until fewer than `limit` come back, each
    batch its own transaction)."""
    key = [getattr(model, name) for name, _ in _ROLL_UP_KEYS[model]]
    doomed = select(*key).where(model.month < _month_of(before)).limit(limit)  # type: ignore[attr-defined]
    result = await session.execute(
        delete(model).where(tuple_(*key).in_(doomed)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _interactions(
    session: AsyncSession, ids: Collection[int], since: datetime, until: datetime | None = None
) -> dict[int, tuple[int, int, int, int]]:
    """Per account: interactions, those the customer started, engaged people (distinct
    contacts still there, or unknown to the contacts facts) and executives among them."""
    window = [InteractionFact.account_id.in_(ids), InteractionFact.at > since]
    if until is not None:
        window.append(InteractionFact.at <= until)
    # Grouped per contact first, straight off the (account_id, at) index: the contacts join
    # and the distinct counts then see one row per person instead of one per interaction,
    # and no DISTINCT aggregate forces a sort of the whole window.
    people = (
        select(
            InteractionFact.account_id,
            InteractionFact.contact,
            func.count().label("total"),
            func.sum(case((InteractionFact.direction == "customer", 1), else_=0)).label("customer"),
        )
        .where(*window)
        .group_by(InteractionFact.account_id, InteractionFact.contact)
        .subquery()
    )
    present: ColumnElement[bool] = ContactFact.left_at.is_(None)
    if until is not None:
        # Contacts who left after `until` were still there then.
        present = or_(present, ContactFact.left_at > until)
    rows = await session.execute(
        select(
            people.c.account_id,
            func.sum(people.c.total),
            func.sum(people.c.customer),
            func.count(case((present, people.c.contact))),
            func.count(case((present & ContactFact.executive, people.c.contact))),
        )
        .outerjoin(
            ContactFact,
            and_(
                ContactFact.account_id == people.c.account_id,
                ContactFact.contact == people.c.contact,
            ),
        )
        .group_by(people.c.account_id)
    )
    return {row[0]: (int(row[1]), int(row[2] or 0), row[3], row[4]) for row in rows}


async def _counts(
    session: AsyncSession,
    model: Any,
    at: Any,
    ids: Collection[int],
    since: datetime,
    *,
    until: datetime | None = None,
) -> dict[int, int]:
    window = [model.account_id.in_(ids), at > since]
    if until is not None:
        window.append(at <= until)
    rows = await session.execute(
        select(model.account_id, func.count()).where(*window).group_by(model.account_id)
    )
    return {row[0]: row[1] for row in rows}


async def _tickets(
    session: AsyncSession, ids: Collection[int], since: datetime, until: datetime | None = None
) -> dict[int, tuple[int, int]]:
    window = [TicketFact.account_id.in_(ids), TicketFact.opened_at > since]
    if until is not None:
        window.append(TicketFact.opened_at <= until)
    rows = await session.execute(
        select(
            TicketFact.account_id,
            func.count(),
            func.sum(case((TicketFact.priority.in_(ESCALATION_PRIORITIES), 1), else_=0)),
        )
        .where(*window)
        .group_by(TicketFact.account_id)
    )
    return {row[0]: (row[1], int(row[2] or 0)) for row in rows}


async def _answers(
    session: AsyncSession,
    ids: Collection[int],
    *,
    kinds: Collection[str],
    since: datetime,
    until: datetime | None,
) -> dict[int, list[Answer]]:
    """Each account's survey answers of `kinds` after `since` (up to `until` when given),
    oldest first."""
    window = [
        SurveyFact.account_id.in_(ids),
        SurveyFact.kind.in_(kinds),
        SurveyFact.at > since,
    ]
    if until is not None:
        window.append(SurveyFact.at <= until)
    rows = await session.execute(
        select(SurveyFact.account_id, SurveyFact.kind, SurveyFact.at, SurveyFact.score)
        .where(*window)
        .order_by(SurveyFact.account_id, SurveyFact.at, SurveyFact.respondent)
    )
    answers: dict[int, list[Answer]] = defaultdict(list)
    for account_id, kind, at, score in rows:
        answers[account_id].append(Answer(kind=kind, at=_aware(at), score=score))
    return answers


async def _voices(
    session: AsyncSession, ids: Collection[int], as_of: datetime, until: datetime | None
) -> dict[int, Voice]:
    """Each account's survey measures (signals.voice) from its NPS and CSAT answers of the
    last LATEST_DAYS (up to `until` when given)."""
    answers = await _answers(
        session,
        ids,
        kinds=("nps", "csat"),
        since=as_of - timedelta(days=LATEST_DAYS),
        until=until,
    )
    return {account_id: voice(found, as_of) for account_id, found in answers.items()}


async def _of_senders(
    accounts: Sequence[AccountRow],
    seen: Mapping[tuple[str, str], datetime],
    kind: str,
    read: Callable[[list[int]], Awaitable[dict[int, _Read]]],
) -> dict[int, _Read]:
    """`read` of the accounts whose connection ever sent facts of `kind`; none, no query: a
    deployment without surveys or sentiments pays nothing for them."""
    ids = [account.id for account in accounts if (account.connection, kind) in seen]
    return await read(ids) if ids else {}


async def sentiments_in_force(
    session: AsyncSession, ids: Collection[int], as_of: datetime
) -> dict[int, Sentiment]:
    """Each account's CSM sentiment in force at `as_of`: its latest one set by then, unless
    that one cleared it or has ended."""
    rows = await latest_rows(
        session,
        SentimentFact,
        columns=("account_id", "rating", "reason", "note", "author", "until"),
        account_ids=ids,
        time="at",
        where=lambda row: [row.at <= as_of],
    )
    return {
        account_id: Sentiment(
            rating=Rating(rating), reason=reason or "", note=note, author=author, until=until
        )
        for account_id, rating, reason, note, author, until in rows
        if rating is not None and until is not None and until > as_of
    }


async def _attribute_at(
    session: AsyncSession, ids: Collection[int], name: str, at: datetime
) -> dict[int, str | None]:
    """Each account's value of a tracked attribute as it stood at `at`."""
    rows = await latest_rows(
        session,
        AttributeChange,
        columns=("account_id", "value"),
        account_ids=ids,
        time="at",
        where=lambda row: [row.name == name, row.at <= at],
    )
    return {row[0]: row[1] for row in rows}


async def count_prunable_usage(
    session: AsyncSession, *, before: date, model: type = UsageMonth
) -> int:
    """How many rows `prune_usage` would delete in all (a dry run)."""
    return await pruning.count_where(
        session,
        model=model,
        where=model.month < _month_of(before),  # type: ignore[attr-defined]
    )
