"""The contract every CRM connector fulfils, and the CRM-neutral values it writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from connector.model import NormalisedEvent
from signals.model import Health
from signals.registry import SIGNAL_NAMES

FieldValue = str | float | int | None

# The health fields written to every CRM, by their neutral names; each connector maps them to
# its own naming (HubSpot internal names, Salesforce __c, Dynamics prefix).
HEALTH_FIELDS: tuple[str, ...] = (
    "health_score",
    "health_band",
    "health_trend_30d",
    *(f"health_{name}" for name in SIGNAL_NAMES),
    "health_drivers",
    "health_updated_at",
)

# Fields that change on every recompute and so must not, on their own, cause a write.
VOLATILE_FIELDS = frozenset({"health_updated_at"})


def health_field_values(health: Health, *, updated_at: datetime) -> dict[str, FieldValue]:
    """The health fields as written to the CRM record. A record that is not a customer gets
    them empty (cleared where they held values); the update time says when that happened."""
    if not health.customer:
        empty: dict[str, FieldValue] = dict.fromkeys(
            ("health_score", "health_band", "health_trend_30d", "health_drivers")
        )
        empty.update({f"health_{name}": None for name in SIGNAL_NAMES})
        empty["health_updated_at"] = updated_at.astimezone(UTC).isoformat(timespec="milliseconds")
        return empty
    values: dict[str, FieldValue] = {
        "health_score": health.score,
        "health_band": health.band.value,
        "health_trend_30d": health.trend_30d,
    }
    for name in SIGNAL_NAMES:
        signal = health.signals.get(name)
        values[f"health_{name}"] = None if signal is None else round(signal)
    values["health_drivers"] = "\n".join(health.drivers)
    values["health_updated_at"] = updated_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return values


@dataclass(frozen=True, kw_only=True)
class RecordUpdate:
    """New health field values for one CRM account record."""

    record_id: str
    fields: Mapping[str, FieldValue]


@dataclass(kw_only=True)
class WriteResult:
    """Per-record outcome of a batch write; records in none of the sets were not attempted.

    `failed` records may succeed on a later try (a locked row, a CRM hiccup); `rejected` ones
    never will as they are (the record was deleted, a field is missing or refuses the value),
    so they are not retried until a newer value is staged.
    """

    written: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    # Records the CRM does not have (a 404 or its equivalent): never retried; the service
    # marks the account "not found in the CRM" until the CRM sends the record.
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


TaskPriority = Literal["low", "medium", "high"]


@dataclass(frozen=True, kw_only=True)
class TaskRequest:
    """A follow-up task on an account record, assigned to the account's owner when known."""

    record_id: str
    subject: str
    body: str
    due_at: datetime
    owner_id: str | None = None
    priority: TaskPriority = "high"


@dataclass(frozen=True, kw_only=True)
class CRMOwner:
    """A record owner as the CRM knows the person: e-mail and name, each None when the CRM
    holds none (an owner without a mailbox, a deactivated user)."""

    owner_id: str
    email: str | None
    name: str | None


@dataclass(frozen=True, kw_only=True)
class BackfillPage:
    """One listed page of existing CRM records: events with stable dedup keys (the same record
    version listed again gives the same key), and where the next page starts."""

    object_type: str
    events: list[tuple[str, NormalisedEvent]]
    next_after: str | None  # None when this object type is finished


class CRMConnector(Protocol):
    """What the service needs from a CRM: its fields exist, health gets written, and existing
    records can be listed for a backfill."""

    name: str
    max_batch_size: int
    backfill_objects: tuple[str, ...]

    async def list_backfill_page(self, *, object_type: str, after: str | None) -> BackfillPage: ...

    async def ensure_fields(self) -> ProvisionReport: ...

    async def write_health(self, updates: Sequence[RecordUpdate]) -> WriteResult: ...

    async def read_health(self, record_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """The health fields (`HEALTH_FIELDS`, by neutral name) of up to `max_batch_size`
        records as the CRM holds them, read in as few calls as the CRM allows: numbers as
        numbers or numeric text, the band as its neutral value, an empty field as None.

        Records the CRM does not have (deleted, or an id that cannot be one) are absent from
        the answer; the caller reports them.
        """
        ...

    def stored_health(self, fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
        """`fields` as `read_health` would read them back once written: the connector's write
        formatting (rounding to a column's scale, text cut to a field's length, the band's
        option) applied, so that what was read can be compared with what is owed like with
        like. ValueError for a value the CRM cannot take."""
        ...

    async def create_task(self, task: TaskRequest) -> str:
        """Create the task in the CRM; returns its id there."""
        ...

    async def read_owner(self, owner_id: str) -> CRMOwner | None:
        """The owner (a record's owner id as the CRM stores it) with e-mail and name; None
        when the CRM has no such owner or `owner_id` cannot be one of its ids."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class FieldsInspector(Protocol):
    """A connector that can tell, by reading only, which health fields its CRM still lacks:
    what `crm-health doctor` reports before anyone runs `crm-health provision`."""

    async def missing_health_fields(self) -> list[str]:
        """The CRM's names of the health fields (and their group or section, where the CRM has
        one) that do not exist yet; empty when everything is provisioned."""
        ...
