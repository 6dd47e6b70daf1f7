"""The worker's alert hand-off: raise and resolve alerts for freshly scored accounts (in the
rescore's transaction), and send due alert deliveries through their channels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from signals.config import HealthConfig
from signals.model import Health
from webhooks.alerts import delivery as alert_delivery
from webhooks.alerts import service as alert_service
from webhooks.alerts.notice import Channel
from webhooks.alerts.rules import Cause
from webhooks.store import accounts
from webhooks.store.db import AsyncSession
from webhooks.store.models import AccountRow
from webhooks.worker.context import WorkerContext, WorkerStep


class AlertHandOff(WorkerStep):
    def __init__(self, context: WorkerContext, *, channels: Mapping[str, Channel]) -> None:
        super().__init__(context)
        self._channels = channels

    async def update(
        self,
        session: AsyncSession,
        scored: Sequence[tuple[AccountRow, Health]],
        versions: Mapping[int, str],
        now: datetime,
        config: HealthConfig,
        *,
        cause: Callable[[AccountRow], Cause],
    ) -> None:
        """Raise and resolve alerts for freshly scored accounts, in the rescore's transaction:
        an alert and its deliveries exist exactly when the health that caused them does."""
        ids = [account.id for account, _ in scored]
        windows = {
            rule.days
            for connection in {account.connection for account, _ in scored}
            for rule in config.for_connection(connection).alerts
            if rule.enabled and rule.when == "score_drop"
        }
        # Only scores computed under the same scoring configuration: a drop that a
        # configuration change caused is not the customer's doing.
        before: dict[int, Mapping[int, int | None]] = {}
        for days in sorted(windows):
            before[days] = await accounts.scores_at_or_before(
                session, account_ids=ids, at=now - timedelta(days=days), versions=versions
            )
        states = [
            (
                account,
                alert_service.account_state(
                    account,
                    health,
                    scores_before={days: found.get(account.id) for days, found in before.items()},
                    scoring_version=versions[account.id],
                    cause=cause(account),
                ),
            )
            for account, health in scored
        ]
        await alert_service.update_alerts(
            session,
            states=states,
            rules_for=lambda connection: config.for_connection(connection).alerts,
            digests={name: channel.digest for name, channel in self._channels.items()},
            now=now,
        )

    async def deliver(self) -> int:
        """Send the due alert deliveries (see webhooks.alerts.delivery); returns how many."""
        return await alert_delivery.deliver_alerts(
            sessions=self._sessions,
            channels=self._channels,
            connections=self._connections,
            options=self._options,
            clock=self._clock,
            metrics=self._metrics,
        )
