"""Score accounts from their stored facts, keep their history, raise and resolve their alerts
and stage the health fields that changed for write-back: once per account per batch or
recompute chunk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from connector.base import VOLATILE_FIELDS, health_field_values
from signals.config import HealthConfig
from signals.scoring import score
from webhooks.alerts.rules import Cause
from webhooks.metrics import Metrics
from webhooks.store import accounts, configs, facts, writeback
from webhooks.store.db import AsyncSession
from webhooks.store.models import AccountRow
from webhooks.worker.alerts import AlertHandOff


class Scorer:
    def __init__(self, *, metrics: Metrics, alerts: AlertHandOff) -> None:
        self._metrics = metrics
        self._alerts = alerts
        self._config: tuple[int | None, HealthConfig] = (None, HealthConfig())

    async def current_config(self, session: AsyncSession) -> HealthConfig:
        """The configuration in force, re-read only when a newer version was saved."""
        latest = await configs.current_id(session)
        if latest != self._config[0]:
            self._config = await configs.current(session)
        return self._config[1]

    async def rescore(
        self,
        session: AsyncSession,
        live: list[AccountRow],
        now: datetime,
        config: HealthConfig,
        *,
        cause: Callable[[AccountRow], Cause],
    ) -> int:
        """Score every given account once, keep history, queue the fields that changed;
        `cause` says why each is rescored (whether its alerts tell anyone)."""
        if not live:
            return 0
        with self._metrics.scoring_seconds.time():
            snapshots = await facts.read_facts(
                session, accounts=live, as_of=now, reads=config.fact_reads
            )
            month_ago = await accounts.scores_at_or_before(
                session, account_ids=[a.id for a in live], at=now - timedelta(days=30)
            )
            versions = accounts.scoring_versions(live, config)
            previous = await accounts.previous_bands(
                session, accounts=live, versions=versions, at=now
            )
            applying = {
                connection: config.for_connection(connection)
                for connection in {account.connection for account in live}
            }
            scored = [
                (
                    account,
                    score(
                        snapshots[account.id],
                        applying[account.connection],
                        previous_band=previous[account.id],
                        score_30d_ago=month_ago.get(account.id),
                    ),
                )
                for account in live
            ]
            # Before record_health: the alerts compare with the score and band the rows still hold.
            await self._alerts.update(session, scored, versions, now, config, cause=cause)
            await accounts.record_health(session, scored=scored, at=now, versions=versions)
            owed = []
            custom_signals = [signal.name for signal in config.custom_signals]
            for account, health in scored:
                fields = health_field_values(health, updated_at=now, custom_signals=custom_signals)
                owed.append(
                    writeback.Owed(
                        account_id=account.id,
                        connection=account.connection,
                        record_id=account.crm_id,
                        fields=fields,
                        fingerprint=writeback.fields_fingerprint(fields, ignore=VOLATILE_FIELDS),
                    )
                )
            staged = await writeback.stage(session, owed=owed, now=now)
        self._metrics.accounts_rescored.inc(len(live))
        return staged
