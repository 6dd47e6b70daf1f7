"""Repeated events logged once per interval: the throttle and asyncio's failing accepts."""

from __future__ import annotations

import errno
import logging

from webhooks.logging import ACCEPT_ERROR, AcceptErrorFilter, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    clock = Clock()
    throttle = Throttle(60, clock=clock)
    assert throttle.allow() == 0
    assert [throttle.allow() for _ in range(5)] == [None] * 5
    clock.now = 60
    assert throttle.allow() == 5
    assert throttle.allow() is None


def _accept_failure() -> logging.LogRecord:
    error = OSError(errno.EMFILE, "Too many open files")
    return logging.LogRecord(
        "asyncio",
        logging.ERROR,
        __file__,
        1,
        f"{ACCEPT_ERROR}\nsocket: <socket>",
        (),
        (OSError, error, None),
    )


def test_failing_accepts_are_one_line_per_interval_without_traceback() -> None:
    clock = Clock()
    accept_errors = AcceptErrorFilter(Throttle(60, clock=clock))
    records = [_accept_failure() for _ in range(2049)]
    passed = [record for record in records if accept_errors.filter(record)]
    clock.now = 61
    later = _accept_failure()
    assert accept_errors.filter(later)
    assert len(passed) == 1
    assert passed[0].exc_info is None
    assert "Too many open files" in passed[0].getMessage()
    assert "0 more not logged" in passed[0].getMessage()
    assert "2048 more not logged in the last 60 s" in later.getMessage()


def test_other_asyncio_records_pass_untouched() -> None:
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task exception", (), None)
    assert AcceptErrorFilter().filter(record)
    assert record.getMessage() == "Task exception"
