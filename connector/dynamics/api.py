"""Calls to the Dataverse Web API of a Dynamics 365 environment: provision the health columns on
account (a field plan's too), batch-write and read back account health, create follow-up tasks,
read rows (hydrate, backfill) and learn the application user's own id.

Every call goes through one `RetryingClient` whose base URL is the environment's URL and whose
`auth` (`connector.dynamics.auth.DynamicsAuth`) adds the bearer token, so paths here start at
`/api/data/`. Batch writes use `$batch` (OData 4.0 multipart/mixed, Power Apps docs "Execute
batch operations using the Web API"), built and parsed in `batch`; a backfill page is read in
`backfill` and the columns are provisioned in `provision`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog

from connector.base import (
    BackfillPage,
    CRMOwner,
    FieldPlan,
    FieldValue,
    ProvisionReport,
    RecordUpdate,
    TaskRequest,
    WriteResult,
)
from connector.dynamics.backfill import BACKFILL_OBJECTS, backfill_page
from connector.dynamics.batch import (
    BATCH_REQUEST_LIMIT,
    CONTINUE_ON_ERROR,
    BatchOperation,
    build_batch,
    parse_batch_response,
    sort_answers,
)
from connector.dynamics.columns import ReadableColumns
from connector.dynamics.events import DynamicsRecord
from connector.dynamics.fields import ENTITY, ENTITY_SET, DynamicsFields
from connector.dynamics.limits import DynamicsLimits
from connector.dynamics.provision import ColumnProvisioner
from connector.dynamics.records import (
    DEFAULT_MAPPING,
    ENTITY_SETS,
    DynamicsMapping,
    PlannedReads,
    planned_reads,
    record_from_web_api,
    web_api_select,
)
from connector.dynamics.webapi import GUID, LOOKUP_ANNOTATIONS, answer_json, guid
from connector.errors import CRMRequestRejected, PayloadError
from connector.http import LimitInspector, RateLimit, RetryingClient, RetryPolicy

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BATCH_SIZE",
    "READ_IDS_PER_REQUEST",
    "DynamicsConnector",
]

log = structlog.get_logger(__name__)

_Read = TypeVar("_Read")

DEFAULT_API_VERSION: Final = "v9.2"
# Half of the $batch limit of 1,000 requests by default: the docs advise against large
# batches (one batch is one request whose whole execution time counts against the 20 minutes
# per 5 that service protection allows, and a long batch is more likely to time out and be
# sent again whole), while 500 accounts a call keeps a full recompute to a few calls.
DEFAULT_BATCH_SIZE: Final = 500
# Account ids per read-back GET: 100 GUIDs in an `In` filter keep the URL near 5,000
# characters, well inside what Dataverse and the proxies before it take.
READ_IDS_PER_REQUEST: Final = 100
# The same defaults as the service's settings: 10 requests a second, 8 in flight (service
# protection allows 6,000 per 5 minutes and 52 at once per user and web server).
DEFAULT_RATE_LIMIT: Final = RateLimit(requests_per_second=10, burst=10)
DEFAULT_MAX_CONCURRENCY: Final = 8
# A batch of 500 updates can take well over the shared client's 30-second default.
DEFAULT_TIMEOUT_SECONDS: Final = 120.0
DEFAULT_LIMITS: Final = DynamicsLimits()

# Task column limits (task table reference): subject 200 characters, description 2,000.
TASK_SUBJECT_LENGTH: Final = 200
TASK_DESCRIPTION_LENGTH: Final = 2_000
# task.prioritycode: 0 Low, 1 Normal, 2 High.
TASK_PRIORITIES: Final[Mapping[str, int]] = MappingProxyType({"low": 0, "medium": 1, "high": 2})

_API_VERSION = re.compile(r"v\d{1,2}\.\d{1,2}")
_SOLUTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})\)\s*$")


# --- the connector -----------------------------------------------------------------------------


def _check_org_url(org_url: str) -> str:
    url = org_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError(
            "org_url must be the environment's URL, e.g. https://contoso.crm.dynamics.com, "
            f"not {org_url!r}"
        )
    if parts.path or parts.query or parts.fragment:
        raise ValueError("org_url must be a bare URL without path, query or fragment")
    return url


def _check_options(*, api_version: str, solution: str, batch_size: int) -> None:
    if not _API_VERSION.fullmatch(api_version):
        raise ValueError(f"api_version must look like 'v9.2', not {api_version!r}")
    if not _SOLUTION.fullmatch(solution):
        raise ValueError(
            "solution must be a solution's unique name (a letter or underscore, then letters, "
            f"digits and underscores), not {solution!r}"
        )
    if not 1 <= batch_size <= BATCH_REQUEST_LIMIT:
        raise ValueError(f"batch_size must be between 1 and {BATCH_REQUEST_LIMIT}")


class DynamicsConnector:
    """One Dataverse environment, reached as its application user through `client`."""

    name = "dynamics"
    max_batch_size: int = DEFAULT_BATCH_SIZE
    backfill_objects = BACKFILL_OBJECTS

    def __init__(
        self,
        *,
        client: RetryingClient,
        org_url: str,
        fields: DynamicsFields,
        solution: str,
        api_version: str = DEFAULT_API_VERSION,
        mapping: DynamicsMapping = DEFAULT_MAPPING,
        batch_size: int = DEFAULT_BATCH_SIZE,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        _check_options(api_version=api_version, solution=solution, batch_size=batch_size)
        self._client = client
        self.org_url = _check_org_url(org_url)
        self.fields = fields
        self.solution = solution
        self.api_version = api_version
        self.mapping = mapping
        self.max_batch_size = batch_size
        self._closing = closing
        self._user_id: str | None = None
        self._user_lock = asyncio.Lock()
        # Inputs' option values learned from the environment (by provisioning) or from earlier
        # plans: neutral name -> choice key of a label -> value. A choice keeps its value.
        self._known_choices: dict[str, dict[str, int]] = fields.choice_values()
        self.reads: PlannedReads = planned_reads(fields)
        self._readable = ReadableColumns(client=client, data=self._data)

    @classmethod
    def create(
        cls,
        *,
        connection: str,
        auth: httpx.Auth,
        org_url: str,
        prefix: str,
        option_value_prefix: int,
        solution: str,
        api_version: str = DEFAULT_API_VERSION,
        policy: RetryPolicy | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        limits: LimitInspector | None = DEFAULT_LIMITS,
        max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
        transport: httpx.AsyncBaseTransport | None = None,
        mapping: DynamicsMapping = DEFAULT_MAPPING,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> DynamicsConnector:
        """A connector for the environment at `org_url`, whose requests `auth` signs.

        `prefix` and `option_value_prefix` are the solution publisher's (the columns are
        `<prefix>_healthscore` ...), `solution` the unique name of the unmanaged solution the
        columns are created in. `limits` reads Dataverse's service protection answers (None:
        ignore them); `max_concurrency` keeps requests in flight under Dataverse's 52 per
        user; `closing` releases what `auth` holds. ValueError for an option out of range.
        """
        fields = DynamicsFields(prefix=prefix, option_value_prefix=option_value_prefix)
        _check_options(api_version=api_version, solution=solution, batch_size=batch_size)
        base_url = _check_org_url(org_url)
        client = RetryingClient(
            base_url=base_url,
            name=f"dynamics:{connection}",
            headers={
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            },
            auth=auth,
            policy=policy or RetryPolicy(),
            rate_limit=rate_limit,
            limits=limits,
            transport=transport,
            timeout_seconds=timeout_seconds,
            max_concurrency=max_concurrency,
        )
        return cls(
            client=client,
            org_url=base_url,
            fields=fields,
            solution=solution,
            api_version=api_version,
            mapping=mapping,
            batch_size=batch_size,
            closing=closing,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._closing is not None:
            await self._closing()

    @property
    def _data(self) -> str:
        return f"/api/data/{self.api_version}"

    # --- the field plan ------------------------------------------------------------------------

    @property
    def field_plan(self) -> FieldPlan:
        """The plan in force (NO_FIELD_PLAN until one is given)."""
        return self.fields.plan

    def plan_fields(self, plan: FieldPlan) -> None:
        """Take `plan` from now on (see `CRMConnector.plan_fields`); calls nothing. Its scores
        are columns written like the signals', its inputs choice columns read as their labels,
        its reads account columns read as text. ValueError (and the plan in force unchanged)
        for a plan whose columns would share a name or a read that is no column name."""
        if plan == self.fields.plan:
            return
        known = _merged(self._known_choices, self.fields.choice_values())
        fields = self.fields.planned(plan, known_choices=known)
        reads = planned_reads(fields)
        self._known_choices, self.fields, self.reads = known, fields, reads
        # The admin may have created the columns the new plan reads since they were looked up.
        self._readable.forget()
        log.info(
            "dynamics_fields_planned",
            scores=len(plan.scores),
            inputs=len(plan.inputs),
            reads=len(plan.reads),
        )

    def _learn_choices(self, choices: Mapping[str, Mapping[str, int]]) -> None:
        self._known_choices = _merged(self._known_choices, choices)
        self.fields = self.fields.planned(self.fields.plan, known_choices=self._known_choices)
        self.reads = planned_reads(self.fields)

    async def _read_accounts(self, read: Callable[[tuple[str, ...]], Awaitable[_Read]]) -> _Read:
        """`read` given the `$select` properties of the plan's columns that account has. A read
        refused as a bad request while naming them (a column deleted since the table was
        looked up) looks the table up again and is tried once more without what went."""
        planned = await self._readable.select(self.reads.columns)
        try:
            return await read(planned)
        except CRMRequestRejected as exc:
            if exc.status != 400 or not planned:
                raise
            self._readable.forget()
            again = await self._readable.select(self.reads.columns)
            if again == planned:
                raise
            return await read(again)

    # --- who we are ----------------------------------------------------------------------------

    async def own_user_id(self) -> str:
        """The application user's systemuser id (`WhoAmI`), asked once: deliveries of changes
        it made are the echoes of our own writes."""
        async with self._user_lock:
            if self._user_id is None:
                response = await self._client.request("GET", f"{self._data}/WhoAmI")
                document = answer_json(response, "Dataverse WhoAmI")
                user_id = document.get("UserId") if isinstance(document, Mapping) else None
                if not isinstance(user_id, str) or not GUID.fullmatch(user_id):
                    raise PayloadError("Dataverse WhoAmI: the answer has no UserId GUID")
                self._user_id = user_id.lower()
            return self._user_id

    # --- reading rows --------------------------------------------------------------------------

    async def hydrate(self, entity: str, record_id: str) -> DynamicsRecord | None:
        """The row of table `entity` (logical name) with the columns the mapping reads; None
        when it does not exist (any more). ValueError for a table nothing maps or an id that is
        no GUID."""
        entity_set = ENTITY_SETS.get(entity)
        if entity_set is None:
            raise ValueError(f"cannot read Dynamics table {entity!r}")
        row_id = guid(record_id, "record_id")

        async def read(planned: tuple[str, ...]) -> DynamicsRecord | None:
            select = web_api_select(entity, self.mapping, planned=planned)
            try:
                response = await self._client.request(
                    "GET",
                    f"{self._data}/{entity_set}({row_id})",
                    params={"$select": ",".join(select)},
                    headers={"Prefer": LOOKUP_ANNOTATIONS},
                )
            except CRMRequestRejected as exc:
                if exc.status == 404:
                    return None
                raise
            document = answer_json(response, f"Dataverse {entity} {row_id}")
            return record_from_web_api(entity, document)

        return await (self._read_accounts(read) if entity == ENTITY else read(()))

    async def read_owner(self, owner_id: str) -> CRMOwner | None:
        """The systemuser an account's `ownerid` names (`internalemailaddress`, `fullname`);
        None for an id that is no GUID or no user Dataverse has. An account owned by a team
        has a team's id here, which no systemuser has."""
        if not GUID.fullmatch(owner_id.strip()):
            return None
        user_id = owner_id.strip().lower()
        try:
            response = await self._client.request(
                "GET",
                f"{self._data}/systemusers({user_id})",
                params={"$select": "internalemailaddress,fullname"},
            )
        except CRMRequestRejected as exc:
            if exc.status == 404:
                return None
            raise
        document = answer_json(response, f"Dataverse systemuser {user_id}")
        if not isinstance(document, Mapping):
            raise PayloadError(f"Dataverse systemuser {user_id}: the answer is not a JSON object")
        return CRMOwner(
            owner_id=owner_id,
            email=_text(document.get("internalemailaddress")),
            name=_text(document.get("fullname")),
        )

    async def list_backfill_page(self, *, object_type: str, after: str | None) -> BackfillPage:
        """One page of `object_type` rows (an entity set of `BACKFILL_OBJECTS`) as normalised
        events keyed `dynamics:<table>:<id>:<modifiedon>`.

        `after` is the previous page's `@odata.nextLink` (None: the first page), sent back as
        Dataverse gave it; the page's own nextLink is `next_after`. ValueError for another
        object type or a cursor that is not a link into this environment; PayloadError for an
        answer that is not what the Web API documents.
        """

        async def page(planned: tuple[str, ...]) -> BackfillPage:
            return await backfill_page(
                self._client,
                data=self._data,
                org_url=self.org_url,
                mapping=self.mapping,
                object_type=object_type,
                after=after,
                planned=planned,
                reads=self.reads,
            )

        # Only a first page names its columns; the next ones follow the link Dataverse gave.
        if object_type == ENTITY_SET and after is None:
            return await self._read_accounts(page)
        return await page(())

    # --- write-back ----------------------------------------------------------------------------

    async def write_health(self, updates: Sequence[RecordUpdate]) -> WriteResult:
        """Update up to `max_batch_size` accounts with one `$batch`: each `PATCH
        accounts(<id>)` (with `If-Match: *`, so a deleted account is not re-created) in a change
        set of its own, and `Prefer: odata.continue-on-error` so one refusal stops nothing.

        Each operation's answer is found by its Content-ID (else its position) and sorted by
        `part_outcome`; an operation the answer does not mention counts as failed.
        """
        if len(updates) > self.max_batch_size:
            raise ValueError(
                f"this Dynamics connector writes at most {self.max_batch_size} accounts a batch"
            )
        result = WriteResult()
        sendable: list[tuple[str, RecordUpdate]] = []
        for update in updates:
            if GUID.fullmatch(update.record_id.strip()):
                sendable.append((update.record_id.strip().lower(), update))
            else:
                result.rejected[update.record_id] = "not a Dataverse row id (a GUID)"
        if not sendable:
            return result
        operations = [
            BatchOperation(
                method="PATCH",
                url=f"{self.org_url}{self._data}/{ENTITY_SET}({row_id})",
                body=self.fields.to_web_api(update.fields),
                headers={"If-Match": "*"},
            )
            for row_id, update in sendable
        ]
        content_type, body = build_batch(operations)
        response = await self._client.request(
            "POST",
            f"{self._data}/$batch",
            content=body,
            headers={"Content-Type": content_type, "Prefer": CONTINUE_ON_ERROR},
        )
        parts = parse_batch_response(response.content, response.headers.get("Content-Type"))
        sort_answers([update for _, update in sendable], parts, result)
        log.info(
            "dynamics_health_written",
            records=len(updates),
            written=len(result.written),
            failed=len(result.failed),
            rejected=len(result.rejected),
        )
        return result

    async def read_health(self, record_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """The health columns (the plan's scores too) of up to `max_batch_size` accounts:
        `GET accounts` with `$select` and an `In` filter on accountid (Web API query function
        `Microsoft.Dynamics.CRM.In`), `READ_IDS_PER_REQUEST` ids a request.

        Rows Dataverse does not have (deleted, or not readable by the application user) and
        ids that are no GUID are absent; a choice value that is no band of ours comes back as
        its number, so it differs from any band.
        """
        if len(record_ids) > self.max_batch_size:
            raise ValueError(
                f"this Dynamics connector reads at most {self.max_batch_size} accounts a batch"
            )
        by_guid: dict[str, str] = {}
        for record_id in record_ids:
            if GUID.fullmatch(record_id.strip()):
                by_guid.setdefault(record_id.strip().lower(), record_id)
        guids = list(by_guid)
        select = ",".join([f"{ENTITY}id", *self.fields.logical_names.values()])
        found: dict[str, dict[str, FieldValue]] = {}
        for start in range(0, len(guids), READ_IDS_PER_REQUEST):
            chunk = guids[start : start + READ_IDS_PER_REQUEST]
            values = ",".join(f"'{guid}'" for guid in chunk)
            response = await self._client.request(
                "GET",
                f"{self._data}/{ENTITY_SET}",
                params={
                    "$select": select,
                    "$filter": f"Microsoft.Dynamics.CRM.In(PropertyName='{ENTITY}id',"
                    f"PropertyValues=[{values}])",
                },
            )
            where = "Dataverse account health read"
            document = answer_json(response, where)
            rows = document.get("value") if isinstance(document, Mapping) else None
            if not isinstance(rows, list):
                raise PayloadError(f"{where}: the answer has no 'value' list")
            for row in rows:
                row_id = row.get(f"{ENTITY}id") if isinstance(row, Mapping) else None
                if isinstance(row_id, str) and row_id.lower() in by_guid:
                    found[by_guid[row_id.lower()]] = self._health_values(row)
        return found

    def stored_health(self, fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
        """`fields` as the account columns hold them (the band as its choice, the drivers cut
        to the Memo's length), read back as `read_health` reads them."""
        return self._health_values(self.fields.to_web_api(fields))

    def _health_values(self, row: Mapping[str, Any]) -> dict[str, FieldValue]:
        values: dict[str, FieldValue] = {}
        for column in self.fields.health_columns:
            value = row.get(column.logical_name)
            if value == "" or isinstance(value, bool) or not isinstance(value, str | int | float):
                value = None
            if column.type == "Picklist" and isinstance(value, int):
                neutral = {option: band for option, band, _ in column.options}
                value = neutral.get(value, str(value))
            values[column.neutral] = value
        return values

    async def create_task(self, task: TaskRequest) -> str:
        """Create a task regarding the account, owned by `owner_id` when given (a systemuser
        id; otherwise the application user owns it); returns the task's activityid."""
        account = guid(task.record_id, "record_id")
        body: dict[str, Any] = {
            "subject": task.subject[:TASK_SUBJECT_LENGTH],
            "description": task.body[:TASK_DESCRIPTION_LENGTH],
            "scheduledend": task.due_at.astimezone(UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "prioritycode": TASK_PRIORITIES[task.priority],
            "regardingobjectid_account_task@odata.bind": f"/{ENTITY_SET}({account})",
        }
        if task.owner_id is not None:
            body["ownerid@odata.bind"] = f"/systemusers({guid(task.owner_id, 'owner_id')})"
        response = await self._client.request(
            "POST",
            f"{self._data}/tasks",
            json=body,
            params={"$select": "activityid"},
            headers={"Prefer": "return=representation"},
        )
        task_id = _created_id(response, "Dataverse task create", key="activityid")
        log.info("dynamics_task_created", task_id=task_id, account=account)
        return task_id

    # --- provisioning --------------------------------------------------------------------------

    async def ensure_fields(self) -> ProvisionReport:
        """Create the missing health columns (the plan's too), fix drifted labels and choices,
        publish account when anything changed (see `ColumnProvisioner.ensure_fields`); the
        inputs are read by their choices' values as the environment holds them from then on."""
        provisioner = self._provisioner()
        try:
            return await provisioner.ensure_fields()
        finally:
            # Also after a failure part way: what was learned or created holds.
            self._learn_choices(provisioner.choices)
            self._readable.forget()

    async def missing_health_fields(self) -> list[str]:
        """The health columns account lacks (one metadata read, no write)."""
        return await self._provisioner().missing_health_fields()

    def _provisioner(self) -> ColumnProvisioner:
        return ColumnProvisioner(
            client=self._client, data=self._data, fields=self.fields, solution=self.solution
        )


def _merged(
    known: Mapping[str, Mapping[str, int]], learned: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Option values by input and label, `learned` winning."""
    merged = {neutral: dict(values) for neutral, values in known.items()}
    for neutral, values in learned.items():
        merged.setdefault(neutral, {}).update(values)
    return merged


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _created_id(response: httpx.Response, where: str, *, key: str) -> str:
    """The id of a created row: from the representation (`Prefer: return=representation`,
    201), else from the `OData-EntityId` header of a 204."""
    if response.content:
        document = answer_json(response, where)
        value = document.get(key) if isinstance(document, Mapping) else None
        if isinstance(value, str) and GUID.fullmatch(value):
            return value.lower()
    match = _ENTITY_ID.search(response.headers.get("OData-EntityId", ""))
    if match is None:
        raise PayloadError(f"{where}: the answer names no created row")
    return match.group(1).lower()
