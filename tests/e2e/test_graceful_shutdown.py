"""SIGTERM while the worker is busy: the batch under way is finished and committed, the process
exits within a few seconds, and nothing is left claimed; the rest waits for the next start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from webhooks.store import accounts, inbox
from webhooks.store.db import create_engine, create_session_factory

EVENTS = 3000
ACCOUNTS = 150
# Small batches: several passes, so the signal lands with work claimed and work still waiting.
BATCH_SIZE = 300
STOP_WITHIN_SECONDS = 15


def _env(database: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_HEALTH_")}
    env |= {
        "CRM_HEALTH_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CRM_HEALTH_LOG_FORMAT": "json",
        "CRM_HEALTH_WORKER_BATCH_SIZE": str(BATCH_SIZE),
        "CRM_HEALTH_WORKER_POLL_SECONDS": "0.1",
        **extra,
    }
    return env


def _crm_health(*args: str) -> list[str]:
    return [sys.executable, "-m", "webhooks", *args]


def _store_events(database: Path) -> None:
    async def run() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        now = datetime.now(UTC)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                # The accounts' records are known: their usage counts at once.
                await accounts.lock_accounts(
                    session,
                    keys={("default", "native", f"acct-{n}") for n in range(ACCOUNTS)},
                    now=now,
                )
                await inbox.insert_events(
                    session,
                    source="native",
                    connection="default",
                    events=[
                        inbox.NewEvent(
                            dedup_key=f"usage-{n}",
                            kind="usage",
                            payload={
                                "type": "usage",
                                "account": f"acct-{n % ACCOUNTS}",
                                "user": f"user-{n % 37}",
                                "at": (now - timedelta(hours=n % 500)).isoformat(),
                            },
                        )
                        for n in range(EVENTS)
                    ],
                    received_at=now,
                )
        finally:
            await engine.dispose()

    asyncio.run(run())


def _statuses(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        rows = db.execute("SELECT status, count(*) FROM inbox_events GROUP BY status").fetchall()
    return dict(rows)


def _ids(database: Path, status: str) -> set[int]:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        rows = db.execute("SELECT id FROM inbox_events WHERE status = ?", (status,)).fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shutdown.db"
    migrated = subprocess.run(  # noqa: S603 - our own entry point
        _crm_health("migrate"),
        env=_env(path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    _store_events(path)
    assert _statuses(path) == {"pending": EVENTS}
    return path


@contextlib.contextmanager
def _running(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    # Logs go to a file: a pipe nobody reads fills up and stalls the process mid-batch.
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own entry point
            command, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def _interrupt_mid_batch(process: subprocess.Popen[bytes], database: Path) -> set[int]:
    """Wait until a batch is claimed (status `processing`), then send SIGTERM at once; the
    ids that were in flight."""
    deadline = time.monotonic() + 30
    while True:
        in_flight = _ids(database, inbox.PROCESSING)
        if in_flight:
            process.send_signal(signal.SIGTERM)
            return in_flight
        assert process.poll() is None, "the process ended before it claimed a batch"
        assert time.monotonic() < deadline, "no batch was claimed within 30 s"
        time.sleep(0.005)


def _stopped_within(process: subprocess.Popen[bytes], seconds: float) -> float:
    started = time.monotonic()
    process.wait(timeout=seconds)
    return time.monotonic() - started


def _log_events(log: Path) -> list[str]:
    """Every line is one JSON object (what a log shipper expects); their `event`s."""
    events = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        assert {"event", "level", "timestamp"} <= record.keys(), line
        events.append(record["event"])
    return events


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sigterm_lets_the_worker_finish_its_batch_and_exit_0(
    database: Path, tmp_path: Path
) -> None:
    env = _env(database)
    with _running(_crm_health("worker"), env, tmp_path / "worker-1.log") as process:
        in_flight = _interrupt_mid_batch(process, database)
        _stopped_within(process, STOP_WITHIN_SECONDS)
        assert process.returncode == 0, (tmp_path / "worker-1.log").read_text()

    statuses = _statuses(database)
    assert inbox.PROCESSING not in statuses, statuses
    assert in_flight <= _ids(database, inbox.DONE), "the batch under way was not finished"
    assert set(statuses) == {inbox.DONE, inbox.PENDING}, statuses
    assert statuses[inbox.PENDING] > 0, "the worker drained the inbox instead of stopping"
    events = _log_events(tmp_path / "worker-1.log")
    assert events[-1] == "worker_stopped"

    # The next start takes over what was left.
    with _running(_crm_health("worker"), env, tmp_path / "worker-2.log") as process:
        deadline = time.monotonic() + 20
        while _statuses(database) != {inbox.DONE: EVENTS}:
            assert process.poll() is None, (tmp_path / "worker-2.log").read_text()
            assert time.monotonic() < deadline, _statuses(database)
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _stopped_within(process, STOP_WITHIN_SECONDS)
        assert process.returncode == 0
    assert "worker_stopped" in _log_events(tmp_path / "worker-2.log")


def test_sigterm_lets_serve_finish_its_batch_before_it_exits(
    database: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    command = _crm_health("serve", "--host", "127.0.0.1", "--port", str(_free_port()))
    with _running(command, _env(database), log) as process:
        in_flight = _interrupt_mid_batch(process, database)
        _stopped_within(process, STOP_WITHIN_SECONDS)
        # uvicorn raises the signal again once its shutdown is complete: the status says "ended
        # by SIGTERM", which systemd, Docker and Kubernetes all read as a requested stop.
        assert process.returncode in {0, -signal.SIGTERM}, log.read_text()

    statuses = _statuses(database)
    assert inbox.PROCESSING not in statuses, statuses
    assert in_flight <= _ids(database, inbox.DONE), "the batch under way was not finished"
    assert set(statuses) <= {inbox.DONE, inbox.PENDING}, statuses
    events = _log_events(log)
    # The worker finished its pass inside the lifespan's shutdown, before the service closed.
    assert events.index("worker_stopped") < events.index("service_stopped")


def test_a_worker_serves_its_own_counters_on_its_metrics_port(
    database: Path, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "worker.log"
    with _running(
        _crm_health("worker", "--metrics-port", str(port)), _env(database), log
    ) as process:
        deadline = time.monotonic() + 60
        text = ""
        while "crm_health_events_processed_total{" not in text:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no processed events in the metrics: {text}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                pass
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _stopped_within(process, STOP_WITHIN_SECONDS)
    assert 'crm_health_events_processed_total{outcome="done",source="native"}' in text
    assert "metrics_served" in _log_events(log)
