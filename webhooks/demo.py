"""`crm-health demo`: sandbox CRM + service on SQLite, sample activity replayed as signed
HubSpot webhooks, health written back into the sandbox's company records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import signature_v3
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from webhooks.app import create_app
from webhooks.settings import Settings
from webhooks.store.migrate import upgrade_to_head

DEMO_SECRET = "demo-client-secret"  # noqa: S105 - a local demo, nothing real behind it
DEMO_TOKEN = "demo-access-token"  # noqa: S105
DEMO_PORTAL = 62515
_NAMES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka",
    "Tyrell", "Cyberdyne", "Soylent", "Aperture", "Oscorp", "Gringotts", "Monarch", "Pied Piper",
    "Dunder Mifflin", "Prestige", "Sterling",
)  # fmt: skip
_SUFFIXES = ("Labs", "Corp", "Systems", "Analytics", "Logistics", "Health", "Retail", "Energy")


@dataclass(frozen=True, kw_only=True)
class SampleCompany:
    name: str
    profile: str
    activity_days_ago: tuple[float, ...]


def sample_companies(count: int, seed: int) -> list[SampleCompany]:
    """Deterministic sample: engaged, cooling and dormant accounts in fixed proportions."""
    rng = random.Random(seed)
    companies = []
    for index in range(count):
        name = f"{_NAMES[index % len(_NAMES)]} {_SUFFIXES[(index // len(_NAMES)) % len(_SUFFIXES)]}"
        profile = rng.choices(("engaged", "cooling", "dormant"), weights=(5, 3, 2))[0]
        newest = {"engaged": (0.0, 3.0), "cooling": (5.0, 11.0), "dormant": (15.0, 60.0)}[profile]
        last = rng.uniform(*newest)
        days = tuple(
            sorted((last + rng.uniform(0, 60) for _ in range(rng.randint(2, 12))), reverse=True)
        )
        companies.append(SampleCompany(name=name, profile=profile, activity_days_ago=(*days, last)))
    return companies


def _events(
    company_id: str, company: SampleCompany, now: datetime, first_id: int
) -> list[dict[str, object]]:
    return [
        {
            "eventId": first_id + offset,
            "subscriptionId": 1001,
            "portalId": DEMO_PORTAL,
            "appId": 4242,
            "occurredAt": int((now - timedelta(days=days)).timestamp() * 1000),
            "subscriptionType": "company.propertyChange",
            "attemptNumber": 0,
            "objectId": int(company_id),
            "propertyName": "name" if offset == 0 else "notes_last_updated",
            "propertyValue": company.name if offset == 0 else str(days),
            "changeSource": "CRM_UI",
        }
        for offset, days in enumerate(company.activity_days_ago)
    ]


async def _post_signed(
    client: httpx.AsyncClient, url: str, events: list[dict[str, object]]
) -> None:
    body = json.dumps(events).encode()
    timestamp = str(int(datetime.now(UTC).timestamp() * 1000))
    response = await client.post(
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": signature_v3(DEMO_SECRET, "POST", url, body, timestamp),
        },
    )
    response.raise_for_status()


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    sys.stdout.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stdout.write("\n")
    sys.stdout.flush()


def fresh_database_url(database: str) -> str:
    """The demo starts from an empty SQLite file each time, so its output is reproducible."""
    path = Path(database).resolve()
    path.unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


async def run_demo(
    *, port: int, sandbox_port: int, database_url: str, accounts: int, seed: int, keep_serving: bool
) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)

    state = SandboxState()
    companies = sample_companies(accounts, seed)
    ids = [
        state.add_company({"name": c.name, "domain": f"{c.name.lower().replace(' ', '')}.example"})
        for c in companies
    ]

    service_url = f"http://127.0.0.1:{port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    settings = Settings(
        database_url=database_url,
        public_url=service_url,
        hubspot_client_secret=DEMO_SECRET,
        hubspot_access_token=DEMO_TOKEN,
        hubspot_api_base=sandbox_url,
        worker_poll_seconds=0.2,
        log_level="warning",
        log_format="console",
    )
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                create_sandbox_app(state, access_token=DEMO_TOKEN),
                host="127.0.0.1",
                port=sandbox_port,
                log_level="warning",
                log_config=None,
            )
        ),
        uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                log_config=None,
            )
        ),
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            for task in tasks:
                task.cancel()
            raise SystemExit(
                f"could not start the demo servers: are ports {port} and {sandbox_port} free?"
            )
        await asyncio.sleep(0.05)

    connector = HubSpotConnector.create(
        connection="demo", access_token=DEMO_TOKEN, api_base=sandbox_url
    )
    report = await connector.ensure_fields()
    await connector.aclose()
    print(
        f"Sandbox CRM at {sandbox_url}: {len(ids)} companies, "
        f"{len(report.created)} health fields provisioned"
    )

    now = datetime.now(UTC)
    events: list[dict[str, object]] = []
    for company_id, company in zip(ids, companies, strict=True):
        events.extend(_events(company_id, company, now, first_id=len(events) + 1))
    webhook_url = f"{service_url}/webhooks/hubspot"
    async with httpx.AsyncClient(timeout=30) as client:
        for start in range(0, len(events), 100):
            await _post_signed(client, webhook_url, events[start : start + 100])
            _progress(min(start + 100, len(events)), len(events), "Replaying HubSpot webhooks")

    deadline = asyncio.get_running_loop().time() + 120
    written = 0
    while written < len(ids) and asyncio.get_running_loop().time() < deadline:
        written = sum(1 for cid in ids if state.companies[cid].get("health_score"))
        _progress(written, len(ids), "Health written to the CRM  ")
        await asyncio.sleep(0.3)

    _print_summary(state, ids)
    print(f"\nService:   {service_url}  (API docs {service_url}/docs, ready {service_url}/readyz)")
    print(
        f"Sandbox:   {sandbox_url}/crm/v3/objects/companies"
        "?properties=name,health_score,health_band"
    )

    if keep_serving:
        print("Serving; press Ctrl-C to stop.")
        loop = asyncio.get_running_loop()

        def stop_all() -> None:
            for server in servers:
                server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            # Installed after the servers started so one Ctrl-C stops both.
            loop.add_signal_handler(sig, stop_all)
    else:
        for server in servers:
            server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)


def _print_summary(state: SandboxState, ids: list[str]) -> None:
    records = [state.companies[cid] for cid in ids]
    bands = Counter(record.get("health_band") or "not written" for record in records)
    print("\nBands: " + ", ".join(f"{band} {count}" for band, count in sorted(bands.items())))
    scored = [r for r in records if r.get("health_score")]
    scored.sort(key=lambda r: float(r.get("health_score") or 0))
    print("Most at risk:")
    for record in scored[:5]:
        drivers = (record.get("health_drivers") or "").replace("\n", "; ")
        print(
            f"  {record.get('name')}: score {record.get('health_score')} "
            f"({record.get('health_band')}) - {drivers}"
        )
