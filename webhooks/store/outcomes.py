"""Read-only queries behind configuration previews and backtests: a connection's accounts page
by page (without locking them), the alerts open on them, and the known churn/renewal outcomes."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store import accounts
from webhooks.store.models import (
    ACCOUNT_ROW_COLUMNS,
    Account,
    AccountRow,
    Alert,
    AlertReason,
    OutcomeFact,
)

CHURNED, RENEWED = "churned", "renewed"
_RESOLVED = "resolved"


async def live_accounts_page(
    session: AsyncSession, *, connection: str, after_id: int, limit: int
) -> list[AccountRow]:
    """The connection's live accounts with ids above `after_id`, in id order. Unlike the
    recompute's `accounts_after` nothing is locked: a preview only reads."""
    return await accounts.read_rows(
        session,
        accounts.select_rows()
        .where(
            # `|| ''` keeps SQLite off the (connection, ...) indexes: with one, it read every
            # account of the connection and sorted them for each page (a 20,000-account
            # preview read 2 million rows); walking the primary key reads only the page.
            Account.connection.op("||")("") == connection,
            Account.id > after_id,
            Account.deleted_at.is_(None),
        )
        .order_by(Account.id)
        .limit(limit),
    )


async def open_alert_keys(
    session: AsyncSession, *, account_ids: Collection[int]
) -> dict[int, set[tuple[str, str]]]:
    """{account id: {(rule, key)}} of the open reasons of the accounts' open alerts."""
    if not account_ids:
        return {}
    rows = await session.execute(
        select(Alert.account_id, AlertReason.rule, AlertReason.key)
        .join(AlertReason, AlertReason.alert_id == Alert.id)
        .where(
            Alert.account_id.in_(list(account_ids)),
            Alert.status != _RESOLVED,
            AlertReason.resolved_at.is_(None),
        )
    )
    found: dict[int, set[tuple[str, str]]] = {}
    for account_id, rule, key in rows:
        found.setdefault(account_id, set()).add((rule, key))
    return found


class KnownOutcome(NamedTuple):
    """A churn or renewal of an account, with the ARR it kept or lost (None: not known)."""

    account: AccountRow
    at: datetime
    outcome: str
    arr: float | None


async def known_outcomes(session: AsyncSession, *, connection: str) -> list[KnownOutcome]:
    """Every churn or renewal recorded for the connection's accounts, with its ARR, deleted
    accounts included (a churned customer is often deleted from the CRM), oldest first."""
    rows = await session.execute(
        accounts.select_rows()
        .add_columns(OutcomeFact.at, OutcomeFact.outcome, OutcomeFact.arr)
        .join(OutcomeFact, OutcomeFact.account_id == Account.id)
        .where(Account.connection == connection, OutcomeFact.outcome.in_((CHURNED, RENEWED)))
        .order_by(OutcomeFact.at, OutcomeFact.id)
    )
    # The account's columns first, then the outcome's.
    width = len(ACCOUNT_ROW_COLUMNS)
    return [KnownOutcome(AccountRow(*row[:width]), *row[width:]) for row in rows]
