"""`crm-health demo`: sandbox + service on real ports, sample webhooks in, health written."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from webhooks.demo import fresh_database_url, run_demo, sample_companies


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sample_data_is_deterministic_for_a_seed() -> None:
    assert sample_companies(20, seed=3) == sample_companies(20, seed=3)
    assert sample_companies(20, seed=3) != sample_companies(20, seed=4)


async def test_demo_writes_health_into_every_sample_company(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run_demo(
        port=_free_port(),
        sandbox_port=_free_port(),
        database_url=fresh_database_url(str(tmp_path / "demo.db")),
        accounts=12,
        seed=7,
        keep_serving=False,
    )
    output = capsys.readouterr().out
    assert re.search(r"Processing\s+\[#{30}\] (\d+)/\1\n", output), "every event processed"
    assert "Bands: " in output
    assert "not written" not in output
    assert "Most at risk:" in output
