"""Who owns an account, and where to reach them: the e-mail (and name) of an alert's account
owner, for owner channels (webhooks.alerts.channels.owner).

The `owner` attribute is the e-mail itself when it is one (native events, CSV imports);
otherwise it is the CRM's owner id and the connection's connector reads the owner (HubSpot
owners, Salesforce User, Dynamics systemuser). What the CRM answered is kept in `crm_owners`
and read again after `REFRESH_AFTER`, so a busy day asks the CRM once per owner, not once per
alert; when the CRM cannot be asked, an older answer is used rather than none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from connector.base import CRMOwner
from connector.errors import ConnectorError, CRMHTTPError
from connector.registry import CRMS
from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.crm_task import ConnectorLookup
from webhooks.alerts.channels.email import valid_address
from webhooks.alerts.channels.http import channel_error
from webhooks.alerts.channels.owner import OwnerAddress
from webhooks.alerts.notice import AlertNotice, ChannelError
from webhooks.store import owners
from webhooks.store.db import SessionFactory

__all__ = ["REFRESH_AFTER", "OwnerDirectory"]

log = structlog.get_logger(__name__)

REFRESH_AFTER: Final = timedelta(days=1)
# How messages name where an owner id comes from.


class OwnerDirectory:
    """Finds the owner of an alert's account (an `OwnerLookup` for owner channels)."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        connector_for: ConnectorLookup,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh_after: timedelta = REFRESH_AFTER,
    ) -> None:
        self._sessions = sessions
        self._connector_for = connector_for
        self._clock = clock
        self._refresh_after = refresh_after

    async def address_for(self, notice: AlertNotice) -> OwnerAddress:
        readable = words.readable(notice)
        account = f"account {words.account_label(readable)}"
        spec = CRMS.get(notice.crm)
        crm = notice.crm if spec is None else spec.label
        owner_id = (notice.owner_id or "").strip()
        if not owner_id:
            return OwnerAddress(email=None, missing=f"{account} has no owner in {crm}")
        if valid_address(owner_id):
            return OwnerAddress(email=owner_id)
        shown = words.clip(words.one_line(readable.owner_id or ""), 80)
        connector = self._connector_for(notice.connection)
        if connector is None:
            return OwnerAddress(
                email=None,
                missing=(
                    f"{account} has owner {shown!r}, which is not an e-mail address, and "
                    f"connection {notice.connection!r} has no CRM credentials to look it up"
                ),
            )
        now = self._clock()
        async with self._sessions() as session:
            stored = (
                await owners.read_owners(
                    session, connection=notice.connection, owner_ids={owner_id}
                )
            ).get(owner_id)
        if stored is None or now - stored.fetched_at >= self._refresh_after:
            try:
                found = await connector.read_owner(owner_id)
            except ConnectorError as exc:
                if stored is None:
                    raise _lookup_error(exc, crm=crm, connection=notice.connection) from None
                # An answer of yesterday beats no alert for today.
                log.warning(
                    "owner_lookup_failed_using_stored",
                    connection=notice.connection,
                    owner=owner_id,
                    error=type(exc).__name__,
                )
            else:
                await self._save(notice.connection, owner_id, found, now)
                return _address(found, account=account, crm=crm, shown=shown)
        # Known, and fresh enough (or the CRM could not be asked again).
        assert stored is not None
        return _address(
            None
            if not stored.found
            else CRMOwner(owner_id=owner_id, email=stored.email, name=stored.name),
            account=account,
            crm=crm,
            shown=shown,
        )

    async def _save(
        self, connection: str, owner_id: str, found: CRMOwner | None, now: datetime
    ) -> None:
        async with self._sessions() as session, session.begin():
            await owners.save_owner(
                session,
                connection=connection,
                owner_id=owner_id,
                email=None if found is None else found.email,
                name=None if found is None else found.name,
                found=found is not None,
                fetched_at=now,
            )


def _address(found: CRMOwner | None, *, account: str, crm: str, shown: str) -> OwnerAddress:
    if found is None:
        return OwnerAddress(
            email=None,
            missing=f"{account} has no owner e-mail in {crm}: {crm} has no owner {shown!r}",
        )
    if found.email is None:
        return OwnerAddress(
            email=None,
            name=found.name,
            missing=f"{account} has no owner e-mail in {crm}: owner {shown!r} has none there",
        )
    if not valid_address(found.email):
        return OwnerAddress(
            email=None,
            name=found.name,
            missing=(
                f"{account} has no owner e-mail in {crm}: owner {shown!r} has "
                "something else than an e-mail address there"
            ),
        )
    return OwnerAddress(email=found.email, name=found.name)


def _lookup_error(exc: ConnectorError, *, crm: str, connection: str) -> ChannelError:
    where = f"owner lookup in {crm} (connection {connection!r})"
    if isinstance(exc, CRMHTTPError):
        return channel_error(exc, where=where)
    return ChannelError(f"{where} failed ({type(exc).__name__})", retryable=False)
