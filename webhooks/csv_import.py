"""CSV imports of native events (`crm-health import usage|outcomes`): rows are read as a
stream, validated with the native event models and stored in the inbox as native events.
What a row holds is an EventCsv subclass (webhooks.usage_import, webhooks.outcome_import).

Row problems are reported by physical line and skipped; problems with the file itself (no
header, missing columns, not UTF-8, unreadable) raise ImportFileError before anything is
stored.
"""

from __future__ import annotations

import abc
import contextlib
import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar

from pydantic import ValidationError

from connector import bounds
from connector.native import NATIVE_EVENT
from webhooks.clock import utcnow
from webhooks.progress import Progress
from webhooks.store import inbox
from webhooks.store.db import SessionFactory

SOURCE = "native"
BATCH_SIZE = 1000
ERROR_LIMIT = 100
PROGRESS_EVERY = 100_000
# A row is a few short fields; a longer line means the file is not the CSV we expect (and
# reading it whole could exhaust memory).
MAX_LINE_BYTES = 1024 * 1024
_ECHO = 60

# (column, what is wrong with its value)
Problem = tuple[str, str]


class ImportFileError(ValueError):
    """Raised by open_csv, parse_delimiter, EventCsv and import_rows when the file itself
    cannot be imported: unreadable, empty, not UTF-8, a bad header. `summary` holds what was
    already done when the problem appeared part-way through a stream that could not be
    checked in advance."""

    def __init__(self, message: str, *, summary: ImportSummary | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.summary = summary


@dataclass(frozen=True, kw_only=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class ParsedRow:
    line: int
    event: inbox.NewEvent


@dataclass(kw_only=True)
class ImportSummary:
    rows: int = 0
    valid: int = 0
    stored: int = 0
    duplicates: int = 0
    error_count: int = 0
    # The first ERROR_LIMIT errors; error_count counts them all.
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False

    def text(self) -> str:
        """e.g. `read 10,000 rows: 9,950 stored, 40 duplicates, 10 errors`."""
        if self.dry_run:
            return (
                f"read {self.rows:,} rows: {self.valid:,} valid, {self.error_count:,} errors "
                "(dry run: nothing stored)"
            )
        return (
            f"read {self.rows:,} rows: {self.stored:,} stored, {self.duplicates:,} duplicates, "
            f"{self.error_count:,} errors"
        )


@contextlib.contextmanager
def open_csv(path: str) -> Iterator[BinaryIO]:
    """The file at `path` as bytes (`-`: standard input, left open)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def parse_delimiter(value: str) -> str:
    """One character; `\\t` or `tab` for a tab (hard to type in a shell)."""
    if value in {"\\t", "tab", "TAB"}:
        return "\t"
    if len(value) != 1 or value in {'"', "\r", "\n"}:
        raise ImportFileError(f"the delimiter must be one character (or \\t), not {value!r}")
    return value


def _lines(stream: BinaryIO) -> Iterator[str]:
    """Physical lines decoded one by one, so a bad byte is reported with its line number."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ImportFileError(
                f"line {number}: longer than {MAX_LINE_BYTES:,} bytes; is this a CSV file?"
            )
        try:
            # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte order mark.
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as "
                'UTF-8 (Excel: "CSV UTF-8") and import it again'
            ) from None


def echo(value: str) -> str:
    """A cell's value quoted for an error message, cut short when long."""
    return repr(value if len(value) <= _ECHO else value[:_ECHO] + "...")


