"""Which database errors are the database's failure (no event loses an attempt) and which are
the data's (they count against the events, so a poison event still reaches the dead letters)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from webhooks.worker.loop import database_unavailable


class _Orig(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (exc.OperationalError("SELECT", {}, _Orig("database is locked")), True),
        (exc.OperationalError("SELECT", {}, _Orig("connection was closed in the middle")), True),
        (exc.OperationalError("SELECT", {}, _Orig("terminating connection due to admin")), True),
        (exc.InterfaceError("SELECT", {}, _Orig("cannot switch to state 12")), True),
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
