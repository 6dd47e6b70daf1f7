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
from webhooks.runtime import Runtime
from webhooks.settings import Settings
from webhooks.store import inbox, writeback
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
class Profile:
    """How a kind of customer behaves; the sample draws each company from one of these."""

    seats: tuple[int, int]
    utilization: tuple[float, float]  # share of seats active in the last 30 days
    previous: float  # active users 30-60 days ago, relative to now
    days_per_user: int  # active days per user per 30 days: stickiness
    last_use_days: tuple[float, float]
    interactions: int
    customer_share: float  # customer-initiated share of interactions
    contacts: int
    executives: int
    collaboration: int
    tickets_per_10_seats: float
    escalations: int
    arr_growth: float


PROFILES: dict[str, Profile] = {
    # The best customers: they use it, talk to us, co-innovate, and grow.
    "collaborator": Profile(seats=(20, 80), utilization=(0.75, 0.95), previous=0.9,
                            days_per_user=7, last_use_days=(0, 1), interactions=14,
                            customer_share=0.5, contacts=6, executives=1, collaboration=3,
                            tickets_per_10_seats=0.5, escalations=0, arr_growth=0.15),
    # Big contract, little engagement: one contact, we always start the conversation.
    "transactional": Profile(seats=(200, 500), utilization=(0.25, 0.4), previous=1.0,
                             days_per_user=2, last_use_days=(0, 3), interactions=6,
                             customer_share=0.05, contacts=1, executives=0, collaboration=0,
                             tickets_per_10_seats=0.8, escalations=1, arr_growth=0.0),
    # Sold to the wrong buyer: heavy support load and escalations per seat.
    "poorly_sold": Profile(seats=(20, 40), utilization=(0.4, 0.6), previous=1.1,
                           days_per_user=3, last_use_days=(0, 4), interactions=10,
                           customer_share=0.4, contacts=2, executives=0, collaboration=0,
                           tickets_per_10_seats=7.0, escalations=4, arr_growth=0.0),
    # Spend levelled off at a large account that otherwise looks fine.
    "leveled_off": Profile(seats=(150, 300), utilization=(0.6, 0.75), previous=1.0,
                           days_per_user=4, last_use_days=(0, 2), interactions=8,
                           customer_share=0.3, contacts=3, executives=1, collaboration=1,
                           tickets_per_10_seats=1.5, escalations=1, arr_growth=-0.12),
    # Usage fading away: fewer users than last month, and none for a while.
    "fading": Profile(seats=(30, 120), utilization=(0.15, 0.3), previous=3.0,
                      days_per_user=1, last_use_days=(9, 20), interactions=3,
                      customer_share=0.1, contacts=1, executives=0, collaboration=0,
                      tickets_per_10_seats=1.0, escalations=0, arr_growth=0.02),
}  # fmt: skip
_WEIGHTS = {"collaborator": 4, "transactional": 2, "poorly_sold": 2, "leveled_off": 1, "fading": 2}


@dataclass(frozen=True, kw_only=True)
class SampleCompany:
    name: str
    profile: str
    seed: int

    def native_events(self, account: str, now: datetime) -> list[dict[str, object]]:
        """Sixty days of product usage and CRM activity for this company, as native events."""
        rng = random.Random(self.seed)
        p = PROFILES[self.profile]
        seats = rng.randint(*p.seats)
        arr = seats * rng.choice((600, 900, 1200))
        events: list[dict[str, object]] = [
            _native("account", account, now - timedelta(days=400),
                    attributes={"arr": round(arr / (1 + p.arr_growth))}),
            _native("account", account, now - timedelta(days=1),
                    attributes={"seats": seats, "arr": arr, "segment": self.profile}),
        ]  # fmt: skip
        users = max(1, round(seats * rng.uniform(*p.utilization)))
        last = rng.uniform(*p.last_use_days)
        for user in range(users):
            for _ in range(p.days_per_user):
                days = last + rng.uniform(0, 29 - last) if last < 29 else last
                events.append(
                    _native("usage", account, now - timedelta(days=days), user=f"u{user}")
                )
        for user in range(round(users * p.previous)):
            days = rng.uniform(31, 59)
            events.append(_native("usage", account, now - timedelta(days=days), user=f"u{user}"))
        titles = ["Chief Operating Officer"] * p.executives + ["Operations Manager"] * p.contacts
        for index, title in enumerate(titles):
            events.append(
                _native(
                    "contact",
                    account,
                    now - timedelta(days=80),
                    contact=f"c{index}",
                    title=title,
                    executive=index < p.executives,
                )
            )
        for index in range(p.interactions):
            direction = "customer" if rng.random() < p.customer_share else "ours"
            events.append(
                _native(
                    "interaction",
                    account,
                    now - timedelta(days=rng.uniform(0, 85)),
                    channel=rng.choice(("email", "call", "meeting")),
                    direction=direction,
                    contact=f"c{index % len(titles)}",
                )
            )
        for _ in range(p.collaboration):
            events.append(
                _native(
                    "collaboration",
                    account,
                    now - timedelta(days=rng.uniform(0, 170)),
                    kind=rng.choice(("feedback", "feature_request", "beta")),
                )
            )
        for index in range(round(seats / 10 * p.tickets_per_10_seats)):
            priority = "urgent" if index < p.escalations else "low"
            events.append(
                _native(
                    "ticket",
                    account,
                    now - timedelta(days=rng.uniform(0, 85)),
                    ticket=f"t{index}",
                    priority=priority,
                )
            )
        return events


