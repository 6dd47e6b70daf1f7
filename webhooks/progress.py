"""Progress for long commands: a bar on a terminal, log lines otherwise (e.g. under systemd)."""

from __future__ import annotations

import sys
from typing import TextIO

import structlog

log = structlog.get_logger(__name__)


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None, width: int = 30) -> None:
        self._label = label
        self._stream = stream or sys.stdout
        self._width = width
        self._tty = self._stream.isatty()

    def update(self, done: int, total: int | None = None, *, detail: str = "") -> None:
        if not self._tty:
            log.info("progress", task=self._label, done=done, total=total, detail=detail)
            return
        if total:
            filled = self._width * min(done, total) // total
            bar = f"[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total}"
        else:
            bar = f"{done}"
        self._stream.write(f"\r{self._label} {bar} {detail}".ljust(100))
        self._stream.flush()

    def finish(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