def parse_at(value: str) -> datetime:
    """ISO 8601 date (midnight UTC) or date-time; without an offset it is UTC, as warehouses
    export timestamps."""
    # A date alone parses as its midnight.
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def content_key(document: dict[str, Any]) -> str:
    """The dedup key of a row without an id: the SHA-256 of its normalised document, so the
    same row stores once however its columns were ordered or its timestamp was written."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class EventCsv(abc.ABC):
    """A CSV of native events being read. The header is checked on construction; iterating
    validates the rows one at a time, yielding each as a ParsedRow or a RowError. A subclass
    names its columns and turns a row's values into a native event document."""

    # Every column the file may have, in the order the help and the messages list them.
    COLUMNS: ClassVar[tuple[str, ...]]
    REQUIRED: ClassVar[tuple[str, ...]]
    # A header row to show when there is none (or it lacks a column).
    EXAMPLE_HEADER: ClassVar[str]
    # {native event field: the column it comes from} where the names differ, so the model's
    # errors name the column the user wrote.
    FIELD_COLUMNS: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        stream: BinaryIO,
        *,
        delimiter: str = ",",
        ignore_unknown_columns: bool = False,
        check_encoding: bool = True,
    ) -> None:
        if check_encoding and stream.seekable():
            # Read the whole file once first, so that a stray non-UTF-8 byte far down stops
            # the import before anything is stored. Standard input cannot be read twice.
            start = stream.tell()
            for _ in _lines(stream):
                pass
            stream.seek(start)
        self._reader = csv.reader(_lines(stream), delimiter=delimiter)
        self._last_line = 0
        header = self._header()
        self.columns: tuple[str, ...] = header
        unknown = [name for name in header if name not in self.COLUMNS]
        self.ignored_columns = tuple(unknown)
        if unknown and not ignore_unknown_columns:
            names = ", ".join(repr(name) if name else "'' (no name)" for name in unknown)
            raise ImportFileError(
                f"unknown columns: {names}; the columns are {', '.join(self.COLUMNS)} "
                "(--ignore-unknown-columns skips others)"
            )
        missing = self.missing_columns(header)
        if missing:
            raise ImportFileError(
                f"missing required columns: {', '.join(missing)} (line 1 must be a header "
                f"row naming the columns, e.g. {self.EXAMPLE_HEADER})"
            )
        self._index = {name: i for i, name in enumerate(header) if name in self.COLUMNS}
        self._order = {name: position for position, name in enumerate(self._index)}

    def missing_columns(self, header: tuple[str, ...]) -> list[str]:
        """The required columns `header` lacks."""
        return [name for name in self.REQUIRED if name not in header]

    @abc.abstractmethod
    def document(self, values: dict[str, str]) -> tuple[dict[str, Any] | None, list[Problem]]:
        """The native event document of a row's non-empty values (None when a problem leaves
        nothing worth validating), and the problems found building it."""

    def missing_value(self, column: str, document: dict[str, Any]) -> str:
        """What to say of a field the row lacks and the native model requires."""
        return "required"

    def _header(self) -> tuple[str, ...]:
        for fields in self._reader:
            if not any(value.strip() for value in fields):
                continue
            header = tuple(name.strip().lower() for name in fields)
            seen: set[str] = set()
            for name in header:
                if name in seen and name in self.COLUMNS:
                    raise ImportFileError(f"column {name!r} appears twice in the header")
                seen.add(name)
            self._last_line = self._reader.line_num
            return header
        raise ImportFileError(
            f"the file is empty: expected a header row, e.g. {self.EXAMPLE_HEADER}"
        )

    def __iter__(self) -> Iterator[ParsedRow | RowError]:
        while True:
            line = self._last_line + 1
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._last_line = self._reader.line_num
                yield RowError(line=line, message=f"not valid CSV: {exc}")
                continue
            self._last_line = self._reader.line_num
            if not any(value.strip() for value in fields):
                continue
            if self._last_line > line:
                # No id, time or name holds a line break: a value over several lines is a
                # quote left open, which swallows the rows after it.
                message = (
                    f"the row runs on to line {self._last_line}: an unclosed quote? "
                    "(values cannot span lines)"
                )
                yield RowError(line=line, message=message)
                continue
            if len(fields) != len(self.columns):
                message = f"expected {len(self.columns)} fields, found {len(fields)}"
                yield RowError(line=line, message=message)
                continue
            yield self._row(line, fields)

    def _row(self, line: int, fields: list[str]) -> ParsedRow | RowError:
        # An empty cell is a missing value.
        values = {name: value for name, i in self._index.items() if (value := fields[i].strip())}
        document, problems = self.document(values)
        if document is not None:
            try:
                NATIVE_EVENT.validate_python(document, context=bounds.edge_context())
            except ValidationError as exc:
                # A column already found wrong is not reported twice.
                seen = {column for column, _ in problems}
                problems += [p for p in self._field_errors(exc, document) if p[0] not in seen]
        if document is None or problems:
            # In the file's column order, however they were found.
            problems.sort(key=lambda problem: self._order.get(problem[0], len(self._order)))
            return RowError(line=line, message="; ".join(f"{n}: {t}" for n, t in problems))
        event_id = document.get("id")
        key = event_id if isinstance(event_id, str) else content_key(document)
        return ParsedRow(
            line=line,
            event=inbox.NewEvent(dedup_key=key, kind=document["type"], payload=document),
        )

    def _field_errors(self, exc: ValidationError, document: dict[str, Any]) -> list[Problem]:
        """(column, problem) for each field the native model refused."""
        problems = []
        for error in exc.errors(include_url=False):
            name = ".".join(str(part) for part in error["loc"][1:]) or "type"
            column = self.FIELD_COLUMNS.get(name, name)
            if error["type"] == "missing":
                text = self.missing_value(column, document)
            elif error["type"] == "literal_error":
                text = f"must be {error['ctx']['expected']}, not {echo(str(error['input']))}"
            else:
                message = bounds.validation_message(error["msg"])
                text = message[:1].lower() + message[1:]
            problems.append((column, text))
        return problems

    def add_time(
        self, document: dict[str, Any], values: dict[str, str], column: str
    ) -> list[Problem]:
        """Put the row's time (from `column`) into the document as `at`, in UTC; the problem
        with it, if any."""
        at = values.get(column)
        if at is None:
            # The API defaults a missing time to "now"; a file imported twice must not.
            return [(column, "required")]
        try:
            document["at"] = parse_at(at).isoformat()
        except ValueError:
            return [(column, f"not an ISO 8601 date or date-time: {echo(at)}")]
        return []


