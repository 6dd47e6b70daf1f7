"""Hostile clients against the real server, started as `crm-health serve` starts it (SQLite):
2,000 sockets sending one header line every few seconds for 20 s leave good requests fast and
the log small; a process out of file descriptors logs its failing accepts once, not in a
flood, and serves again once they are free."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ADMIN_TOKEN = "admin-token-for-slow-clients"
SLOW_SOCKETS = 2000
ATTACK_SECONDS = 20.0
LINE_EVERY_SECONDS = 3.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        pytest.skip(f"open-files limit {soft} is below the {wanted} this test needs")


@dataclass
class Served:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def log_size(self) -> int:
        return self.log.stat().st_size


@contextlib.contextmanager
def crm_health_serve(
    tmp_path: Path, *, env: dict[str, str], open_files: int | None = None
) -> Iterator[Served]:
    port = _free_port()
    log = tmp_path / "serve.log"
    environment = {
        **os.environ,
        "CRM_HEALTH_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "CRM_HEALTH_ADMIN_TOKEN": ADMIN_TOKEN,
        "CRM_HEALTH_PROVISION_ON_START": "false",
        **env,
    }
    # `python -m webhooks` is the crm-health command; a lower open-files limit is set first.
    start = (
        "import resource, runpy, sys\n"
        f"if {open_files!r} is not None:\n"
        "    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        f"    resource.setrlimit(resource.RLIMIT_NOFILE, ({open_files!r}, hard))\n"
        "sys.argv = ['crm-health', *sys.argv[1:]]\n"
        "runpy.run_module('webhooks', run_name='__main__')\n"
    )
    command = [sys.executable, "-c", start, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    served = Served(url=f"http://127.0.0.1:{port}", port=port, log=log, process=process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"crm-health serve exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"crm-health serve did not answer: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _native_events() -> dict[str, object]:
    return {"events": [{"type": "usage", "account": "1001", "user": "u1"}]}


# The attackers run in a process of their own, so the good requests' latency is the server's
# and not that of a client loop busy with 2,000 sockets.
SLOW_CLIENTS = """
import asyncio, contextlib, sys

port, sockets = int(sys.argv[1]), int(sys.argv[2])
seconds, every = float(sys.argv[3]), float(sys.argv[4])
opened = 0


async def slow_client(stop):
    # A request line, then a header line every few seconds, never the end of the head; when
    # the server closes the socket, another one takes its place.
    global opened
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        opened += 1
        try:
            writer.write(b"POST /ingest/events HTTP/1.1\\r\\nHost: victim\\r\\n")
            line = 0
            while not stop.is_set():
                try:
                    if await asyncio.wait_for(reader.read(1024), every) == b"":
                        break
                    continue
                except TimeoutError:
                    pass
                line += 1
                writer.write(b"X-Slow-%d: %s\\r\\n" % (line, b"x" * 20))
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def main():
    stop = asyncio.Event()
    tasks = [asyncio.create_task(slow_client(stop)) for _ in range(sockets)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    print(opened)


asyncio.run(main())
"""


async def _good_requests(url: str, stop: asyncio.Event) -> list[tuple[str, int, float]]:
    """A fresh connection each time (as a new client would), every half second."""
    results: list[tuple[str, int, float]] = []
    while not stop.is_set():
        for method, path in (("GET", "/healthz"), ("POST", "/ingest/events")):
            began = time.perf_counter()
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                try:
                    if method == "GET":
                        response = await client.get(path)
                    else:
                        response = await client.post(
                            path,
                            json=_native_events(),
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                        )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
            results.append((path, status, time.perf_counter() - began))
        await asyncio.sleep(0.5)
    return results


async def test_two_thousand_slow_clients_leave_good_requests_fast_and_the_log_small(
    tmp_path: Path,
) -> None:
    _raise_open_files_limit(SLOW_SOCKETS * 2 + 1024)
    with crm_health_serve(tmp_path, env={}) as served:
        before = served.log_size()
        attack = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SLOW_CLIENTS,
            *map(str, (served.port, SLOW_SOCKETS, ATTACK_SECONDS, LINE_EVERY_SECONDS)),
            stdout=asyncio.subprocess.PIPE,
        )
        # Measured once every attacker is connected and trickling.
        await asyncio.sleep(3)
        stop = asyncio.Event()
        good = asyncio.create_task(_good_requests(served.url, stop))
        output, _ = await attack.communicate()
        stop.set()
        results = await good
        opened = int(output)
        grown = served.log_size() - before
    slowest = max(seconds for _, _, seconds in results)
    print(
        f"\n{SLOW_SOCKETS} slow sockets for {ATTACK_SECONDS:g} s ({opened} opened in all): "
        f"{len(results)} good requests, slowest {slowest * 1000:.0f} ms, log grew {grown} bytes"
    )
    # Each slow socket was cut at the head deadline (10 s by default) and replaced.
    assert opened >= 2 * SLOW_SOCKETS
    assert len(results) >= 20
    assert all(status in {200, 202} for _, status, _ in results), results
    # Within 1 s; one straggler is allowed for a CI machine shared with other jobs (on two
    # cores under a load of 8 the slowest took 0.5 to 0.7 s, once 2.2 s), never a time-out.
    late = sorted((result for result in results if result[2] >= 1.0), key=lambda r: -r[2])
    assert len(late) <= 1, late
    assert slowest < 5.0, late
    assert grown < 1_000_000


async def test_failing_accepts_are_logged_once_per_interval_and_the_server_recovers(
    tmp_path: Path,
) -> None:
    _raise_open_files_limit(1024)
    # Without a connection cap of its own, the server runs out of descriptors at accept().
    with crm_health_serve(
        tmp_path, env={"CRM_HEALTH_HTTP_MAX_CONNECTIONS": "100000"}, open_files=96
    ) as served:
        before = served.log_size()
        held: list[socket.socket] = []
        for _ in range(300):
            held.append(socket.create_connection(("127.0.0.1", served.port)))
        # asyncio retries accept() every second, 2,048 failed accepts a try.
        await asyncio.sleep(5)
        log = served.log.read_bytes()[before:]
        for sock in held:
            sock.close()
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(base_url=served.url, timeout=5) as client:
            recovered = await client.get("/healthz")
    failures = log.count(b"socket.accept() out of system resource")
    print(f"\naccept() out of descriptors for 5 s: {failures} log line(s), {len(log)} bytes")
    assert failures == 1, log[-3000:]
    assert b"Too many open files" in log
    assert b"Traceback" not in log
    assert len(log) < 20_000
    assert recovered.status_code == 200
