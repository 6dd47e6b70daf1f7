"""Structured logging: key/value events as JSON lines (or readable console lines), the standard
library's records (uvicorn, alembic, asyncio) rendered the same way on the same stream."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

import structlog

# Loggers that would write a secret: a URL (Slack, Teams and webhook URLs carry theirs in the
# path, Dynamics webhooks their key in `?code=`, Salesforce an optional last path segment) or,
# aiosqlite at debug, every SQL parameter (a stored Segment body may hold its writeKey). They
# never speak below WARNING.
_URL_LOGGERS = ("httpx", "uvicorn.access", "aiosqlite")


# What asyncio's accept loop logs, with a traceback, for every failed accept() when the process
# is out of file descriptors: thousands a second while the condition lasts.
ACCEPT_ERROR = "socket.accept() out of system resource"
REPEAT_INTERVAL_SECONDS = 60.0


class Throttle:
    """Lets one occurrence of a repeated event through per `interval` seconds and counts the
    ones held back, so a flood costs one log line a minute, with its size."""

    def __init__(
        self,
        interval: float = REPEAT_INTERVAL_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.last: float | None = None
        self.held = 0

    def allow(self) -> int | None:
        """None: hold this one back; otherwise how many were held back since the last one."""
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            self.held += 1
            return None
        held, self.held, self.last = self.held, 0, now
        return held


class AcceptErrorFilter(logging.Filter):
    """On the `asyncio` logger: a failing accept() is logged once per interval, as one line
    with the error and the number of failures not logged, without the (useless) traceback."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(ACCEPT_ERROR)):
            return True
        held = self.throttle.allow()
        if held is None:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = (
            f"{ACCEPT_ERROR}: {error}; {held} more not logged in the last "
            f"{self.throttle.interval:g} s; new connections wait until descriptors free up"
        )
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is when a record arrives (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        # Not setStream(): it flushes the previous stream, which may be closed by now.
        self.stream = sys.stderr
        super().emit(record)


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """`auto`: console lines for a person at a terminal, JSON lines for whatever reads a pipe or
    a file (a log shipper, systemd's journal, a redirect)."""
    if fmt != "auto":
        return fmt
    target = sys.stderr if stream is None else stream
    try:
        return "console" if target.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or stand-in stream: nobody is watching
        return "json"


def configure_logging(*, level: str = "info", fmt: str = "auto") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if resolve_format(fmt) == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Other libraries log through the standard library: the same fields (level, timestamp,
    # request_id of the request under way, `logger`), rendered by the same renderer, so a log
    # shipper sees one JSON object per line, tracebacks included.
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    # Called again (tests, the demo): replace our handler instead of writing every line twice.
    for existing in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric_level))
    accept_errors = logging.getLogger("asyncio")
    for old in [f for f in accept_errors.filters if isinstance(f, AcceptErrorFilter)]:
        accept_errors.removeFilter(old)
    accept_errors.addFilter(AcceptErrorFilter())
