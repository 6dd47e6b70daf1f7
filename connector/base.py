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

# The CSM's sentiment as people set it on the CRM record: picklists the service provisions and
# reads (into account attributes of these names), and never writes.
SENTIMENT_FIELD = "health_csm_sentiment"
SENTIMENT_REASON_FIELD = "health_csm_sentiment_reason"
# Who changed the rating or reason, where the CRM's delivery names a user ("HubSpot user 123"):
# the attribute the connectors put beside the picklists' values.
SENTIMENT_AUTHOR_ATTRIBUTE = "health_csm_sentiment_author"
SENTIMENT_RATINGS: tuple[str, ...] = ("red", "amber", "green")
# What a configured CRM property is read into: the account attribute "property:<its name>".
PROPERTY_ATTRIBUTE_PREFIX = "property:"


def property_attribute(name: str) -> str:
    """The account attribute a configured CRM property (a custom indicator's source) is read
    into, by the property's name in its CRM."""
    return f"{PROPERTY_ATTRIBUTE_PREFIX}{name}"


def signal_field(signal: str) -> str:
    """A signal's health field by neutral name: built-in and custom signals alike."""
    return f"health_{signal}"


@dataclass(frozen=True, kw_only=True)
class ConfiguredField:
    """A field the configuration adds to the fixed health fields, by neutral name: a custom
    signal's 0-100 score (no options), written like the built-in signals' fields; or a
    picklist people edit on the record (options), provisioned and read, never written."""

    neutral: str
    label: str
    description: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class FieldPlan:
    """What the configuration in force asks of one CRM connection beyond HEALTH_FIELDS:
    `scores` to provision and write, `inputs` to provision and read (by neutral name, into
    the account attribute of that name), and `reads`: the CRM's own account fields to read
    into the attribute `property_attribute(name)` wherever the record is read or delivered.
    Built by the service (webhooks.fieldplans) and handed to `CRMConnector.plan_fields`."""

    scores: tuple[ConfiguredField, ...] = ()
    inputs: tuple[ConfiguredField, ...] = ()
    reads: tuple[str, ...] = ()

    @property
    def provisioned(self) -> tuple[ConfiguredField, ...]:
        """The fields `ensure_fields` creates beyond the fixed ones."""
        return (*self.scores, *self.inputs)

    @property
    def written(self) -> tuple[str, ...]:
        """Every field written, by neutral name: the fixed ones, then the scores."""
        return (*HEALTH_FIELDS, *(field.neutral for field in self.scores))


NO_FIELD_PLAN = FieldPlan()


def health_field_values(
    health: Health, *, updated_at: datetime, custom_signals: Sequence[str] = ()
) -> dict[str, FieldValue]:
    """The health fields as written to the CRM record, with a field per custom signal
    (`custom_signals`: their names). A record that is not a customer gets them empty (cleared
    where they held values); the update time says when that happened."""
    signal_names = (*SIGNAL_NAMES, *custom_signals)
    if not health.customer:
        empty: dict[str, FieldValue] = dict.fromkeys(
            ("health_score", "health_band", "health_trend_30d", "health_drivers")
        )
        empty.update({signal_field(name): None for name in signal_names})
        empty["health_updated_at"] = updated_at.astimezone(UTC).isoformat(timespec="milliseconds")
        return empty
    values: dict[str, FieldValue] = {
        "health_score": health.score,
        "health_band": health.band.value,
        "health_trend_30d": health.trend_30d,
    }
    for name in signal_names:
        signal = health.signals.get(name)
        values[signal_field(name)] = None if signal is None else round(signal)
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

    @property
    def field_plan(self) -> FieldPlan:
        """The plan in force (NO_FIELD_PLAN until one is given)."""
        ...

    def plan_fields(self, plan: FieldPlan) -> None:
        """Take `plan` from now on: `ensure_fields` provisions its fields too, `write_health`,
        `read_health` and `stored_health` take its scores as health fields, and records read
        or delivered from then on carry its inputs and reads as account attributes. Calls no
        CRM; the service provisions before it writes a field the plan added. ValueError for a
        plan the CRM cannot hold (a name it cannot take), keeping the plan in force."""
        ...

    async def ensure_fields(self) -> ProvisionReport: ...

    async def write_health(self, updates: Sequence[RecordUpdate]) -> WriteResult: ...

    async def read_health(self, record_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """The health fields (`field_plan.written`, by neutral name) of up to `max_batch_size`
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
