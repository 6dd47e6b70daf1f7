"""Structured logging: key/value events as JSON lines (or readable console lines), the standard
library's records (uvicorn, alembic, asyncio) rendered the same way on the same stream."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

# Loggers that would write a secret: a URL (Slack, Teams and webhook URLs carry theirs in the
# path, Dynamics webhooks their key in `?code=`, Salesforce an optional last path segment) or,
# aiosqlite at debug, every SQL parameter (a stored Segment body may hold its writeKey). They
# never speak below WARNING.
_URL_LOGGERS = ("httpx", "uvicorn.access", "aiosqlite")


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is when a record arrives (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        # Not setStream(): it flushes the previous stream, which may be closed by now.
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(*, level: str = "info", fmt: str = "json") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
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
