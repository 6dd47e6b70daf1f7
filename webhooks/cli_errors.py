"""What the `crm-health` command prints for an expected failure: one place that turns the
exceptions a newcomer can cause (bad credentials, a CRM or database out of reach, a port in
use, wrong configuration, an unknown connection) into one or two lines and an exit status.

Exit statuses (the README's table):
  0  done
  1  the command ran but could not finish: a CRM refused the credentials, could not be
     reached or kept failing; ids that name nothing (the others were handled)
  2  nothing was done: wrong usage or configuration (a setting, the connections or channels
     file, no CRM credentials, an unknown connection) or a database that cannot be used
  3  a server could not start (its port is in use or cannot be bound)

`--debug` (or CRM_HEALTH_DEBUG=1) lets the exception through with its traceback. Anything not
mapped here is a bug and keeps its traceback."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import typer
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

# typer vendors click; its Context is what a group's invoke receives.
from typer._click import Context
from typer.core import TyperGroup

from connector.bounds import validation_message
from connector.crm import CRMSpec
from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRequestRejected,
    CRMRetriesExhausted,
)
from connector.registry import CRMS
from webhooks.alerts.channels.config import ChannelsFileError
from webhooks.connections import ConnectionsFileError
from webhooks.errors import NotConfigured, ServiceError
from webhooks.secrets import SecretKeyError

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_SERVER = 3

DEBUG_ENV = "CRM_HEALTH_DEBUG"

# A line the reader can take in at once; database drivers can put a whole query in a message.
_REASON_LIMIT = 240

_NO_CREDENTIALS_FIX = (
    "set CRM_HEALTH_HUBSPOT_ACCESS_TOKEN (or the Salesforce or Dynamics settings, or "
    "CRM_HEALTH_CONNECTIONS_FILE); see docs/hubspot.md"
)


class CLIFailure(Exception):
    """An expected failure, said in one line (`message`) plus, when there is one, what to do
    (`fix`); raised by commands and produced by `explain` from other exceptions."""

    def __init__(self, message: str, *, fix: str | None = None, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code

    def lines(self) -> list[str]:
        return [self.message] if self.fix is None else [self.message, self.fix]


def unknown_connection(name: str, known: Iterable[str]) -> CLIFailure:
    names = sorted(set(known))
    if not names:
        return CLIFailure(
            f"unknown connection {name!r}: no connection is configured",
            fix=_NO_CREDENTIALS_FIX,
            exit_code=EXIT_CONFIG,
        )
    return CLIFailure(
        f"unknown connection {name!r}; configured: {', '.join(names)}",
        fix="give one of those with --connection",
        exit_code=EXIT_CONFIG,
    )


def no_crm_credentials() -> CLIFailure:
    return CLIFailure(
        "no CRM credentials configured", fix=_NO_CREDENTIALS_FIX, exit_code=EXIT_CONFIG
    )


def require_free_port(host: str, port: int, *, option: str) -> None:
    """Stop before starting anything when `host:port` cannot be listened on: uvicorn would log
    the bind error among its start-up lines and exit without naming the option to change."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CLIFailure(
            f"cannot listen on {host}:{port}: the host name does not resolve ({exc.strerror})",
            fix="give an address of this machine with --host",
            exit_code=EXIT_SERVER,
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As uvicorn binds: SO_REUSEADDR lets a port in TIME_WAIT be taken, never a listener's.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _bind_failure(host, port, option, exc) from None


def _bind_failure(host: str, port: int, option: str, exc: OSError) -> CLIFailure:
    if exc.errno == errno.EADDRINUSE:
        return CLIFailure(
            f"port {port} on {host} is in use (another crm-health, or another program)",
            fix=f"stop it, or choose another port with {option}",
            exit_code=EXIT_SERVER,
        )
    if exc.errno == errno.EACCES:
        return CLIFailure(
            f"not allowed to listen on port {port} (ports below 1024 need privileges)",
            fix=f"choose a port above 1023 with {option}",
            exit_code=EXIT_SERVER,
        )
    return CLIFailure(
        f"cannot listen on {host}:{port}: {exc.strerror or exc}",
        fix=f"check the address, or choose another port with {option}",
        exit_code=EXIT_SERVER,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= _REASON_LIMIT else line[: _REASON_LIMIT - 3] + "..."


def _crm_of(exc: CRMHTTPError) -> CRMSpec | None:
    """The CRM a connector error is about: its client's name leads the message
    ("hubspot:default: GET ..."); the token endpoints name the identity provider."""
    text = str(exc)
    for spec in CRMS.values():
        if text.startswith(f"{spec.name}:") or text.startswith(spec.hints.auth_error_prefixes):
            return spec
    return None


def _crm_failure(exc: CRMHTTPError) -> CLIFailure:
    crm = _crm_of(exc)
    reason = _first_line(exc)
    if isinstance(exc, CRMAuthError):
        where = "the connection's credentials" if crm is None else crm.hints.credentials
        return CLIFailure(
            f"the CRM refused the credentials: {reason}",
            fix=f"check {where}; in a connections file, that entry's credentials",
        )
    if isinstance(exc, CRMRateLimitPaused):
        minutes = max(1, round(exc.retry_after / 60))
        return CLIFailure(
            f"the CRM's API allowance is used up: {reason}",
            fix=f"run it again in about {minutes} minute(s)",
        )
    if isinstance(exc, CRMRetriesExhausted) and exc.status is None:
        client = str(exc).split(": ", 1)[0]
        setting = "the connection's API address"
        if crm is not None:
            oauth = client.endswith(":oauth")
            setting = crm.hints.auth_base_setting if oauth else crm.hints.api_base_setting
        return CLIFailure(
            f"cannot reach the CRM: {reason}",
            fix=f"check the network and {setting}, then run it again",
        )
    if isinstance(exc, CRMRetriesExhausted):
        return CLIFailure(
            f"the CRM kept failing: {reason}", fix="run it again later; --debug shows the details"
        )
    if isinstance(exc, CRMRequestRejected) and exc.status == 404:
        return CLIFailure(
            f"the CRM does not know what was asked for: {reason}",
            fix="check the API address and the object or field names in the settings",
        )
    return CLIFailure(f"the CRM refused a request: {reason}", fix="--debug shows the details")


def _settings_failure(exc: ValidationError) -> CLIFailure:
    errors = exc.errors()
    first = errors[0]
    setting = "CRM_HEALTH_" + "_".join(str(part) for part in first["loc"]).upper()
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return CLIFailure(
        f"configuration error: {setting}: {validation_message(first['msg'])}{more}",
        fix="correct that environment variable (README: Settings)",
        exit_code=EXIT_CONFIG,
    )


_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "psycopg", "alembic")
# A table missing: SQLite says so, PostgreSQL's driver names UndefinedTableError.
_NOT_MIGRATED = ("no such table", "undefinedtable")