def _native(event_type: str, account: str, at: datetime, **fields: object) -> dict[str, object]:
    return {"type": event_type, "account": account, "at": at.isoformat(), **fields}


def sample_companies(count: int, seed: int) -> list[SampleCompany]:
    """Deterministic sample: the same seed gives the same companies and activity."""
    rng = random.Random(seed)
    companies = []
    for index in range(count):
        name = f"{_NAMES[index % len(_NAMES)]} {_SUFFIXES[(index // len(_NAMES)) % len(_SUFFIXES)]}"
        profile = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
        companies.append(SampleCompany(name=name, profile=profile, seed=rng.randrange(2**32)))
    return companies


def _company_created(
    company_id: str, company: SampleCompany, now: datetime, event_id: int
) -> dict[str, object]:
    return {
        "eventId": event_id,
        "subscriptionId": 1001,
        "portalId": DEMO_PORTAL,
        "appId": 4242,
        "occurredAt": int((now - timedelta(days=1)).timestamp() * 1000),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": int(company_id),
        "propertyName": "name",
        "propertyValue": company.name,
        "changeSource": "CRM_UI",
    }


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
    service_app = create_app(settings)
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
                service_app,
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
    webhooks = [
        _company_created(company_id, company, now, event_id=index + 1)
        for index, (company_id, company) in enumerate(zip(ids, companies, strict=True))
    ]
    webhook_url = f"{service_url}/webhooks/hubspot"
    async with httpx.AsyncClient(timeout=30) as client:
        for start in range(0, len(webhooks), 100):
            await _post_signed(client, webhook_url, webhooks[start : start + 100])
    # Product usage and CRM activity arrive as native events (what `POST /ingest/events` and
    # backfills store), written straight into the service's inbox.
    native = [
        event
        for company_id, company in zip(ids, companies, strict=True)
        for event in company.native_events(company_id, now)
    ]
    runtime = service_app.state.runtime
    await _replay_native(runtime, settings.connection_name, native)
    await _wait_until_settled(runtime, total=len(webhooks) + len(native))

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
        # The service first: its worker must not try to write to a sandbox already gone.
        servers[1].should_exit = True
        await tasks[1]
        servers[0].should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)


async def _replay_native(
    runtime: Runtime, connection: str, native: list[dict[str, object]]
) -> None:
    for start in range(0, len(native), 1000):
        chunk = native[start : start + 1000]
        async with runtime.sessions() as session, session.begin():
            await inbox.insert_events(
                session,
                source="native",
                connection=connection,
                events=[
                    inbox.NewEvent(dedup_key=f"demo:{start + i}", kind=str(e["type"]), payload=e)
                    for i, e in enumerate(chunk)
                ],
                received_at=datetime.now(UTC),
            )
        _progress(min(start + 1000, len(native)), len(native), "Replaying sample activity")


async def _wait_until_settled(runtime: Runtime, *, total: int) -> None:
    """Until the worker has processed every event and written every change to the CRM."""
    deadline = asyncio.get_running_loop().time() + 300
    while asyncio.get_running_loop().time() < deadline:
        async with runtime.sessions() as session:
            events = await inbox.count_by_status(session)
            owed = await writeback.count_by_status(session)
        waiting = events.get(inbox.PENDING, 0) + events.get(inbox.PROCESSING, 0)
        _progress(total - waiting, total, "Processing                ")
        if not waiting and not owed.get(writeback.PENDING) and not owed.get(writeback.SENDING):
            return
        await asyncio.sleep(0.3)


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
