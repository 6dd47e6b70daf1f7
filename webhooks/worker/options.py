"""The worker's options (batch sizes, leases, attempts, the retry schedule) and the report of
one inbox batch; alert delivery reads the same options."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from webhooks.retention import RetentionPolicy
from webhooks.retry import RetrySchedule
from webhooks.store import facts


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    batch_size: int = 5000
    recompute_chunk: int = 1000
    poll_seconds: float = 0.5
    lease_seconds: float = 120.0
    # Tries of an event that fails to process before it is dead-lettered. Not for waiting on
    # a CRM: outages and refused credentials cost events no attempt, and write-backs retry
    # until the CRM takes them or refuses the record.
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 900.0
    # Hours between scheduled reconciles of the CRMs' health fields (0: none).
    reconcile_interval_hours: float = 0.0
    # Hours between the rescores of every account for time passing (0: none).
    rescore_interval_hours: float = 0.0
    # Scheduled retention (webhooks.retention); the service passes its settings' policy.
    retention: RetentionPolicy = field(default_factory=lambda: RetentionPolicy(enabled=False))
    # Which source's account attributes win where two give one (facts.apply_attributes).
    attribute_precedence: facts.Precedence = "crm"
    # Only changes caused by events newer than this notify anyone (webhooks.alerts.rules.Cause).
    alert_max_event_age: timedelta = timedelta(hours=24)

    @property
    def schedule(self) -> RetrySchedule:
        return RetrySchedule(
            base_seconds=self.retry_base_seconds, max_seconds=self.retry_max_seconds
        )


@dataclass(kw_only=True)
class BatchReport:
    claimed: int = 0
    processed: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    dead: int = 0
    # Tried again later: with an attempt counted (failed) or without (paused by the CRM).
    failed: int = 0
    paused: int = 0
    rescored: int = 0
    staged: int = 0
    # Product events waiting for their account mapping.
    unmatched: int = 0
