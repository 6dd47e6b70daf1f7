"""Calls to the Dataverse Web API of a Dynamics 365 environment: provision the health columns on
account, batch-write and read back account health, create follow-up tasks, read rows (hydrate,
backfill) and learn the application user's own id.

Every call goes through one `RetryingClient` whose base URL is the environment's URL and whose
`auth` (`connector.dynamics.auth.DynamicsAuth`) adds the bearer token, so paths here start at
`/api/data/`. Batch writes use `$batch` (OData 4.0 multipart/mixed, Power Apps docs "Execute
batch operations using the Web API"); the request body is built and the answer parsed here.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import structlog

from connector.base import (
    BackfillPage,
    CRMOwner,
    FieldValue,
    ProvisionReport,
    RecordUpdate,
    TaskRequest,
    WriteResult,
)
from connector.dynamics.events import DynamicsRecord
from connector.dynamics.fields import ENTITY, ENTITY_SET, DynamicsFields, HealthColumn, label
from connector.dynamics.limits import SERVICE_PROTECTION_CODES, DynamicsLimits
from connector.dynamics.records import (
    DEFAULT_MAPPING,
    ENTITY_SETS,
    DynamicsMapping,
    record_from_web_api,
    to_normalised,
    web_api_select,
)
from connector.errors import ConnectorError, CRMRequestRejected, PayloadError
from connector.http import LimitInspector, RateLimit, RetryingClient, RetryPolicy
from connector.model import NormalisedEvent

__all__ = [
    "BACKFILL_OBJECTS",
    "BATCH_REQUEST_LIMIT",
    "CONTINUE_ON_ERROR",
    "DEFAULT_API_VERSION",
    "DEFAULT_BATCH_SIZE",
    "ERROR_CODE_OUTCOMES",
    "PAGE_SIZE",
    "PART_STATUS_OUTCOMES",
    "BatchOperation",
    "BatchPart",
    "DynamicsConnector",
    "PartOutcome",
    "build_batch",
    "parse_batch_response",
    "part_outcome",
]

log = structlog.get_logger(__name__)

DEFAULT_API_VERSION: Final = "v9.2"
# A $batch holds at most 1,000 requests. Half of that by default: the docs advise against large
# batches (one batch is one request whose whole execution time counts against the 20 minutes
# per 5 that service protection allows, and a long batch is more likely to time out and be
# sent again whole), while 500 accounts a call keeps a full recompute to a few calls.
BATCH_REQUEST_LIMIT: Final = 1_000
DEFAULT_BATCH_SIZE: Final = 500
# Rows per backfill page (`Prefer: odata.maxpagesize`; Dataverse's own default and maximum is
# 5,000).
PAGE_SIZE: Final = 500
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

CONTINUE_ON_ERROR: Final = "odata.continue-on-error"
# Lookups then name their table: `_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname`.
LOOKUP_ANNOTATIONS: Final = 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'

# Tables listed by a backfill, by entity set; accounts first, so they exist before the rows
# that hang off them.
BACKFILL_OBJECTS: tuple[str, ...] = (
    "accounts",
    "contacts",
    "emails",
    "phonecalls",
    "appointments",
    "incidents",
)
_ENTITY_BY_SET: Final[Mapping[str, str]] = MappingProxyType(
    {entity_set: entity for entity, entity_set in ENTITY_SETS.items()}
)

# Task column limits (task table reference): subject 200 characters, description 2,000.
TASK_SUBJECT_LENGTH: Final = 200
TASK_DESCRIPTION_LENGTH: Final = 2_000
# task.prioritycode: 0 Low, 1 Normal, 2 High.
TASK_PRIORITIES: Final[Mapping[str, int]] = MappingProxyType({"low": 0, "medium": 1, "high": 2})

PUBLISH_ENTRY: Final = f"publish:{ENTITY}"

_API_VERSION = re.compile(r"v\d{1,2}\.\d{1,2}")
_SOLUTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})\)\s*$")
_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_STATUS_LINE = re.compile(r"HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s+(.*))?")


# --- per-part outcomes -------------------------------------------------------------------------


class PartOutcome(enum.Enum):
    """What the answer to one operation of a batch means for the write-back outbox."""

    WRITTEN = "written"
    FAILED = "failed"  # a later try may succeed: retry it
    REJECTED = "rejected"  # the same values will be refused again: wait for newer ones


_WRITTEN = PartOutcome.WRITTEN
_FAILED = PartOutcome.FAILED
_REJECTED = PartOutcome.REJECTED

# The status of one operation's answer. Not listed: 2xx is written, other 4xx rejected, 5xx and
# anything else failed (retrying what is not understood is safer than dropping a write).
PART_STATUS_OUTCOMES: Final[Mapping[int, PartOutcome]] = MappingProxyType(
    {
        # A value a column refuses, a column that does not exist (yet), a malformed id.
        400: _REJECTED,
        # The token expired while the batch ran: a new one is fetched for the next try.
        401: _FAILED,
        # The application user lacks the privilege (prvWriteAccount) or access to the row.
        403: _REJECTED,
        # The account was deleted (`If-Match: *` stops the PATCH re-creating it).
        404: _REJECTED,
        408: _FAILED,
        # `If-Match: *` on a row that is not there, as some versions answer it.
        412: _REJECTED,
        # Service protection within the batch.
        429: _FAILED,
    }
)

# Dataverse error codes (`{"error": {"code": ...}}`) that decide whatever the status says.
ERROR_CODE_OUTCOMES: Final[Mapping[str, PartOutcome]] = MappingProxyType(
    {
        **dict.fromkeys(SERVICE_PROTECTION_CODES, _FAILED),
        # ObjectDoesNotExist: "account With Id = ... Does Not Exist".
        "0x80040217": _REJECTED,
    }
)


# Answers that say the account row is not there: deleted, or an id of nothing.
MISSING_ROW_STATUSES: Final = frozenset({404, 412})
MISSING_ROW_CODE: Final = "0x80040217"


def part_outcome(status: int, code: str | None = None) -> PartOutcome:
    """The outcome of one operation's answer: its error code first, then the status table,
    then the status class."""
    if code is not None:
        by_code = ERROR_CODE_OUTCOMES.get(code.strip().lower())
        if by_code is not None:
            return by_code
    by_status = PART_STATUS_OUTCOMES.get(status)
    if by_status is not None:
        return by_status
    if 200 <= status < 300:
        return _WRITTEN
    if 400 <= status < 500:
        return _REJECTED
    return _FAILED


# --- $batch bodies -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BatchOperation:
    """One request of a batch: its method, absolute URL, JSON body and extra headers."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def build_batch(
    operations: Sequence[BatchOperation], *, batch_id: str | None = None
) -> tuple[str, bytes]:
    """(Content-Type, body) of a `$batch` request that puts each operation in a change set of
    its own, numbered by `Content-ID` 1, 2, ... in order.

    A change set is one transaction, so one operation per change set means one failed update
    rolls back only itself; the Content-ID names it in the answer. ValueError for more than
    1,000 operations.
    """
    if len(operations) > BATCH_REQUEST_LIMIT:
        raise ValueError(f"a Dataverse $batch holds at most {BATCH_REQUEST_LIMIT} requests")
    unique = batch_id or uuid.uuid4().hex
    boundary = f"batch_{unique}"
    lines: list[str] = []
    for number, operation in enumerate(operations, start=1):
        # Fixed width: no change set's boundary may start another's (`_1` and `_10`).
        changeset = f"changeset_{unique}_{number:04d}"
        lines += [
            f"--{boundary}",
            f"Content-Type: multipart/mixed; boundary={changeset}",
            "",
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {number}",
            "",
            f"{operation.method.upper()} {operation.url} HTTP/1.1",
        ]
        if operation.body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{name}: {value}" for name, value in operation.headers.items()]
        lines.append("")
        if operation.body is not None:
            lines.append(json.dumps(operation.body, separators=(",", ":"), ensure_ascii=False))
        lines.append(f"--{changeset}--")
    lines += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(lines).encode()


