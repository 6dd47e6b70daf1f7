"""`crm-health serve` starts on SQLite with no configuration and answers /healthz."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_starts_with_no_configuration_and_is_ready(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_HEALTH_")}
    command = [
        sys.executable,
        "-m",
        "webhooks",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(  # noqa: S603 - our own entry point
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "serve did not start within 30 s"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert (tmp_path / "crm_health.db").exists(), "the default SQLite file is in the cwd"
    finally:
        process.terminate()
        process.wait(timeout=15)
    with process.stdout:  # type: ignore[union-attr]
        log = process.stdout.read().decode()  # type: ignore[union-attr]
    # uvicorn re-raises SIGTERM after its own shutdown, so the exit status is the signal's;
    # a graceful stop shows in the log: the worker finished its pass, the service closed.
    assert "worker_stopped" in log
    assert "service_stopped" in log
