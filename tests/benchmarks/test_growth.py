"""The growth benchmark at a tiny scale: its table has one row per checkpoint, and DuckDB's
indicators over the raw events are the service's own read_facts values (the recompute and
DuckDB timings compare the same computation)."""

from __future__ import annotations

import time
from datetime import datetime

from bench import growth
from webhooks.store.models import Base

TINY = growth.Options(scale=5 / growth.BASE_ACCOUNTS, days=35, databases=("sqlite",))


async def test_a_tiny_run_gives_a_row_per_checkpoint_and_the_same_indicators_as_duckdb() -> None:
    started = time.perf_counter()
    result = await growth.run_growth(TINY)
    assert time.perf_counter() - started < 60

    assert [(c.day, c.database) for c in result.checkpoints] == [(30, "sqlite"), (35, "sqlite")]
    rows = growth.table_rows(result)
    assert all(len(row) == len(growth.TABLE_COLUMNS) for row in rows)
    for checkpoint in result.checkpoints:
        assert set(checkpoint.rows) == {table.name for table in Base.metadata.sorted_tables}
        assert checkpoint.rows["accounts"] == 5
        assert checkpoint.used_bytes > 0
        assert checkpoint.worker_events_per_second > 0
        assert checkpoint.differences == []
        assert len(checkpoint.compared) == 5
        for service, duck in checkpoint.compared.values():
            values = dict(zip(growth.INDICATOR_FIELDS, service, strict=True))
            # Real evidence on both sides, not two empty reads agreeing.
            assert values["active_users_30d"] > 0
            assert isinstance(values["last_usage_at"], datetime)
            assert values["total_interactions_90d"] is None or values["total_interactions_90d"] > 0
            assert growth.mismatches(service, duck) == []


def test_a_difference_is_named() -> None:
    service = (10, None, 2.5, None, 3, 6, 0.5, 1, 0, 2, 4, 1)
    assert growth.mismatches(service, (10, 0, 2.5, None, 3, 6, 0.5, 1, 0, 2, 4, 1)) == []
    assert growth.mismatches(service, (11, 0, 2.5, None, 3, 6, 0.5, 1, 0, 2, 4, 1)) == [
        "active_users_30d: service 10, DuckDB 11"
    ]
    # The service's "no evidence yet" is only right where DuckDB counts nothing.
    assert growth.mismatches(service, (10, 3, 2.5, None, 3, 6, 0.5, 1, 0, 2, 4, 1)) == [
        "active_users_prev_30d: service None, DuckDB 3"
    ]


def test_the_generator_is_deterministic() -> None:
    first = growth.Generator(accounts=3, seed=7, days=40)
    second = growth.Generator(accounts=3, seed=7, days=40)
    assert first.setup(growth.START).native == second.setup(growth.START).native
    for number in range(5):
        one, other = first.day(number), second.day(number)
        assert (one.native, one.segment) == (other.native, other.segment)
