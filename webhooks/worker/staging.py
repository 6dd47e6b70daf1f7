"""The inbox step's transaction: sort a claimed batch by what happens to each event, place
product events, hold events of unknown accounts, fold facts, rescore each touched account
once, and settle every event."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from connector.model import AccountAttributes, ContactUpsert, NormalisedEvent
from connector.registry import CRMS
from webhooks.alerts.rules import Cause
from webhooks.inbox_kinds import BACKFILL_SOURCE
from webhooks.matching import Matched, match_new_domains, match_product_events
from webhooks.sentiment import record_sentiments
from webhooks.store import accounts, alerts, facts, inbox, product
from webhooks.store.db import AsyncSession
from webhooks.store.models import AccountRow
from webhooks.worker.context import WorkerContext, WorkerStep
from webhooks.worker.decode import Decoded, Outcomes
from webhooks.worker.options import BatchReport
from webhooks.worker.scoring import Scorer

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class _Sorted(Outcomes):
    """A claimed batch sorted by what happens to each event: the decoders' `Outcomes` of these
    events alone, and the rest of `Decoded` regrouped for the transaction (facts by account,
    inserts and departed contacts by connection)."""

    # Understood (facts folded, or split into new events): settled as done.
    done: list[int] = field(default_factory=list)
    ignored_kinds: Counter[str] = field(default_factory=Counter)
    # The events split ones make (Decoded.spawn), to insert by (source, connection, when the
    # splitting event was received).
    inserts: dict[tuple[str, str, datetime], list[inbox.NewEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # The split events themselves: their stored bodies are not needed once their calls are.
    split: list[int] = field(default_factory=list)
    # Contacts deleted from the CRM (Decoded.contacts_gone), by connection.
    gone: dict[str, list[tuple[str, datetime]]] = field(default_factory=lambda: defaultdict(list))
    per_account: dict[accounts.AccountKey, list[NormalisedEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # Accounts whose record this batch confirms: it came from the CRM (a webhook, a read, a
    # backfill), or a native `account` event declared it on a connection without a CRM
    # connector. Only these may be created.
    records: set[accounts.AccountKey] = field(default_factory=set)
    # {event id: the account its facts are for} of events that cannot confirm a record (usage,
    # interactions, tickets...): they wait as unmatched while their account is unknown.
    origin: dict[int, accounts.AccountKey] = field(default_factory=dict)
    # {account: when its newest event not read by a backfill happened}: whether the rescore it
    # causes is live (tells people) or history (webhooks.alerts.rules.Cause).
    newest_event: dict[accounts.AccountKey, datetime] = field(default_factory=dict)

    def saw(self, account: accounts.AccountKey, at: datetime) -> None:
        known = self.newest_event.get(account)
        if known is None or at > known:
            self.newest_event[account] = at


# Sources whose events come from the CRM itself: the records they name exist there.
CRM_SOURCES = frozenset({*CRMS, BACKFILL_SOURCE})


def _by_source_and_outcome(
    claimed: Sequence[inbox.Claimed], **outcomes: Collection[int]
) -> Counter[tuple[str, str]]:
    """{(source, outcome): events} of a batch, from the event ids of each outcome."""
    source_of = {event.id: event.source for event in claimed}
    return Counter(
        (source_of[event_id], outcome) for outcome, ids in outcomes.items() for event_id in ids
    )


class Staging(WorkerStep):
    def __init__(self, context: WorkerContext, *, scorer: Scorer) -> None:
        super().__init__(context)
        self._scorer = scorer

    def crm_of(self, connection: str) -> str:
        known = self._connections.get(connection)
        return known.crm if known is not None else "native"

    def _sort(self, claimed: Sequence[inbox.Claimed], decoded: Decoded) -> _Sorted:
        """Where each claimed event goes, from what its decoder made of it."""
        out = _Sorted()
        for event in claimed:
            if event.id in decoded.dead:
                out.dead[event.id] = decoded.dead[event.id]
                log.warning("event_undecodable", event_id=event.id, source=event.source)
            elif event.id in decoded.failed:
                out.failed[event.id] = decoded.failed[event.id]
            elif event.id in decoded.paused:
                out.paused[event.id] = decoded.paused[event.id]
            elif event.id in decoded.product:
                # Placed on its account inside the transaction (webhooks.matching).
                out.product[event.id] = decoded.product[event.id]
            elif event.id in decoded.spawn:
                key = (event.source, event.connection, event.received_at)
                out.inserts[key].extend(decoded.spawn[event.id])
                out.split.append(event.id)
                out.done.append(event.id)
            elif event.id in decoded.events:
                crm = self.crm_of(event.connection)
                for normalised in decoded.events[event.id]:
                    account = (event.connection, crm, normalised.account)
                    out.per_account[account].append(normalised)
                    if event.source != BACKFILL_SOURCE:
                        out.saw(account, normalised.at)
                    if self._confirms(event, normalised):
                        out.records.add(account)
                    else:
                        out.origin[event.id] = account
                out.gone[event.connection].extend(decoded.contacts_gone.get(event.id, []))
                out.done.append(event.id)
            else:
                out.ignored.append(event.id)
                out.ignored_kinds[event.kind] += 1
        return out

    def _confirms(self, event: inbox.Claimed, normalised: NormalisedEvent) -> bool:
        """Whether the event is the account's record (see `_Sorted.records`)."""
        if event.source in CRM_SOURCES:
            return True
        known = self._connections.get(event.connection)
        return isinstance(normalised, AccountAttributes) and (
            known is None or known.connector is None
        )

    def _why_unknown(self, key: accounts.AccountKey) -> str:
        connection, _, crm_id = key
        known = self._connections.get(connection)
        if known is None or known.connector is None:
            return (
                f"no account {crm_id!r} in connection {connection!r}: a connection without a "
                "CRM connector declares its accounts with `account` events; send one for it "
                "(or correct the id). The events count once it arrives."
            )
        return (
            f"no account {crm_id!r} in connection {connection!r}: the CRM has not sent this "
            "record (a mistyped id, or a company not synced yet: its webhook or `crm-health "
            "backfill` brings it). The events count once it arrives."
        )

    async def _hold_unknown(
        self,
        session: AsyncSession,
        out: _Sorted,
        matched: Matched,
    ) -> tuple[set[accounts.AccountKey], dict[int, tuple[str, str]]]:
        """Take the events of accounts neither known nor confirmed by this batch out of it:
        they wait as unmatched, never creating an account. Returns the keys that exist and
        every event that waits ({event id: (match key, reason)})."""
        per_account = out.per_account
        known = await accounts.known_keys(session, keys=per_account.keys())
        waiting = dict(matched.waiting)
        unknown = {key for key in per_account if key not in known and key not in out.records}
        if not unknown:
            return known, waiting
        for event_id, key in (*out.origin.items(), *matched.origin.items()):
            if key in unknown:
                waiting[event_id] = (product.account_key(key[2]), self._why_unknown(key))
        for key in unknown:
            del per_account[key]
        out.done = [event_id for event_id in out.done if event_id not in waiting]
        log.info("events_wait_for_unknown_accounts", accounts=len(unknown))
        return known, waiting

    async def _release_confirmed(
        self,
        session: AsyncSession,
        out: _Sorted,
        locked: Mapping[accounts.AccountKey, AccountRow],
        known: Collection[accounts.AccountKey],
        now: datetime,
    ) -> None:
        """Accounts this batch confirmed: a record the CRM sends again is found after all, and
        the events that waited for a new one go back to the worker."""
        new: dict[str, set[str]] = defaultdict(set)
        for key in out.records:
            account = locked[key]
            if account.not_found_at is not None:
                account.not_found_at = None
                account.not_found_reason = None
            if key not in known:
                new[key[0]].add(product.account_key(key[2]))
        for connection, keys in new.items():
            await product.release(session, connection=connection, keys=keys, now=now)

    async def process(
        self, claimed: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        now = self._clock()
        out = self._sort(claimed, decoded)
        per_account = out.per_account
        async with self._sessions() as session, session.begin():
            for (source, connection, received_at), spawned in out.inserts.items():
                # Redelivered calls are skipped here, on their own dedup keys.
                await inbox.insert_events(
                    session,
                    source=source,
                    connection=connection,
                    events=spawned,
                    received_at=received_at,
                )
            await inbox.drop_bodies(session, event_ids=out.split)
            matched = await match_product_events(
                session,
                messages=out.product,
                connections=self._connections,
                crm_of=self.crm_of,
                now=now,
            )
            for key, product_facts in matched.events.items():
                per_account[key].extend(product_facts)
                for fact in product_facts:
                    out.saw(key, fact.at)
            out.done.extend(matched.done)
            out.ignored.extend(matched.ignored)
            await self._contacts_left(session, out)
            known, waiting = await self._hold_unknown(session, out, matched)
            locked = await accounts.lock_accounts(
                session, keys=per_account.keys(), now=now, known=known
            )
            await self._release_confirmed(session, out, locked, known, now)
            config = await self._scorer.current_config(session)
            # Before the fold, which makes the record's values the ones held. Only connectors
            # under a plan with the picklists read them: off, no event carries them.
            if config.sentiment.crm_field:
                for key, events in per_account.items():
                    events.extend(
                        record_sentiments(
                            events, held=locked[key].attributes, config=config.sentiment
                        )
                    )
            await facts.fold(
                session,
                events=[
                    (locked[key], normalised)
                    for key, events in per_account.items()
                    for normalised in events
                ],
                now=now,
                precedence=self._options.attribute_precedence,
            )
            await match_new_domains(
                session,
                domains=_new_domains(per_account, locked),
                connections=self._connections,
                now=now,
            )
            live = [
                account
                for account in locked.values()
                if account.deleted_at is None and account.not_found_at is None
            ]
            await alerts.resolve_for_accounts(
                session,
                account_ids=[a.id for a in locked.values() if a.deleted_at is not None],
                now=now,
            )
            staged = await self._scorer.rescore(
                session, live, now, config, cause=self._causes(out, locked, now)
            )
            await accounts.save(session, accounts=list(locked.values()))
            await product.park(session, waiting=waiting, now=now)
            exhausted = await self._settle(session, out, now)
        self._metrics.processed(
            _by_source_and_outcome(
                claimed,
                done=out.done,
                ignored=out.ignored,
                dead=[*out.dead, *exhausted],
                failed=[event_id for event_id in out.failed if event_id not in exhausted],
                paused=out.paused,
                unmatched=waiting,
            )
        )
        if out.failed or out.paused:
            log.warning("events_retried_later", failed=len(out.failed), paused=len(out.paused))
        # Counted once the transaction holds: a batch split after a failure counts each once.
        report.ignored.update(out.ignored_kinds)
        report.processed += len(out.done)
        report.unmatched += len(waiting)
        report.dead += len(out.dead)
        report.failed += len(out.failed)
        report.paused += len(out.paused)
        report.rescored += len(live)
        report.staged += staged

    async def _settle(self, session: AsyncSession, out: _Sorted, now: datetime) -> set[int]:
        """Record what happened to each event; returns the failed ones out of attempts (dead)."""
        await inbox.settle(session, event_ids=out.done, status=inbox.DONE, now=now)
        await inbox.settle(session, event_ids=out.ignored, status=inbox.IGNORED, now=now)
        await inbox.bury(session, errors=out.dead, now=now)
        exhausted: set[int] = set()
        for event_id, error in out.failed.items():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event_id,
                error=error,
                now=now,
                max_attempts=self._options.max_attempts,
                schedule=self._options.schedule,
            )
            if status == inbox.DEAD:
                exhausted.add(event_id)
        pauses: dict[tuple[float, str], list[int]] = defaultdict(list)
        for event_id, pause in out.paused.items():
            pauses[pause].append(event_id)
        for (retry_after, reason), event_ids in pauses.items():
            await inbox.release(
                session,
                event_ids=event_ids,
                available_at=now + timedelta(seconds=retry_after),
                note=reason,
            )
        return exhausted

    async def _contacts_left(self, session: AsyncSession, out: _Sorted) -> None:
        """A contact deleted from the CRM left every account the facts have it at."""
        for connection, contacts in out.gone.items():
            if not contacts:
                continue
            crm = self.crm_of(connection)
            where = await facts.contact_accounts(
                session, connection=connection, contacts=[contact for contact, _ in contacts]
            )
            for contact, at in contacts:
                for account in where.get(contact, []):
                    key = (connection, crm, account)
                    out.per_account[key].append(
                        ContactUpsert(account=account, at=at, contact=contact, left=True)
                    )
                    out.saw(key, at)

    def _causes(
        self, out: _Sorted, locked: Mapping[accounts.AccountKey, AccountRow], now: datetime
    ) -> Callable[[AccountRow], Cause]:
        """Why each account of the batch is rescored: live when one of its events (not read by a
        backfill) is newer than the alert age limit; history when all are older; backfill when
        only a backfill read it; first_load at its first scoring, whatever brought it."""
        cutoff = now - self._options.alert_max_event_age
        newest = {locked[key].id: at for key, at in out.newest_event.items() if key in locked}

        def cause(account: AccountRow) -> Cause:
            if account.health_updated_at is None:
                return "first_load"
            at = newest.get(account.id)
            if at is None:
                return "backfill"
            return "live" if at >= cutoff else "history"

        return cause


def _new_domains(
    per_account: Mapping[accounts.AccountKey, Sequence[NormalisedEvent]],
    locked: Mapping[accounts.AccountKey, AccountRow],
) -> dict[str, dict[str, str]]:
    """{connection: {domain: crm_id}} of the accounts whose domain this batch set."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for key, events in per_account.items():
        account = locked[key]
        sets_domain = any(
            isinstance(event, AccountAttributes) and "domain" in event.attributes
            for event in events
        )
        if sets_domain and account.domain and account.deleted_at is None:
            found[account.connection][account.domain] = account.crm_id
    return found
