"""What the configuration in force asks of each CRM connection beyond the fixed health fields
(connector.base.FieldPlan): a field per custom signal, the CSM's sentiment picklists, and the
CRM fields custom indicators read. One place builds it; the worker hands it to the connectors
and provisions it before the first write, `crm-health provision` provisions it at once."""

from __future__ import annotations

from connector.base import (
    NO_FIELD_PLAN,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
    signal_field,
)
from signals.config import CrmPropertySource, HealthConfig
from webhooks.connections import ConnectionRegistry
from webhooks.store import configs
from webhooks.store.db import SessionFactory


def field_plan(config: HealthConfig, crm: str) -> FieldPlan:
    """The plan for a connection to `crm` (a registry name) under `config`."""
    scores = tuple(
        ConfiguredField(
            neutral=signal_field(signal.name),
            label=f"Health: {signal.label}",
            description=f"{signal.label}: a custom signal, 0 (at risk) to 100.",
        )
        for signal in config.custom_signals
    )
    inputs: tuple[ConfiguredField, ...] = ()
    if config.sentiment.crm_field:
        inputs = (
            ConfiguredField(
                neutral=SENTIMENT_FIELD,
                label="CSM sentiment",
                description=(
                    "The CSM's judgement of the account: red, amber or green. It counts in the "
                    f"health for {config.sentiment.default_days} days from each change."
                ),
                options=SENTIMENT_RATINGS,
            ),
            ConfiguredField(
                neutral=SENTIMENT_REASON_FIELD,
                label="CSM sentiment reason",
                description="Why the CSM set the sentiment.",
                options=config.sentiment.reasons,
            ),
        )
    reads = tuple(
        dict.fromkeys(
            name
            for indicator in config.custom_indicators
            if isinstance(indicator.source, CrmPropertySource)
            and (name := indicator.source.field_in(crm)) is not None
        )
    )
    if not (scores or inputs or reads):
        return NO_FIELD_PLAN
    return FieldPlan(scores=scores, inputs=inputs, reads=reads)


async def plan_connections(sessions: SessionFactory, connections: ConnectionRegistry) -> None:
    """Hand every connection's connector its plan under the configuration in force: what a
    command does before it provisions, backfills or reconciles (the worker keeps them on the
    plan itself, pass by pass)."""
    async with sessions() as session:
        _, config = await configs.current(session)
    for connection in connections.all():
        if connection.connector is not None:
            connection.connector.plan_fields(field_plan(config, connection.crm))
