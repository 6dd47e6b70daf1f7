"""Sync status: per connection, how far the CRM is behind on the health write-backs and how many
events are dead letters; the one summary behind `crm-health status`, /metrics, GET /api/v1/sync
and the admin page's sync panel."""

from __future__ import annotations

import shlex
from collections.abc import Collection
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from webhooks.store import accounts, inbox, product, writeback
from webhooks.store.db import AsyncSession, SessionFactory

# Values owed longer than this, with nothing failing, read as "behind": a worker pass and a
# CRM call take seconds; minutes mean a paused allowance, a backlog or a worker that is down.
BEHIND_AFTER_SECONDS = 300.0
# CRM error texts are cut to this many characters: enough to see the cause, short for a table.
ERROR_CHARS = 300

SyncState = Literal["ok", "behind", "failing", "needs_attention"]


class WritebackSync(BaseModel):
    pending: int = Field(
        description="Accounts whose health the CRM does not have yet (waiting or being sent), "
        "failing ones included."
    )
    sending: int = Field(description="Of those, being sent now.")
    failing: int = Field(
        description="Of those, whose last send failed: retried with capped backoff until the "
        "CRM takes them."
    )
    failed: int = Field(
        description="Refused by the CRM for the record itself (deleted, a value a field "
        "rejects): not retried until someone fixes it and runs the retry command."
    )
    oldest_pending_since: datetime | None = Field(
        description="Since when the longest-waiting values have been owed (null: none waiting)."
    )
    oldest_pending_age_seconds: float = Field(description="Its age now (0 when none waiting).")
    last_success_at: datetime | None = Field(
        description="When the CRM last took a write-back (null: never)."
    )
    failing_error: str | None = Field(
        description=f"The CRM's error of the latest failing send (at most {ERROR_CHARS} chars)."
    )
    failed_error: str | None = Field(
        description=f"Why the CRM refused the latest failed record (at most {ERROR_CHARS} chars)."
    )


class ConnectionSync(BaseModel):
    connection: str
    status: SyncState = Field(
        description="needs_attention: failed write-backs or dead letters; failing: the CRM is "
        f"not taking write-backs; behind: values owed over {BEHIND_AFTER_SECONDS:.0f} s; ok."
    )
    writebacks: WritebackSync
    dead_letters: int = Field(
        description="Inbox events that could not be processed (crm-health dead-letters)."
    )
    unknown_accounts: int = Field(
        default=0,
        description="Account ids whose events wait because no such account is known (a "
        "mistyped id, or a record the CRM has not sent yet): `crm-health unmatched` lists them; "
        "they count once the record arrives.",
    )
    not_found_in_crm: int = Field(
        default=0,
        description="Accounts a write-back found missing from the CRM (404): neither scored, "
        "listed nor written back until the CRM sends the record.",
    )
    commands: list[str] = Field(description="The commands that retry what is stuck.")


class InboxBacklog(BaseModel):
    """The inbox as the worker sees it: one queue for every connection."""

    counts: dict[str, int] = Field(
        description="Unsettled events by status (pending, processing, unmatched, dead)."
    )
    oldest_pending_age_seconds: float = Field(
        description="Age of the oldest event waiting for the worker (0 when none)."
    )


class SyncReport(BaseModel):
    checked_at: datetime
    connections: list[ConnectionSync]
    inbox: InboxBacklog


def _state(sync: WritebackSync, dead_letters: int, not_found: int = 0) -> SyncState:
    if sync.failed or dead_letters or not_found:
        return "needs_attention"
    if sync.failing:
        return "failing"
    if sync.oldest_pending_age_seconds > BEHIND_AFTER_SECONDS:
        return "behind"
    return "ok"


def _commands(
    name: str, sync: WritebackSync, dead_letters: int, unknown_accounts: int = 0
) -> list[str]:
    connection = shlex.quote(name)
    commands = []
    if unknown_accounts:
        commands.append(f"crm-health unmatched --connection {connection}")
    if sync.failed:
        commands.append(f"crm-health writeback retry --connection {connection} --failed")
    if sync.failing:
        commands.append(f"crm-health writeback retry --connection {connection} --failing")
    if dead_letters:
        commands += ["crm-health dead-letters", "crm-health replay --all"]
    return commands


async def connections(
    session: AsyncSession,
    *,
    now: datetime,
    include: Collection[str] = (),
    only: str | None = None,
) -> list[ConnectionSync]:
    """Every connection with write-backs owed or failed, or dead letters, and those in `include`
    (the configured ones: their last success is shown even when nothing is owed); with `only`,
    that one connection alone (present even when it has nothing)."""
    dead = await inbox.dead_letters_by_connection(session)
    unknown = await product.unknown_accounts_by_connection(session)
    not_found = await accounts.not_found_by_connection(session)
    if only is not None:
        dead = {only: dead.get(only, 0)}
        unknown = {only: unknown.get(only, 0)}
        not_found = {only: not_found.get(only, 0)}
    by_connection = await writeback.sync_by_connection(
        session, include={*dead, *include}, only=only, error_chars=ERROR_CHARS
    )
    names = {*by_connection, *dead, *(n for n, c in unknown.items() if c), *not_found}
    items = []
    for name in sorted(names):
        row = by_connection.get(name) or writeback.ConnectionSync(connection=name)
        since = row.oldest_pending_since
        sync = WritebackSync(
            pending=row.pending,
            sending=row.sending,
            failing=row.failing,
            failed=row.failed,
            oldest_pending_since=since,
            oldest_pending_age_seconds=0.0
            if since is None
            else max(0.0, (now - since).total_seconds()),
            last_success_at=row.last_written_at,
            failing_error=row.failing_error,
            failed_error=row.failed_error,
        )
        count = dead.get(name, 0)
        waiting, missing = unknown.get(name, 0), not_found.get(name, 0)
        items.append(
            ConnectionSync(
                connection=name,
                status=_state(sync, count, missing),
                writebacks=sync,
                dead_letters=count,
                unknown_accounts=waiting,
                not_found_in_crm=missing,
                commands=_commands(name, sync, count, waiting),
            )
        )
    return items


async def report(
    sessions: SessionFactory,
    *,
    now: datetime,
    include: Collection[str] = (),
    only: str | None = None,
) -> SyncReport:
    """The connections' sync state and the inbox backlog, read now."""
    async with sessions() as session:
        items = await connections(session, now=now, include=include, only=only)
        backlog = await inbox.backlog(session)
    oldest = backlog.oldest_pending_received_at
    return SyncReport(
        checked_at=now,
        connections=items,
        inbox=InboxBacklog(
            counts={status: backlog.counts.get(status, 0) for status in inbox.UNSETTLED},
            oldest_pending_age_seconds=0.0
            if oldest is None
            else max(0.0, (now - oldest).total_seconds()),
        ),
    )


def needs_action(item: ConnectionSync) -> bool:
    """What `crm-health status --check` fails on: anything failing, failed or dead."""
    return item.status in ("failing", "needs_attention")