@dataclass(frozen=True, kw_only=True)
class BatchPart:
    """One operation's answer in a batch response.

    `index` is the position of the top-level part it came in (a change set, or an operation
    outside any), `content_id` the Content-ID it carries, if any. `headers` have lowercase
    names.
    """

    index: int
    content_id: str | None
    status: int
    reason: str
    headers: Mapping[str, str]
    body: str

    def error(self) -> tuple[str | None, str]:
        """(Dataverse error code, "status code: message") of this answer."""
        code: str | None = None
        message = ""
        try:
            document = json.loads(self.body) if self.body else None
        except ValueError:
            document = None
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict):
            raw_code = error.get("code")
            code = str(raw_code) if isinstance(raw_code, str | int) else None
            raw_message = error.get("message")
            message = raw_message if isinstance(raw_message, str) else ""
        head = f"{self.status} {code}" if code else f"{self.status} {self.reason}".strip()
        return code, f"{head}: {message}" if message else head


def parse_batch_response(body: bytes, content_type: str | None) -> list[BatchPart]:
    """Every operation's answer in a `$batch` response, in order; change sets are opened.

    The boundary comes from `content_type`, or from the body's first line when the header does
    not say. A part cut off before its closing boundary (a truncated answer) is left out, so the
    operation counts as unanswered rather than as done. PayloadError when the body is no
    multipart batch response at all.
    """
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n")
    boundary = _boundary_of(content_type) or _first_boundary(text)
    if boundary is None:
        raise PayloadError("Dataverse $batch: the answer is not multipart/mixed")
    parts: list[BatchPart] = []
    for index, part in enumerate(_split(text, boundary)):
        headers, rest = _head(part)
        inner = _boundary_of(headers.get("content-type"))
        if inner is not None and headers.get("content-type", "").lower().startswith("multipart/"):
            for inner_part in _split(rest, inner):
                inner_headers, inner_rest = _head(inner_part)
                answer = _http_answer(inner_rest, index=index, mime_headers=inner_headers)
                if answer is not None:
                    parts.append(answer)
            continue
        answer = _http_answer(rest, index=index, mime_headers=headers)
        if answer is not None:
            parts.append(answer)
    return parts


