"""Calls to Salesforce's REST and Tooling APIs: provision the health fields (the fixed ones and
those the connection's field plan adds) and the permission sets that let the integration user
write them and people set the plan's inputs, batch-write and read back Account health, create
follow-up tasks, list existing records for a backfill.

Every call goes through one `RetryingClient` whose `auth` (`connector.salesforce.auth`) adds
the bearer token and sends the request to the org's instance, so paths here start at
`/services/data/`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from types import MappingProxyType
from typing import Any, Final

import httpx
import structlog

from connector.base import (
    NO_FIELD_PLAN,
    BackfillPage,
    CRMOwner,
    FieldPlan,
    FieldValue,
    ProvisionReport,
    RecordUpdate,
    TaskRequest,
    WriteResult,
)
from connector.errors import ConnectorError, CRMRequestRejected, PayloadError
from connector.http import LimitInspector, RateLimit, RetryingClient, RetryPolicy
from connector.salesforce.backfill import (
    BACKFILL_OBJECTS,
    BATCH_SIZE_MAX,
    error_codes,
    json_document,
    list_backfill_page,
    next_records_url,
    select,
    soql_literal,
)
from connector.salesforce.events import (
    DEFAULT_MAPPING,
    NO_ACCOUNT_READS,
    AccountReads,
    SalesforceMapping,
)
from connector.salesforce.fields import (
    BASE_TABLE,
    OBJECT,
    SECTION_LABEL,
    FieldSpec,
    FieldTable,
    field_table,
)

__all__ = [
    "BATCH_LIMIT",
    "DEFAULT_API_VERSION",
    "DEFAULT_PERMISSION_SET",
    "RECORD_ERROR_OUTCOMES",
    "RecordErrorOutcome",
    "SalesforceConnector",
    "record_error_outcome",
]

# Winter '27, the current release (REST API Developer Guide, "Versions").
DEFAULT_API_VERSION: Final = "v68.0"
DEFAULT_PERMISSION_SET: Final = "Customer_Health"
# The permission set people are given to set the field plan's inputs: `<permission set>_Inputs`.
INPUTS_PERMISSION_SET_SUFFIX: Final = "_Inputs"
PERMISSION_SET_NAME_LENGTH: Final = 80
DEFAULT_RATE_LIMIT: Final = RateLimit(requests_per_second=5, burst=5)
# sObject Collections take at most 200 records per request.
BATCH_LIMIT: Final = 200

# Task field limits (Object Reference, Task): Subject 255 characters, Description 32,000.
TASK_SUBJECT_LENGTH: Final = 255
TASK_DESCRIPTION_LENGTH: Final = 32_000
TASK_STATUS: Final = "Not Started"
TASK_PRIORITIES: Final[Mapping[str, str]] = MappingProxyType(
    {"high": "High", "medium": "Normal", "low": "Low"}
)

_API_VERSION = re.compile(r"v\d{2,3}\.0")
# A permission set's API name: a letter first, then letters, digits and single underscores.
_API_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?<!_)")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# Answers of a create that lost a race against another provision run (a second replica
# starting, or `crm-health provision` meanwhile): what we wanted to create is there.
_ALREADY_THERE = frozenset({"DUPLICATE_VALUE", "DUPLICATE_DEVELOPER_NAME"})

log = structlog.get_logger(__name__)


class RecordErrorOutcome(enum.Enum):
    """What a per-record error of a batch write means for the write-back outbox."""

    FAILED = "failed"  # a later try may succeed: retry it
    REJECTED = "rejected"  # the same values will be refused again: wait for newer ones


_FAILED = RecordErrorOutcome.FAILED
_REJECTED = RecordErrorOutcome.REJECTED

# Salesforce StatusCode values (SOAP API Developer Guide, "StatusCode") by outcome. A code not
# listed counts as FAILED: retrying something unknown is safer than dropping a write.
RECORD_ERROR_OUTCOMES: Final[Mapping[str, RecordErrorOutcome]] = MappingProxyType(
    {
        # Another transaction holds the row, or the org was busy: retry.
        "UNABLE_TO_LOCK_ROW": _FAILED,
        "REQUEST_RUNNING_TOO_LONG": _FAILED,
        "REQUEST_LIMIT_EXCEEDED": _FAILED,
        "QUERY_TIMEOUT": _FAILED,
        "SERVER_UNAVAILABLE": _FAILED,
        "UNKNOWN_EXCEPTION": _FAILED,
        "STORAGE_LIMIT_EXCEEDED": _FAILED,
        # An Apex trigger or flow on Account failed, most often on a lock or a limit itself.
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": _FAILED,
        # The record was fine; another one of an all-or-none request failed.
        "ALL_OR_NONE_OPERATION_ROLLED_BACK": _FAILED,
        # The record is gone or the id is not an Account's.
        "ENTITY_IS_DELETED": _REJECTED,
        "ENTITY_IS_ARCHIVED": _REJECTED,
        "INVALID_CROSS_REFERENCE_KEY": _REJECTED,
        "INVALID_ID_FIELD": _REJECTED,
        "MALFORMED_ID": _REJECTED,
        "INVALID_TYPE": _REJECTED,
        # A field is missing, not ours to write, or refuses the value.
        "INVALID_FIELD": _REJECTED,
        "INVALID_FIELD_FOR_INSERT_UPDATE": _REJECTED,
        "INVALID_TYPE_ON_FIELD_IN_RECORD": _REJECTED,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": _REJECTED,
        "STRING_TOO_LONG": _REJECTED,
        "NUMBER_OUTSIDE_VALID_RANGE": _REJECTED,
        "INSUFFICIENT_ACCESS_OR_READONLY": _REJECTED,
        "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": _REJECTED,
        # The org's own rules refuse the record as it is (validation rules, lookup filters,
        # required fields, duplicate rules, an approval lock).
        "FIELD_CUSTOM_VALIDATION_EXCEPTION": _REJECTED,
        "FIELD_FILTER_VALIDATION_EXCEPTION": _REJECTED,
        "FIELD_INTEGRITY_EXCEPTION": _REJECTED,
        "REQUIRED_FIELD_MISSING": _REJECTED,
        "DUPLICATES_DETECTED": _REJECTED,
        "ENTITY_IS_LOCKED": _REJECTED,
    }
)


# Errors that say the Account itself is not there (deleted, or an id of nothing).
MISSING_RECORD_CODES: Final = frozenset(
    {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "INVALID_ID_FIELD", "MALFORMED_ID"}
)


def record_error_outcome(status_codes: Sequence[str]) -> RecordErrorOutcome:
    """A record is rejected only when every error it got is one retrying cannot fix."""
    if status_codes and all(
        RECORD_ERROR_OUTCOMES.get(code) is RecordErrorOutcome.REJECTED for code in status_codes
    ):
        return RecordErrorOutcome.REJECTED
    return RecordErrorOutcome.FAILED


def _check_options(*, api_version: str, permission_set_name: str) -> None:
    if not _API_VERSION.fullmatch(api_version):
        raise ValueError(f"api_version must look like 'v62.0', not {api_version!r}")
    if len(permission_set_name) > 80 or not _API_NAME.fullmatch(permission_set_name):
        raise ValueError(
            "permission_set_name must be an API name (a letter, then letters, digits and "
            f"single underscores, at most 80), not {permission_set_name!r}"
        )


class SalesforceConnector:
    """One Salesforce org, reached through an OAuth `auth` that also picks the instance."""

    name = "salesforce"
    max_batch_size = BATCH_LIMIT
    backfill_objects = BACKFILL_OBJECTS

    def __init__(
        self,
        *,
        client: RetryingClient,
        api_version: str = DEFAULT_API_VERSION,
        mapping: SalesforceMapping = DEFAULT_MAPPING,
        permission_set_name: str = DEFAULT_PERMISSION_SET,
        user_id: Callable[[], Awaitable[str]] | None = None,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        _check_options(api_version=api_version, permission_set_name=permission_set_name)
        self._client = client
        self.api_version = api_version
        self.mapping = mapping
        self.permission_set_name = permission_set_name
        self._user_id = user_id
        self._closing = closing
        self._plan = NO_FIELD_PLAN
        self._table = BASE_TABLE
        self._account_reads = NO_ACCOUNT_READS
        # Account fields the integration user can read (the describe's), while a backfill
        # lists accounts; None until asked, and again once fields may have changed.
        self._account_fields: frozenset[str] | None = None
        self._reported_unavailable: set[str] = set()

    @classmethod
    def create(
        cls,
        *,
        connection: str,
        auth: httpx.Auth,
        login_url: str,
        api_version: str = DEFAULT_API_VERSION,
        policy: RetryPolicy | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        limits: LimitInspector | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        mapping: SalesforceMapping = DEFAULT_MAPPING,
        permission_set_name: str = DEFAULT_PERMISSION_SET,
        user_id: Callable[[], Awaitable[str]] | None = None,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> SalesforceConnector:
        """A connector whose requests `auth` sends to the org's instance with its token.

        `limits` reads Salesforce's limit answers (`connector.salesforce.limits`); `user_id`
        names the integration user, who is assigned the permission set on provisioning;
        `closing` releases what `auth` holds.
        """
        _check_options(api_version=api_version, permission_set_name=permission_set_name)
        client = RetryingClient(
            base_url=login_url,
            name=f"salesforce:{connection}",
            auth=auth,
            policy=policy or RetryPolicy(),
            rate_limit=rate_limit,
            limits=limits,
            transport=transport,
        )
        return cls(
            client=client,
            api_version=api_version,
            mapping=mapping,
            permission_set_name=permission_set_name,
            user_id=user_id,
            closing=closing,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._closing is not None:
            await self._closing()

    async def own_user_id(self) -> str | None:
        """The integration user's id (whose own changes come back as notifications); None
        when the connector was not told how to learn it."""
        return None if self._user_id is None else await self._user_id()

    @property
    def _data(self) -> str:
        return f"/services/data/{self.api_version}"

    @property
    def inputs_permission_set_name(self) -> str:
        """`Customer_Health_Inputs`: the permission set to give people who set the inputs."""
        room = PERMISSION_SET_NAME_LENGTH - len(INPUTS_PERMISSION_SET_SUFFIX)
        return self.permission_set_name[:room].rstrip("_") + INPUTS_PERMISSION_SET_SUFFIX

    # --- the field plan ------------------------------------------------------------------------

    @property
    def field_plan(self) -> FieldPlan:
        return self._plan

    def plan_fields(self, plan: FieldPlan) -> None:
        """Take `plan` from now on (no call to Salesforce). ValueError for a plan Salesforce
        could not hold: a field name it cannot create, or a read that is no field name."""
        table = field_table(plan)
        reads = AccountReads(
            properties=plan.reads,
            inputs={spec.neutral: spec.api_name for spec in table.inputs},
        )
        self._plan, self._table, self._account_reads = plan, table, reads
        self._account_fields = None

    @property
    def account_reads(self) -> AccountReads:
        """What the plan adds to every Account read or delivered (Outbound Messages carry
        whichever of these fields the message selects)."""
        return self._account_reads

    async def _selectable_account_reads(self) -> AccountReads:
        """The plan's reads the integration user can select: one field the org lacks (not
        created, or not visible to the user) would fail the whole query, so those are left
        out, and named once in the log."""
        reads = self._account_reads
        if not reads.fields:
            return reads
        if self._account_fields is None:
            self._account_fields = await self._describe_account_fields()
        selectable = reads.within(self._account_fields)
        unavailable = [
            name
            for name in reads.fields
            if name not in selectable.fields and name not in self._reported_unavailable
        ]
        if unavailable:
            self._reported_unavailable.update(unavailable)
            log.warning(
                "salesforce_account_fields_unavailable",
                fields=unavailable,
                reason="not on Account or not readable by the integration user; left out of "
                "backfill queries until they are",
            )
        return selectable

    async def _describe_account_fields(self) -> frozenset[str]:
        """Account's field names as the sObject Describe lists them: only those the user may
        read (field-level security), which is what SOQL accepts from it."""
        where = f"Salesforce {OBJECT} describe"
        document = json_document(
            await self._client.request("GET", f"{self._data}/sobjects/{OBJECT}/describe"), where
        )
        described = document.get("fields") if isinstance(document, Mapping) else None
        if not isinstance(described, list):
            raise PayloadError(f"{where}: the answer has no 'fields' list")
        return frozenset(
            item["name"]
            for item in described
            if isinstance(item, Mapping) and isinstance(item.get("name"), str)
        )

    # --- backfill ------------------------------------------------------------------------------

    async def list_backfill_page(
        self, *, object_type: str, after: str | None, batch_size: int = BATCH_SIZE_MAX
    ) -> BackfillPage:
        """One page of existing records as normalised events; see
        `connector.salesforce.backfill`. Accounts carry the plan's reads and inputs that the
        org has (looked up again each time the listing starts over)."""
        reads = NO_ACCOUNT_READS
        if object_type == "accounts":
            if after is None:
                self._account_fields = None
            reads = await self._selectable_account_reads()
        return await list_backfill_page(
            self._client,
            object_type=object_type,
            after=after,
            mapping=self.mapping,
            api_version=self.api_version,
            batch_size=batch_size,
            reads=reads,
        )

    # --- write-back ----------------------------------------------------------------------------

    async def write_health(self, updates: Sequence[RecordUpdate]) -> WriteResult:
        """Update up to 200 Accounts with one sObject Collections request (not all-or-none).

        Salesforce answers one SaveResult per record, in request order (failed ones may lack
        the id); each error is sorted by `RECORD_ERROR_OUTCOMES` into failed or rejected.
        """
        if len(updates) > BATCH_LIMIT:
            raise ValueError(f"Salesforce sObject Collections take at most {BATCH_LIMIT} records")
        if not updates:
            return WriteResult()
        body = {
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": OBJECT},
                    "id": update.record_id,
                    **self._table.to_api_fields(update.fields),
                }
                for update in updates
            ],
        }
        response = await self._client.request(
            "PATCH", f"{self._data}/composite/sobjects", json=body
        )
        results = json_document(response, "Salesforce sObject Collections update")
        if not isinstance(results, list):
            raise PayloadError(
                "Salesforce sObject Collections update: the answer is not a list of SaveResults"
            )
        result = _write_result(updates, results)
        log.info(
            "salesforce_health_written",
            records=len(updates),
            written=len(result.written),
            failed=len(result.failed),
            rejected=len(result.rejected),
        )
        return result

    async def read_health(self, record_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """The health fields of up to 200 Accounts with one sObject Collections GET (200 ids
        keep the URL far below the ~800 at which Salesforce answers 414).

        Salesforce answers one item per id, in order, null for an id it has no readable
        record for (deleted, or not an Account's); those and ids that cannot be record ids
        are absent.
        """
        if len(record_ids) > BATCH_LIMIT:
            raise ValueError(f"Salesforce sObject Collections take at most {BATCH_LIMIT} records")
        ids = [i for i in dict.fromkeys(record_ids) if _RECORD_ID.fullmatch(i)]
        if not ids:
            return {}
        where = "Salesforce sObject Collections read"
        response = await self._client.request(
            "GET",
            f"{self._data}/composite/sobjects/{OBJECT}",
            params={
                "ids": ",".join(ids),
                "fields": ",".join(["Id", *(spec.api_name for spec in self._table.written)]),
            },
        )
        records = json_document(response, where)
        if not isinstance(records, list):
            raise PayloadError(f"{where}: the answer is not a list of records")
        found: dict[str, dict[str, FieldValue]] = {}
        for record_id, record in zip(ids, records, strict=False):
            if isinstance(record, Mapping) and _same_record(record_id, record.get("Id")):
                found[record_id] = self._table.health_values(record)
        return found

    def stored_health(self, fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
        """`fields` as the Account fields hold them (numbers at their scale, the drivers cut
        to the Long Text Area)."""
        table = self._table
        return table.health_values(table.to_api_fields(fields))

    async def create_task(self, task: TaskRequest) -> str:
        """Create a Task on the Account (`WhatId`), owned by `owner_id` when given (a User id;
        otherwise Salesforce makes the integration user the owner)."""
        fields: dict[str, Any] = {
            "Subject": task.subject[:TASK_SUBJECT_LENGTH],
            "Description": task.body[:TASK_DESCRIPTION_LENGTH],
            "ActivityDate": task.due_at.astimezone(UTC).date().isoformat(),
            "WhatId": task.record_id,
            "Priority": TASK_PRIORITIES[task.priority],
            "Status": TASK_STATUS,
        }
        if task.owner_id is not None:
            fields["OwnerId"] = task.owner_id
        response = await self._client.request("POST", f"{self._data}/sobjects/Task", json=fields)
        task_id = _created_id(response, "Salesforce Task create")
        log.info("salesforce_task_created", task_id=task_id, account=task.record_id)
        return task_id

    async def read_owner(self, owner_id: str) -> CRMOwner | None:
        """The User an Account's `OwnerId` names (`sobjects/User/{id}?fields=Email,Name`);
        None for an id that is no record id or no User Salesforce has."""
        if not _RECORD_ID.fullmatch(owner_id):
            return None
        try:
            response = await self._client.request(
                "GET", f"{self._data}/sobjects/User/{owner_id}", params={"fields": "Email,Name"}
            )
        except CRMRequestRejected as exc:
            if exc.status == 404:
                return None
            raise
        document = json_document(response, "Salesforce User")
        if not isinstance(document, Mapping):
            raise PayloadError("Salesforce User: the answer is not a JSON object")
        return CRMOwner(
            owner_id=owner_id, email=_text(document.get("Email")), name=_text(document.get("Name"))
        )

    # --- provisioning --------------------------------------------------------------------------

    async def ensure_fields(self) -> ProvisionReport:
        """Create or update the health fields on Account (the plan's too), then grant read and
        edit on them through the permission set, assigned to the integration user when
        `user_id` is known. The plan's inputs are only read by the service, and set by people:
        the integration user gets read on them, and a second permission set (not assigned:
        an admin gives it to those who set them) read and edit.

        Idempotent: a second run sends no create or update. A create that finds its item
        already there (another provision run won the race) counts as unchanged.
        """
        report = ProvisionReport()
        table = self._table
        await self._ensure_custom_fields(table, report)
        permission_set_id = await self._ensure_permission_set(
            self.permission_set_name,
            description="Customer health (crm-health): read and edit the health fields on "
            "Account. Assigned to the integration user that writes them.",
            report=report,
        )
        await self._ensure_field_permissions(
            permission_set_id,
            [*((spec, True) for spec in table.written), *((spec, False) for spec in table.inputs)],
            entry="field_permission",
            report=report,
        )
        if self._user_id is not None:
            await self._ensure_assignment(permission_set_id, await self._user_id(), report)
        if table.inputs:
            await self._ensure_inputs_permission_set(table.inputs, report)
        # Fields may have been created: the next backfill looks again.
        self._account_fields = None
        log.info(
            "salesforce_fields_ensured",
            created=len(report.created),
            updated=len(report.updated),
            unchanged=len(report.unchanged),
        )
        return report

    async def missing_health_fields(self) -> list[str]:
        """The health fields Account lacks, the plan's included (one Tooling API query, no
        write)."""
        provisioned = self._table.provisioned
        existing = await self._existing_custom_fields(provisioned)
        return [spec.api_name for spec in provisioned if spec.developer_name not in existing]

    async def _existing_custom_fields(self, specs: Sequence[FieldSpec]) -> dict[str, str]:
        """Those of `specs` Account has as custom fields: their CustomField ids by developer
        name."""
        names = ", ".join(soql_literal(spec.developer_name) for spec in specs)
        existing: dict[str, str] = {}
        for record in await self._query(
            select(
                "CustomField",
                ("Id", "DeveloperName", "NamespacePrefix"),
                f"TableEnumOrId = {soql_literal(OBJECT)}",
                f"DeveloperName IN ({names})",
            ),
            tooling=True,
        ):
            # A managed package's Health_Score__c is another field (ns__Health_Score__c).
            if record.get("NamespacePrefix") is None:
                existing[str(record.get("DeveloperName"))] = _record_id(record, "CustomField")
        return existing

    async def _ensure_custom_fields(self, table: FieldTable, report: ProvisionReport) -> None:
        existing = await self._existing_custom_fields(table.provisioned)
        for spec in table.provisioned:
            field_id = existing.get(spec.developer_name)
            if field_id is None:
                created = await self._create(
                    f"{self._data}/tooling/sobjects/CustomField",
                    {"FullName": spec.full_name, "Metadata": spec.metadata()},
                    what=spec.api_name,
                )
                (report.created if created is not None else report.unchanged).append(spec.api_name)
                continue
            if await self._update_field(spec, field_id):
                report.updated.append(spec.api_name)
            else:
                report.unchanged.append(spec.api_name)

    async def _update_field(self, spec: FieldSpec, field_id: str) -> bool:
        """PATCH the field when its definition drifted; True when it did. Metadata can only be
        read one field at a time, hence one GET per field."""
        path = f"{self._data}/tooling/sobjects/CustomField/{field_id}"
        where = f"Salesforce CustomField {spec.api_name}"
        document = json_document(await self._client.request("GET", path), where)
        current = document.get("Metadata") if isinstance(document, Mapping) else None
        if not isinstance(current, Mapping):
            raise PayloadError(f"{where}: the answer has no Metadata object")
        changed = spec.differences(current)
        if not changed:
            return False
        # An update replaces the whole Metadata: keep what an admin set that is not ours
        # (history tracking, compliance groups ...).
        await self._client.request("PATCH", path, json={"Metadata": {**current, **spec.metadata()}})
        log.info("salesforce_field_updated", field=spec.api_name, changed=changed)
        return True

    async def _ensure_inputs_permission_set(
        self, inputs: Sequence[FieldSpec], report: ProvisionReport
    ) -> None:
        # Fields created through the Tooling API are visible to no profile: without a grant
        # nobody could set them. Who sets them is the admin's call, so it is not assigned.
        name = self.inputs_permission_set_name
        permission_set_id = await self._ensure_permission_set(
            name,
            label=f"{SECTION_LABEL} inputs",
            description="Customer health (crm-health): read and edit the fields people set on "
            "Account (the CSM sentiment). Assign it to the people who set them.",
            report=report,
        )
        await self._ensure_field_permissions(
            permission_set_id,
            [(spec, True) for spec in inputs],
            entry=f"field_permission:{name}",
            report=report,
        )

    async def _ensure_permission_set(
        self,
        name: str,
        *,
        description: str,
        report: ProvisionReport,
        label: str = SECTION_LABEL,
    ) -> str:
        entry = f"permission_set:{name}"
        found = await self._permission_set_id(name)
        if found is not None:
            report.unchanged.append(entry)
            return found
        created = await self._create(
            f"{self._data}/sobjects/PermissionSet",
            {"Name": name, "Label": label, "Description": description},
            what=entry,
        )
        if created is not None:
            report.created.append(entry)
            return created
        found = await self._permission_set_id(name)
        if found is None:
            raise ConnectorError(
                f"Salesforce: permission set {name} was reported to exist but cannot be found"
            )
        report.unchanged.append(entry)
        return found

    async def _permission_set_id(self, name: str) -> str | None:
        records = await self._query(
            select(
                "PermissionSet",
                ("Id",),
                f"Name = {soql_literal(name)}",
                "NamespacePrefix = null",
            )
        )
        return _record_id(records[0], "PermissionSet") if records else None

    async def _ensure_field_permissions(
        self,
        permission_set_id: str,
        grants: Sequence[tuple[FieldSpec, bool]],
        *,
        entry: str,
        report: ProvisionReport,
    ) -> None:
        """Read on each field of `grants`, and edit where its flag says so; a grant beyond
        that (edit an admin gave) is left alone."""
        rows = {
            str(record.get("Field")): record
            for record in await self._query(
                select(
                    "FieldPermissions",
                    ("Id", "Field", "PermissionsRead", "PermissionsEdit"),
                    f"ParentId = {soql_literal(permission_set_id)}",
                    f"SobjectType = {soql_literal(OBJECT)}",
                )
            )
        }
        for spec, edit in grants:
            name = f"{entry}:{spec.api_name}"
            wanted = {"PermissionsRead": True, **({"PermissionsEdit": True} if edit else {})}
            row = rows.get(spec.full_name)
            if row is None:
                created = await self._create(
                    f"{self._data}/sobjects/FieldPermissions",
                    {
                        "ParentId": permission_set_id,
                        "SobjectType": OBJECT,
                        "Field": spec.full_name,
                        "PermissionsRead": True,
                        "PermissionsEdit": edit,
                    },
                    what=name,
                )
                (report.created if created is not None else report.unchanged).append(name)
            elif all(row.get(key) is True for key in wanted):
                report.unchanged.append(name)
            else:
                row_id = _record_id(row, "FieldPermissions")
                await self._client.request(
                    "PATCH", f"{self._data}/sobjects/FieldPermissions/{row_id}", json=wanted
                )
                report.updated.append(name)

    async def _ensure_assignment(
        self, permission_set_id: str, user_id: str, report: ProvisionReport
    ) -> None:
        entry = f"assignment:{self.permission_set_name}"
        if not _RECORD_ID.fullmatch(user_id):
            raise ValueError(f"user_id must be a Salesforce User id, not {user_id!r}")
        assigned = await self._query(
            select(
                "PermissionSetAssignment",
                ("Id",),
                f"PermissionSetId = {soql_literal(permission_set_id)}",
                f"AssigneeId = {soql_literal(user_id)}",
            )
        )
        if assigned:
            report.unchanged.append(entry)
            return
        created = await self._create(
            f"{self._data}/sobjects/PermissionSetAssignment",
            {"AssigneeId": user_id, "PermissionSetId": permission_set_id},
            what=entry,
        )
        (report.created if created is not None else report.unchanged).append(entry)

    async def _create(self, path: str, body: Mapping[str, Any], *, what: str) -> str | None:
        """POST a record or definition and return its id; None when Salesforce says it
        already exists (a concurrent provision run created it first)."""
        try:
            response = await self._client.request("POST", path, json=body)
        except CRMRequestRejected as exc:
            if exc.status == 400 and (
                error_codes(exc) & _ALREADY_THERE or "already exists" in exc.body.lower()
            ):
                log.info("salesforce_definition_exists", what=what)
                return None
            raise
        return _created_id(response, f"Salesforce create of {what}")

    async def _query(self, soql: str, *, tooling: bool = False) -> list[Mapping[str, Any]]:
        """Every record a (small) query answers, following `nextRecordsUrl`."""
        where = "Salesforce Tooling query" if tooling else "Salesforce query"
        path = f"{self._data}/tooling/query" if tooling else f"{self._data}/query"
        response = await self._client.request("GET", path, params={"q": soql})
        records: list[Mapping[str, Any]] = []
        while True:
            document = json_document(response, where)
            if not isinstance(document, Mapping) or not isinstance(document.get("records"), list):
                raise PayloadError(f"{where}: the answer has no 'records' list")
            records.extend(item for item in document["records"] if isinstance(item, Mapping))
            following = next_records_url(document, where)
            if following is None:
                return records
            response = await self._client.request("GET", following)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _created_id(response: httpx.Response, where: str) -> str:
    """The id of a create's answer (`{"id": "...", "success": true, "errors": []}`)."""
    document = json_document(response, where)
    created = document.get("id") if isinstance(document, Mapping) else None
    if not isinstance(created, str) or not created:
        raise PayloadError(f"{where}: the answer has no id")
    return created


def _record_id(record: Mapping[str, Any], where: str) -> str:
    value = record.get("Id")
    if not isinstance(value, str) or not _RECORD_ID.fullmatch(value):
        raise PayloadError(f"Salesforce {where} record has no valid Id")
    return value


def _error_text(error: Any) -> tuple[str, str]:
    """(status code, "STATUS_CODE: message (fields: A, B)") of one error of a SaveResult."""
    if not isinstance(error, Mapping):
        return "UNKNOWN", f"UNKNOWN: {error!r}"
    code = str(error.get("statusCode") or error.get("errorCode") or "UNKNOWN")
    text = f"{code}: {error.get('message') or 'no message'}"
    fields = error.get("fields")
    if isinstance(fields, list) and fields:
        text += f" (fields: {', '.join(str(name) for name in fields)})"
    return code, text


def _same_record(sent: str, answered: Any) -> bool:
    # Salesforce answers 18-character ids; the first 15 are the id itself (case-sensitive).
    return not isinstance(answered, str) or answered[:15] == sent[:15]


def _write_result(updates: Sequence[RecordUpdate], results: Sequence[Any]) -> WriteResult:
    result = WriteResult()
    for index, update in enumerate(updates):
        record_id = update.record_id
        outcome = results[index] if index < len(results) else None
        if not isinstance(outcome, Mapping) or not _same_record(record_id, outcome.get("id")):
            # Believing a write landed that Salesforce did not confirm would lose it.
            result.failed[record_id] = "not confirmed in Salesforce's answer"
            continue
        if outcome.get("success") is True:
            result.written.add(record_id)
            continue
        errors = outcome.get("errors")
        described = [_error_text(error) for error in errors] if isinstance(errors, list) else []
        text = "; ".join(text for _, text in described) or "refused without an error"
        codes = [code for code, _ in described]
        if codes and all(code in MISSING_RECORD_CODES for code in codes):
            result.missing[record_id] = text
        elif record_error_outcome(codes) is RecordErrorOutcome.REJECTED:
            result.rejected[record_id] = text
        else:
            result.failed[record_id] = text
    if len(results) > len(updates):
        log.warning("salesforce_extra_save_results", sent=len(updates), answered=len(results))
    return result
