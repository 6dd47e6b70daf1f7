"""The Dataverse `$batch` codec (OData 4.0 multipart/mixed, Power Apps docs "Execute batch
operations using the Web API"): build a request body, parse the answer into parts, and sort each
update into written, failed, rejected or missing by its part."""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import structlog

from connector.base import RecordUpdate, WriteResult
from connector.dynamics.limits import SERVICE_PROTECTION_CODES
from connector.errors import PayloadError

__all__ = [
    "BATCH_REQUEST_LIMIT",
    "CONTINUE_ON_ERROR",
    "ERROR_CODE_OUTCOMES",
    "PART_STATUS_OUTCOMES",
    "BatchOperation",
    "BatchPart",
    "PartOutcome",
    "build_batch",
    "parse_batch_response",
    "part_outcome",
    "sort_answers",
]

log = structlog.get_logger(__name__)

# A $batch holds at most 1,000 requests.
BATCH_REQUEST_LIMIT: Final = 1_000
CONTINUE_ON_ERROR: Final = "odata.continue-on-error"
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


def sort_answers(
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