def _boundary_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _BOUNDARY.search(content_type)
    return None if match is None else (match.group(1) or match.group(2))


def _first_boundary(text: str) -> str | None:
    for line in text.split("\n"):
        if line.strip():
            stripped = line.strip()
            return stripped[2:] if stripped.startswith("--") and len(stripped) > 2 else None
    return None


def _split(text: str, boundary: str) -> list[str]:
    """The parts between `--boundary` lines up to `--boundary--` (RFC 2046); a part not ended
    by a boundary line is dropped."""
    delimiter = f"--{boundary}"
    parts: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped == delimiter:
            if current is not None:
                parts.append("\n".join(current))
            current = []
        elif stripped == f"{delimiter}--":
            if current is not None:
                parts.append("\n".join(current))
            return parts
        elif current is not None:
            current.append(line)
    # No closing delimiter: the answer was cut short and its last part may be too.
    return parts


def _head(text: str) -> tuple[dict[str, str], str]:
    """(headers with lowercase names, the rest) of a MIME part or an HTTP message; the first
    empty line ends the headers (a part without headers starts with one)."""
    lines = text.split("\n")
    headers: dict[str, str] = {}
    for number, line in enumerate(lines):
        if not line.strip():
            return headers, "\n".join(lines[number + 1 :])
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, ""


def _http_answer(text: str, *, index: int, mime_headers: Mapping[str, str]) -> BatchPart | None:
    """The HTTP response an `application/http` part carries; None when it carries none."""
    stripped = text.lstrip("\n")
    status_line, _, rest = stripped.partition("\n")
    match = _STATUS_LINE.fullmatch(status_line.strip())
    if match is None:
        return None
    headers, body = _head(rest)
    content_id = mime_headers.get("content-id") or headers.get("content-id")
    return BatchPart(
        index=index,
        content_id=content_id.strip() if content_id else None,
        status=int(match.group(1)),
        reason=(match.group(2) or "").strip(),
        headers=headers,
        body=body.strip(),
    )


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


def _guid(value: str, what: str) -> str:
    if not isinstance(value, str) or not _GUID.fullmatch(value.strip()):
        raise ValueError(f"{what} must be a Dataverse row id (a GUID), not {value!r}")
    return value.strip().lower()


