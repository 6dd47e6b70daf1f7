"""What one running service holds: settings, database, CRM connections, the worker."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.base import CRMConnector
from webhooks.alerts.channels.config import (
    ChannelGrants,
    ChannelsFileError,
    channels_setting_named,
    load_channels,
)
from webhooks.alerts.notice import Channel
from webhooks.alerts.owners import OwnerDirectory
from webhooks.calibration import JobRunner
from webhooks.connections import ConnectionRegistry, connections_from_settings
from webhooks.inbox_writer import InboxWriter
from webhooks.metrics import Metrics
from webhooks.preview import Turns
from webhooks.retention import RetentionPolicy
from webhooks.sessions import SessionSigner
from webhooks.settings import Settings
from webhooks.store.db import (
    SessionFactory,
    create_engine,
    create_read_engine,
    create_session_factory,
)
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    # Admin reads (preview, backtest, account lists): read-only connections of their own, so
    # a long read never holds the connection intake and the worker write through. None when
    # the database is SQLite in memory, whose reads go through `sessions`.
    read_engine: AsyncEngine | None
    reads: SessionFactory
    # How many previews may compute at once.
    preview_turns: Turns
    # Backtest and suggestion jobs started in this process, run one at a time.
    jobs: JobRunner
    connections: ConnectionRegistry
    pipeline: Pipeline
    writer: InboxWriter
    signer: SessionSigner
    metrics: Metrics
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    worker_task: asyncio.Task[None] | None = None
    provision_task: asyncio.Task[None] | None = None
    # Alert channels by name (CRM_HEALTH_ALERT_CHANNELS_FILE); the worker delivers through them.
    channels: Mapping[str, Channel] = field(default_factory=dict)
    # Which connections' admin keys may route alerts to each channel.
    channel_grants: ChannelGrants = field(default_factory=dict)

    @classmethod
    def build(
        cls, settings: Settings, *, crm_transport: httpx.AsyncBaseTransport | None = None
    ) -> Runtime:
        engine = create_engine(settings.database_url)
        sessions = create_session_factory(engine)
        read_engine = create_read_engine(settings.database_url)
        connections = connections_from_settings(settings, transport=crm_transport)

        def connector_for(name: str) -> CRMConnector | None:
            # Looked up at send time: installs made later have their connector by then.
            connection = connections.get(name)
            return None if connection is None else connection.connector

        try:
            channels, channel_grants = load_channels(
                settings,
                connector_for=connector_for,
                owners=OwnerDirectory(sessions=sessions, connector_for=connector_for),
                transport=crm_transport,
            )
        except ChannelsFileError as exc:
            raise channels_setting_named(exc) from None
        metrics = Metrics()
        reads = sessions if read_engine is None else create_session_factory(read_engine)
        pipeline = Pipeline(
            sessions=sessions,
            connections=connections,
            channels=channels,
            metrics=metrics,
            options=WorkerOptions(
                batch_size=settings.worker_batch_size,
                recompute_chunk=settings.worker_recompute_chunk,
                poll_seconds=settings.worker_poll_seconds,
                lease_seconds=settings.worker_lease_seconds,
                max_attempts=settings.worker_max_attempts,
                retry_base_seconds=settings.worker_retry_base_seconds,
                retry_max_seconds=settings.worker_retry_max_seconds,
                reconcile_interval_hours=settings.reconcile_interval_hours,
                rescore_interval_hours=settings.rescore_interval_hours,
                retention=RetentionPolicy.from_settings(settings),
                attribute_precedence=settings.attribute_precedence,
                alert_max_event_age=timedelta(hours=settings.alert_max_event_age_hours),
            ),
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            read_engine=read_engine,
            reads=reads,
            preview_turns=Turns(settings.preview_concurrency),
            jobs=JobRunner(sessions=sessions, reads=reads),
            connections=connections,
            pipeline=pipeline,
            channels=channels,
            channel_grants=channel_grants,
            metrics=metrics,
            writer=InboxWriter(engine),
            signer=SessionSigner(
                # Unset, a secret of this process: its sessions end when it does.
                secrets.token_urlsafe(32)
                if settings.session_secret is None
                else settings.session_secret.get_secret_value(),
                lifetime=timedelta(hours=settings.session_hours),
            ),
        )

    async def open(self) -> None:
        """Load the connections OAuth installs stored, then (if asked) provision the health
        fields of every connection in the background: a CRM that is down must not keep the
        service from starting."""
        try:
            await self.connections.sync_installed(self.sessions)
        except Exception as exc:
            # A database not migrated yet or down: /readyz says so, and the worker loads the
            # installs on its next pass once it answers.
            log.warning("installed_connections_not_loaded", error=str(exc))
        if self.settings.provision_on_start and self.connections.writers():
            self.provision_task = asyncio.create_task(self._provision_all())

    async def _provision_all(self) -> None:
        for name, connector in self.connections.writers().items():
            try:
                report = await connector.ensure_fields()
            except Exception as exc:
                log.warning("provision_on_start_failed", connection=name, error=str(exc))
                continue
            log.info(
                "provisioned_on_start",
                connection=name,
                created=len(report.created),
                updated=len(report.updated),
            )

    def start_worker(self) -> None:
        self.worker_task = asyncio.create_task(self.pipeline.run_forever(self.stop))

    async def aclose(self) -> None:
        """Stop the worker after its current pass, then release connections."""
        self.stop.set()
        await self.jobs.aclose()
        if self.provision_task is not None:
            self.provision_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.provision_task
        if self.worker_task is not None:
            await self.worker_task
        await self.writer.aclose()
        for name, channel in self.channels.items():
            try:
                await channel.aclose()
            except Exception as exc:
                log.warning("alert_channel_close_failed", channel=name, error=str(exc))
        await self.connections.aclose()
        if self.read_engine is not None:
            await self.read_engine.dispose()
        await self.engine.dispose()
