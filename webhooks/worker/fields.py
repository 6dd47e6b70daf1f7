"""Keep every CRM connector on the configuration's field plan (webhooks.fieldplans), and
provision a plan's fields before any write-back to that connection uses them."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from connector.base import ConfiguredField, FieldPlan
from webhooks.fieldplans import field_plan
from webhooks.worker.context import WorkerContext, WorkerStep
from webhooks.worker.scoring import Scorer

log = structlog.get_logger(__name__)

# How long a connection whose CRM refused or failed the provisioning waits to be tried again:
# its write-backs wait as long, so a CRM that is down costs one call a minute, not one a pass.
PROVISION_RETRY_SECONDS = 60.0


class FieldProvisioning(WorkerStep):
    def __init__(self, context: WorkerContext, *, scorer: Scorer) -> None:
        super().__init__(context)
        self._scorer = scorer
        # The plan fields each connection's CRM was seen to have, by this process.
        self._provisioned: dict[str, tuple[ConfiguredField, ...]] = {}
        self._retry_at: dict[str, datetime] = {}
        # Connections whose connector refused the plan in force, with that plan.
        self._refused: dict[str, FieldPlan] = {}

    async def step(self) -> None:
        """Hand each connector the plan of the configuration in force; provision the fields
        of a plan this process has not provisioned yet (none: nothing is called)."""
        async with self._sessions() as session:
            config = await self._scorer.current_config(session)
        now = self._clock()
        for connection in self._connections.all():
            connector = connection.connector
            if connector is None:
                continue
            plan = field_plan(config, connection.crm)
            if connector.field_plan != plan:
                try:
                    connector.plan_fields(plan)
                except ValueError as exc:
                    # A plan this CRM cannot hold (a name it cannot take): nothing is written
                    # to the connection until the configuration changes, rather than health
                    # without the fields it asks for.
                    if self._refused.get(connection.name) != plan:
                        log.error("field_plan_refused", connection=connection.name, error=str(exc))
                    self._refused[connection.name] = plan
                    continue
            self._refused.pop(connection.name, None)
            if self.ready(connection.name) or self._retry_at.get(connection.name, now) > now:
                continue
            try:
                report = await connector.ensure_fields()
            except Exception as exc:
                # Whatever the CRM did (down, refusing the credentials or the definition), the
                # worker goes on; this connection's write-backs wait until it is provisioned.
                self._retry_at[connection.name] = now + timedelta(seconds=PROVISION_RETRY_SECONDS)
                log.warning(
                    "configured_fields_not_provisioned",
                    connection=connection.name,
                    retry_in_seconds=PROVISION_RETRY_SECONDS,
                    error=str(exc)[:500],
                )
                continue
            self._provisioned[connection.name] = plan.provisioned
            self._retry_at.pop(connection.name, None)
            log.info(
                "configured_fields_provisioned",
                connection=connection.name,
                created=report.created,
                updated=report.updated,
            )

    def ready(self, connection: str) -> bool:
        """Whether the connection's CRM has every field its plan adds (as far as this process
        knows), so health including them can be written."""
        found = self._connections.get(connection)
        if found is None or found.connector is None:
            return True
        if connection in self._refused:
            return False
        wanted = found.connector.field_plan.provisioned
        return not wanted or self._provisioned.get(connection) == wanted