def _json(response: httpx.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise PayloadError(f"{where}: the answer is not JSON") from exc


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

    # --- who we are ----------------------------------------------------------------------------

    async def own_user_id(self) -> str:
        """The application user's systemuser id (`WhoAmI`), asked once: deliveries of changes
        it made are the echoes of our own writes."""
        async with self._user_lock:
            if self._user_id is None:
                response = await self._client.request("GET", f"{self._data}/WhoAmI")
                document = _json(response, "Dataverse WhoAmI")
                user_id = document.get("UserId") if isinstance(document, Mapping) else None
                if not isinstance(user_id, str) or not _GUID.fullmatch(user_id):
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
        select = web_api_select(entity, self.mapping)
        row_id = _guid(record_id, "record_id")
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
        return record_from_web_api(entity, _json(response, f"Dataverse {entity} {row_id}"))

    async def read_owner(self, owner_id: str) -> CRMOwner | None:
        """The systemuser an account's `ownerid` names (`internalemailaddress`, `fullname`);
        None for an id that is no GUID or no user Dataverse has. An account owned by a team
        has a team's id here, which no systemuser has."""
        if not _GUID.fullmatch(owner_id.strip()):
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
        document = _json(response, f"Dataverse systemuser {user_id}")
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
        if object_type not in BACKFILL_OBJECTS:
            raise ValueError(
                f"cannot backfill {object_type!r}; expected one of {', '.join(BACKFILL_OBJECTS)}"
            )
        entity = _ENTITY_BY_SET[object_type]
        headers = {"Prefer": f"{LOOKUP_ANNOTATIONS},odata.maxpagesize={PAGE_SIZE}"}
        where = f"Dataverse {object_type} page"
        if after is None:
            select = (*web_api_select(entity, self.mapping), "modifiedon")
            response = await self._client.request(
                "GET",
                f"{self._data}/{object_type}",
                params={"$select": ",".join(dict.fromkeys(select))},
                headers=headers,
            )
        else:
            if not self._is_own_link(after):
                raise ValueError(f"after must be an @odata.nextLink of {self.org_url}")
            response = await self._client.request("GET", after, headers=headers)
        document = _json(response, where)
        if not isinstance(document, Mapping) or not isinstance(document.get("value"), list):
            raise PayloadError(f"{where}: the answer has no 'value' list")
        rows = document["value"]
        events: list[tuple[str, NormalisedEvent]] = []
        for index, row in enumerate(rows):
            events += self._row_events(entity, row, where=f"{where}: value[{index}]")
        following = document.get("@odata.nextLink")
        if following is not None:
            if not isinstance(following, str) or not self._is_own_link(following):
                # The bearer token goes wherever the link points: only ever to this environment.
                raise PayloadError(f"{where}: @odata.nextLink does not point into {self.org_url}")
            if following == after:
                raise PayloadError(f"{where}: @odata.nextLink repeats the cursor")
        log.info(
            "dynamics_backfill_page",
            object_type=object_type,
            rows=len(rows),
            events=len(events),
            more=following is not None,
        )
        return BackfillPage(object_type=object_type, events=events, next_after=following)

    def _is_own_link(self, url: str) -> bool:
        link, own = urlsplit(url), urlsplit(self.org_url)
        return (
            link.scheme == own.scheme
            and (link.hostname or "").lower() == (own.hostname or "").lower()
            and link.port == own.port
            and link.path.startswith("/api/data/")
        )

    def _row_events(
        self, entity: str, row: Any, *, where: str
    ) -> list[tuple[str, NormalisedEvent]]:
        if not isinstance(row, Mapping):
            raise PayloadError(f"{where} is not a JSON object")
        record = record_from_web_api(entity, row)
        version = row.get("modifiedon") or row.get("@odata.etag")
        if not isinstance(version, str) or not version:
            raise PayloadError(f"{where} has neither modifiedon nor @odata.etag")
        key = f"dynamics:{entity}:{record.id}:{version}"
        return [
            (key if number == 0 else f"{key}:{number}", event)
            for number, event in enumerate(to_normalised(record, self.mapping))
        ]

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
            if _GUID.fullmatch(update.record_id.strip()):
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
        _sort_answers([update for _, update in sendable], parts, result)
        log.info(
            "dynamics_health_written",
            records=len(updates),
            written=len(result.written),
            failed=len(result.failed),
            rejected=len(result.rejected),
        )
        return result

    async def read_health(self, record_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """The health columns of up to `max_batch_size` accounts: `GET accounts` with
        `$select` and an `In` filter on accountid (Web API query function
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
            if _GUID.fullmatch(record_id.strip()):
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
            document = _json(response, where)
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
        bands = {value: band for band, value in self.fields.band_values.items()}
        values: dict[str, FieldValue] = {}
        for column in self.fields.columns:
            value = row.get(column.logical_name)
            if value == "" or isinstance(value, bool) or not isinstance(value, str | int | float):
                value = None
            if column.type == "Picklist" and isinstance(value, int):
                value = bands.get(value, str(value))
            values[column.neutral] = value
        return values

    async def create_task(self, task: TaskRequest) -> str:
        """Create a task regarding the account, owned by `owner_id` when given (a systemuser
        id; otherwise the application user owns it); returns the task's activityid."""
        account = _guid(task.record_id, "record_id")
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
            body["ownerid@odata.bind"] = f"/systemusers({_guid(task.owner_id, 'owner_id')})"
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
        """Create the health columns on account that are missing, bring the labels of existing
        ones back to ours, add missing band choices, and publish the account table when
        anything changed (so the columns can be put on forms).

        Idempotent: a second run sends no POST or PUT. A create that finds its column already
        there (another provision run won the race) counts as unchanged. ConnectorError when a
        column of ours exists with another type: that cannot be changed in place.
        """
        report = ProvisionReport()
        existing = await self._existing_columns()
        for column in self.fields.columns:
            current = existing.get(column.logical_name)
            if current is None:
                created = await self._create_column(column)
                (report.created if created else report.unchanged).append(column.logical_name)
                continue
            attribute_type = current.get("AttributeType")
            if attribute_type != column.attribute_type:
                raise ConnectorError(
                    f"Dataverse: account column {column.logical_name} exists as "
                    f"{attribute_type}, not {column.attribute_type}; delete it or use another "
                    "publisher prefix"
                )
            changed = await self._update_labels(column, current)
            if column.options and await self._ensure_options(column):
                changed = True
            (report.updated if changed else report.unchanged).append(column.logical_name)
        if report.created or report.updated:
            await self._client.request(
                "POST",
                f"{self._data}/PublishXml",
                json={
                    "ParameterXml": (
                        f"<importexportxml><entities><entity>{ENTITY}</entity></entities>"
                        "</importexportxml>"
                    )
                },
            )
            report.updated.append(PUBLISH_ENTRY)
        else:
            report.unchanged.append(PUBLISH_ENTRY)
        log.info(
            "dynamics_fields_ensured",
            created=len(report.created),
            updated=len(report.updated),
            unchanged=len(report.unchanged),
        )
        return report

    @property
    def _attributes(self) -> str:
        return f"{self._data}/EntityDefinitions(LogicalName='{ENTITY}')/Attributes"

    @property
    def _solution_header(self) -> dict[str, str]:
        return {"MSCRM.SolutionUniqueName": self.solution}

    async def missing_health_fields(self) -> list[str]:
        """The health columns account lacks (one metadata read, no write)."""
        existing = await self._existing_columns()
        return [
            column.logical_name
            for column in self.fields.columns
            if column.logical_name not in existing
        ]

    async def _existing_columns(self) -> dict[str, Mapping[str, Any]]:
        """Our columns that exist on account, by logical name. Metadata queries are not paged:
        every custom column comes in one answer."""
        response = await self._client.request(
            "GET",
            self._attributes,
            params={
                "$select": "LogicalName,AttributeType,DisplayName,Description",
                "$filter": "IsCustomAttribute eq true",
            },
        )
        document = _json(response, "Dataverse account attributes")
        values = document.get("value") if isinstance(document, Mapping) else None
        if not isinstance(values, list):
            raise PayloadError("Dataverse account attributes: the answer has no 'value' list")
        ours = self.fields.by_logical_name
        return {
            str(item["LogicalName"]): item
            for item in values
            if isinstance(item, Mapping) and item.get("LogicalName") in ours
        }

    async def _create_column(self, column: HealthColumn) -> bool:
        """POST the column; False when Dataverse says it exists already."""
        try:
            await self._client.request(
                "POST", self._attributes, json=column.definition(), headers=self._solution_header
            )
        except CRMRequestRejected as exc:
            if exc.status == 400 and "already exists" in exc.body.lower():
                log.info("dynamics_column_exists", column=column.logical_name)
                return False
            raise
        log.info("dynamics_column_created", column=column.logical_name)
        return True

    async def _update_labels(self, column: HealthColumn, current: Mapping[str, Any]) -> bool:
        """PUT the column's definition with our labels when its display name or description
        drifted; True when it did. An update replaces the whole definition, so it is read
        first (cast to its type, for the type's own properties)."""
        changed = column.label_differences(current)
        if not changed:
            return False
        path = f"{self._attributes}(LogicalName='{column.logical_name}')"
        response = await self._client.request("GET", f"{path}/{column.metadata_type}")
        definition = _json(response, f"Dataverse column {column.logical_name}")
        if not isinstance(definition, Mapping):
            raise PayloadError(f"Dataverse column {column.logical_name}: not a JSON object")
        await self._client.request(
            "PUT",
            path,
            json=column.with_our_labels(definition),
            headers={**self._solution_header, "MSCRM.MergeLabels": "true"},
        )
        log.info("dynamics_column_updated", column=column.logical_name, changed=changed)
        return True

    async def _ensure_options(self, column: HealthColumn) -> bool:
        """Insert band choices that are missing and relabel ones that drifted; True when any
        was. Other choices an admin added are left alone."""
        response = await self._client.request(
            "GET",
            f"{self._attributes}(LogicalName='{column.logical_name}')/{column.metadata_type}",
            params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
        )
        document = _json(response, f"Dataverse choices of {column.logical_name}")
        option_set = document.get("OptionSet") if isinstance(document, Mapping) else None
        options = option_set.get("Options") if isinstance(option_set, Mapping) else None
        if not isinstance(options, list):
            raise PayloadError(f"Dataverse choices of {column.logical_name}: no OptionSet.Options")
        labels: dict[int, str | None] = {}
        for option in options:
            if isinstance(option, Mapping) and isinstance(option.get("Value"), int):
                labels[option["Value"]] = _option_label(option, column.language_code)
        changed = False
        for value, _, text in column.options:
            if value not in labels:
                action = "InsertOptionValue"
                extra: dict[str, Any] = {}
            elif labels[value] != text:
                action = "UpdateOptionValue"
                extra = {"MergeLabels": True}
            else:
                continue
            await self._client.request(
                "POST",
                f"{self._data}/{action}",
                json={
                    "EntityLogicalName": ENTITY,
                    "AttributeLogicalName": column.logical_name,
                    "Value": value,
                    "Label": label(text, language_code=column.language_code),
                    "SolutionUniqueName": self.solution,
                    **extra,
                },
            )
            log.info("dynamics_choice_ensured", column=column.logical_name, value=value)
            changed = True
        return changed


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _option_label(option: Mapping[str, Any], language_code: int) -> str | None:
    value = option.get("Label")
    labels = value.get("LocalizedLabels") if isinstance(value, Mapping) else None
    for item in labels if isinstance(labels, list) else []:
        if isinstance(item, Mapping) and item.get("LanguageCode") == language_code:
            text = item.get("Label")
            return text if isinstance(text, str) else None
    return None


def _created_id(response: httpx.Response, where: str, *, key: str) -> str:
    """The id of a created row: from the representation (`Prefer: return=representation`,
    201), else from the `OData-EntityId` header of a 204."""
    if response.content:
        document = _json(response, where)
        value = document.get(key) if isinstance(document, Mapping) else None
        if isinstance(value, str) and _GUID.fullmatch(value):
            return value.lower()
    match = _ENTITY_ID.search(response.headers.get("OData-EntityId", ""))
    if match is None:
        raise PayloadError(f"{where}: the answer names no created row")
    return match.group(1).lower()


def _sort_answers(
    updates: Sequence[RecordUpdate], parts: Sequence[BatchPart], result: WriteResult
) -> None:
    """Sort each update into written, failed or rejected by its answer in `parts`."""
    by_content_id: dict[str, BatchPart] = {}
    by_index: dict[int, BatchPart] = {}
    for answer in parts:
        if answer.content_id is not None:
            by_content_id.setdefault(answer.content_id, answer)
        by_index.setdefault(answer.index, answer)
    for position, update in enumerate(updates):
        content_id = str(position + 1)
        part: BatchPart | None = by_content_id.get(content_id)
        if part is None:
            # A failed change set may answer with a single part and no Content-ID: its
            # position still names it, as each change set holds one update.
            candidate = by_index.get(position)
            if candidate is not None and candidate.content_id in {None, content_id}:
                part = candidate
        record_id = update.record_id
        if part is None:
            # Believing a write landed that Dataverse did not confirm would lose it.
            result.failed[record_id] = "not answered in Dataverse's $batch response"
            continue
        code, text = part.error()
        outcome = part_outcome(part.status, code)
        if outcome is PartOutcome.WRITTEN:
            result.written.add(record_id)
        elif outcome is PartOutcome.REJECTED and (
            part.status in MISSING_ROW_STATUSES or (code or "").lower() == MISSING_ROW_CODE
        ):
            result.missing[record_id] = text
        elif outcome is PartOutcome.REJECTED:
            result.rejected[record_id] = text
        else:
            result.failed[record_id] = text
    if len(by_index) > len(updates):
        log.warning("dynamics_extra_batch_answers", sent=len(updates), answered=len(by_index))
