"""What every step of the worker works with: the database, the connections, the options, the
clock and the metrics, handed over as one context."""

from __future__ import annotations

from dataclasses import dataclass

from webhooks.clock import Clock
from webhooks.connections import ConnectionRegistry
from webhooks.metrics import Metrics
from webhooks.store.db import SessionFactory
from webhooks.worker.options import WorkerOptions


@dataclass(frozen=True, kw_only=True)
class WorkerContext:
    sessions: SessionFactory
    connections: ConnectionRegistry
    options: WorkerOptions
    clock: Clock
    metrics: Metrics


class WorkerStep:
    """A part of the worker (the loop, staging, write-back, the alert hand-off), with its
    context's parts at hand."""

    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._sessions = context.sessions
        self._connections = context.connections
        self._options = context.options
        self._clock = context.clock
        self._metrics = context.metrics