async def import_rows(
    *,
    rows: EventCsv,
    sessions: SessionFactory | None,
    connection: str,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    error_limit: int = ERROR_LIMIT,
    progress: Progress | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> ImportSummary:
    """Store the valid rows as native events of `connection`, one transaction per batch;
    report the others. A dry run validates every row and stores nothing (no sessions needed)."""
    if sessions is None and not dry_run:
        raise ValueError("sessions are needed unless it is a dry run")
    summary = ImportSummary(dry_run=dry_run)
    # Keyed by dedup key: a row repeated within one batch counts as a duplicate.
    batch: dict[str, inbox.NewEvent] = {}
    pending = 0

    async def flush() -> None:
        nonlocal pending
        if sessions is not None and not dry_run and batch:
            async with sessions() as session, session.begin():
                stored = await inbox.insert_events(
                    session,
                    source=SOURCE,
                    connection=connection,
                    events=list(batch.values()),
                    received_at=utcnow(),
                )
            summary.stored += stored
            summary.duplicates += pending - stored
        batch.clear()
        pending = 0

    try:
        for row in rows:
            summary.rows += 1
            if isinstance(row, RowError):
                summary.error_count += 1
                if len(summary.errors) < error_limit:
                    summary.errors.append(row)
            else:
                summary.valid += 1
                batch[row.event.dedup_key] = row.event
                pending += 1
                if pending >= batch_size:
                    await flush()
            if progress is not None and summary.rows % progress_every == 0:
                progress.update(summary.rows, detail=_progress_detail(summary))
        await flush()
    except ImportFileError as exc:
        # Found part-way through a stream that could not be checked first (standard input):
        # the valid rows read so far are kept, and a second import skips them as duplicates.
        await flush()
        exc.summary = summary
        raise
    finally:
        if progress is not None and summary.rows >= progress_every:
            progress.finish()
    return summary


def _progress_detail(summary: ImportSummary) -> str:
    if summary.dry_run:
        return f"rows read, {summary.error_count:,} errors"
    return f"rows read, {summary.stored:,} stored, {summary.error_count:,} errors"
