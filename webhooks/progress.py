"""Progress for long commands: a bar on a terminal, log lines otherwise (e.g. under systemd, or
with the output sent to a file), one every few seconds so a long run is neither silent nor a
flood."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import structlog

log = structlog.get_logger(__name__)

# Seconds between two progress lines when nobody watches a bar: a log line per update would be
# thousands for a large backfill, none would look like a hang.
LINE_INTERVAL_SECONDS = 5.0


class Progress:
    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        width: int = 30,
        text_lines: bool = False,
        interval: float = LINE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`text_lines`: off a terminal, write plain lines to `stream` instead of log records,
        for commands whose whole output is text for a person (the demo logs only warnings)."""
        self._label = label
        self._stream = stream or sys.stdout
        self._width = width
        self._tty = self._stream.isatty()
        self._text_lines = text_lines
        self._interval = interval
        self._clock = clock
        self._last_line: float | None = None
        # The latest update held back by the interval: finish() writes it, so the last line
        # off a terminal always has the final count.
        self._held: tuple[int, int | None, str] | None = None

    def update(self, done: int, total: int | None = None, *, detail: str = "") -> None:
        if not self._tty:
            self._line(done, total, detail)
            return
        if total:
            filled = self._width * min(done, total) // total
            bar = f"[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total}"
        else:
            bar = f"{done}"
        self._stream.write(f"\r{self._label} {bar} {detail}".ljust(100))
        self._stream.flush()

    def _line(self, done: int, total: int | None, detail: str) -> None:
        now = self._clock()
        finished = total is not None and done >= total
        if not finished and self._last_line is not None and now - self._last_line < self._interval:
            self._held = (done, total, detail)
            return
        self._last_line, self._held = now, None
        if not self._text_lines:
            log.info("progress", task=self._label, done=done, total=total, detail=detail)
            return
        count = f"{done:,}" if total is None else f"{done:,}/{total:,}"
        self._stream.write(f"{self._label}: {count} {detail}".rstrip() + "\n")
        self._stream.flush()

    def finish(self) -> None:
        if not self._tty and self._held is not None:
            done, total, detail = self._held
            self._last_line = None  # written whatever the interval
            self._line(done, total, detail)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
