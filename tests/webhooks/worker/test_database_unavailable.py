"""Which database errors are the database's failure (no event loses an attempt) and which are
the data's (they count against the events, so a poison event still reaches the dead letters)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc
from structlog.testing import capture_logs

from webhooks.logging import Throttle
from webhooks.worker.loop import FailedPasses, database_unavailable


class _Orig(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (exc.OperationalError("SELECT", {}, _Orig("database is locked")), True),
        (exc.OperationalError("SELECT", {}, _Orig("connection was closed in the middle")), True),
        (exc.OperationalError("SELECT", {}, _Orig("terminating connection due to admin")), True),
        (exc.InterfaceError("SELECT", {}, _Orig("cannot switch to state 12")), True),
        # SQLite, when the process is out of file descriptors.
        (exc.OperationalError("UPDATE", {}, _Orig("unable to open database file")), True),
        (exc.DBAPIError("SELECT", {}, _Orig("gone"), connection_invalidated=True), True),
        (exc.OperationalError("INSERT", {}, _Orig("too many SQL variables")), False),
        (exc.IntegrityError("INSERT", {}, _Orig("duplicate key")), False),
        (exc.DataError("INSERT", {}, _Orig("value too long")), False),
        (ValueError("a poison payload"), False),
    ],
)
def test_database_failures_are_told_from_data_failures(
    error: BaseException, unavailable: bool
) -> None:
    assert database_unavailable(error) is unavailable


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lost(payload: str) -> exc.OperationalError:
    return exc.OperationalError(
        "UPDATE inbox SET payload = ?", {"payload": payload}, _Orig("unable to open database file")
    )


def test_an_outage_of_hours_logs_one_line_a_minute_without_a_traceback_or_the_parameters() -> None:
    clock = _Clock()
    passes = FailedPasses(Throttle(60, clock=clock))
    with capture_logs() as logs:
        # Two hours of failed passes, one every half second.
        for tick in range(2 * 3600 * 2):
            clock.now = tick / 2
            passes.failed(_lost("secret-write-key"))
        passes.passed()
        passes.passed()
    failed = [entry for entry in logs if entry["event"] == "worker_pass_failed"]
    assert len(failed) == 120
    assert failed[0]["not_logged"] == 0
    assert failed[1]["not_logged"] == 119
    # The last minute's failures are counted by the recovery line alone.
    assert sum(entry["not_logged"] for entry in failed) + len(failed) == 2 * 3600 * 2 - 119
    assert all(entry["log_level"] == "warning" for entry in failed)
    assert all("exc_info" not in entry for entry in failed)
    assert failed[0]["error"] == "_Orig: unable to open database file"
    assert "secret-write-key" not in repr(logs)
    recovered = [entry for entry in logs if entry["event"] == "worker_pass_recovered"]
    assert recovered == [
        {"event": "worker_pass_recovered", "failed_passes": 2 * 3600 * 2, "log_level": "info"}
    ]


def test_a_bug_keeps_its_traceback_and_the_next_outage_is_logged_at_once() -> None:
    clock = _Clock()
    passes = FailedPasses(Throttle(60, clock=clock))
    with capture_logs() as logs:
        try:
            raise ValueError("a bug")
        except ValueError as bug:
            passes.failed(bug)
        passes.passed()
        clock.now = 1
        passes.failed(_lost("x"))
    failed = [entry for entry in logs if entry["event"] == "worker_pass_failed"]
    assert failed[0]["exc_info"] is True
    assert failed[0]["log_level"] == "error"
    assert failed[1]["error"] == "_Orig: unable to open database file"