def _raised_by_database(traceback: TracebackType | None) -> bool:
    """Whether an OS-level error (refused, unknown host, timeout) came from opening the
    database: CRM calls wrap theirs in connector errors, so a bare one is the database's."""
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module.split(".")[0] in _DATABASE_MODULES:
            return True
        traceback = traceback.tb_next
    return False


def _database_failure(exc: BaseException) -> CLIFailure:
    reason = _first_line(exc)
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    kind = type(cause).__name__.lower() if cause is not None else ""
    if any(marker in reason.lower() or marker in kind for marker in _NOT_MIGRATED):
        return CLIFailure(
            f"the database is not set up for this crm-health: {reason}",
            fix="run `crm-health migrate`, or check CRM_HEALTH_DATABASE_URL",
            exit_code=EXIT_CONFIG,
        )
    return CLIFailure(
        f"cannot use the database: {reason}",
        fix="check CRM_HEALTH_DATABASE_URL and that its server runs and lets this user in",
        exit_code=EXIT_CONFIG,
    )


def _file_failure(exc: Exception) -> CLIFailure:
    return CLIFailure(
        f"configuration error: {_first_line(exc)}",
        fix="correct the setting or file it names",
        exit_code=EXIT_CONFIG,
    )


def _unusable_url(exc: Exception) -> CLIFailure | None:
    """A database URL SQLAlchemy cannot parse, or whose driver is not installed (an import
    failing inside SQLAlchemy); other errors of those types are bugs."""
    if isinstance(exc, ImportError) and not _raised_by_database(exc.__traceback__):
        return None
    unparsed = isinstance(exc, NoSuchModuleError) or "URL" in str(exc)
    if isinstance(exc, ArgumentError) and not unparsed:
        return None
    return CLIFailure(
        f"CRM_HEALTH_DATABASE_URL cannot be used: {_first_line(exc)}",
        fix="use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB",
        exit_code=EXIT_CONFIG,
    )


def _os_failure(exc: OSError) -> CLIFailure | None:
    if exc.errno == errno.EADDRINUSE:
        return CLIFailure(
            f"address already in use: {_first_line(exc)}",
            fix="stop what listens there, or choose another port",
            exit_code=EXIT_SERVER,
        )
    return _database_failure(exc) if _raised_by_database(exc.__traceback__) else None


def _driver_failure(exc: Exception) -> CLIFailure | None:
    """asyncpg's own errors (wrong password, no such database) escape SQLAlchemy on connect."""
    if type(exc).__module__.startswith("asyncpg") and _raised_by_database(exc.__traceback__):
        return _database_failure(exc)
    return None


# The one table of expected failures, most specific first; a handler may decline (None).
_EXPECTED: tuple[
    tuple[type[Exception] | tuple[type[Exception], ...], Callable[[Any], Any]], ...
] = (
    (CLIFailure, lambda exc: exc),
    (CRMHTTPError, _crm_failure),
    (ValidationError, lambda exc: _settings_failure(exc) if exc.title == "Settings" else None),
    ((ConnectionsFileError, ChannelsFileError, SecretKeyError), _file_failure),
    (NotConfigured, lambda exc: CLIFailure(exc.message, exit_code=EXIT_CONFIG)),
    (ServiceError, lambda exc: CLIFailure(exc.message, exit_code=EXIT_FAILED)),
    ((NoSuchModuleError, ArgumentError, ImportError), _unusable_url),
    (DBAPIError, _database_failure),
    (OSError, _os_failure),
    (Exception, _driver_failure),
)


def explain(exc: BaseException) -> CLIFailure | None:
    """The lines and exit status for an expected failure; None for anything else (a bug)."""
    for kinds, handler in _EXPECTED:
        if isinstance(exc, kinds):
            failure: CLIFailure | None = handler(exc)
            return failure
    return None


DEBUG_KEY = "crm_health_debug"


def _debug_requested(ctx: Context) -> bool:
    if ctx.meta.get(DEBUG_KEY):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class ErrorReportingGroup(TyperGroup):
    """The top-level command group: reports the expected failures of every subcommand through
    `explain`, so no command needs a try/except of its own. The top-level callback stores
    `--debug` in `ctx.meta[DEBUG_KEY]`."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # typer.Exit and usage errors are not in the table: they pass as they are.
            failure = explain(exc)
            if failure is None or _debug_requested(ctx):
                raise
            for line in failure.lines():
                typer.echo(line, err=True)
            raise typer.Exit(failure.exit_code) from None
