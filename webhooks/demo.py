"""`crm-health demo`: a sandbox CRM and the service on SQLite, 180 days of sample activity
replayed through the service's own API, health written back into the sandbox's companies.

The sample is deterministic for a seed: several hundred companies, each drawn from one of five
archetypes (the ideas of docs/signals.md in the flesh) with a 180-day trajectory of product
usage, conversations, contacts, tickets, co-innovation and ARR.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shlex
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from connector.base import ProvisionReport
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import signature_v3
from connector.hubspot.fields import GROUP_LABEL
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.seed import SEEDED_OWNERS
from connector.sandbox.state import SandboxState
from signals.config import HealthConfig
from signals.model import Band
from signals.scoring import score
from webhooks.app import create_app
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.server import ServerLimits, build_server
from webhooks.settings import Settings
from webhooks.store import accounts, alerts, configs, facts, inbox, writeback
from webhooks.store.migrate import upgrade_to_head

DEMO_SECRET = "demo-client-secret"  # noqa: S105 - a local demo, nothing real behind it
DEMO_TOKEN = "demo-access-token"  # noqa: S105
DEMO_ADMIN_TOKEN = "demo-admin-token"  # noqa: S105
DEMO_PORTAL = 62515
DAYS = 180  # the sample's activity period
HISTORY_DAYS = 90  # the health history rebuilt from it (the admin page's sparklines)
HISTORY_STEP_DAYS = 3
EVENTS_PER_CALL = 1000  # the most `POST /ingest/events` takes
WORKER_BATCH = 10_000  # events the demo's worker claims at once
# A group of companies replayed before the worker runs: it must fit one worker batch.
GROUP_COMPANIES = 100  # also the most events of one HubSpot webhook call
GROUP_EVENTS = WORKER_BATCH - GROUP_COMPANIES
BANDS = ("healthy", "neutral", "at_risk", "unknown", "onboarding")
NOT_A_CUSTOMER = "not a customer"

_NAMES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka",
    "Tyrell", "Cyberdyne", "Soylent", "Aperture", "Oscorp", "Gringotts", "Monarch", "Pied Piper",
    "Dunder Mifflin", "Prestige", "Sterling", "Massive Dynamic", "Virtucon", "Nakatomi",
    "Bluth", "Krusty", "Duff", "Genco", "Rekall", "Weyland", "Zorg",
)  # fmt: skip
_SUFFIXES = (
    "Labs", "Corp", "Systems", "Analytics", "Logistics", "Health", "Retail", "Energy", "Foods",
    "Media", "Capital", "Robotics",
)  # fmt: skip
_TITLES = (
    "Operations Manager", "Product Owner", "Team Lead", "IT Administrator", "Analyst",
    "Project Manager", "Engineer",
)  # fmt: skip
_EXECUTIVE_TITLES = ("Chief Operating Officer", "VP Engineering", "Chief Financial Officer")
_CO_INNOVATION = ("feedback", "feature_request", "beta", "referral", "case_study", "joint_plan")
# Where the ARR history has a value, in days ago: quarterly before the period (ARR a year
# before any day of it is known), monthly within it.
_ARR_DAYS = (540, 450, 365, 270, 180, 150, 120, 90, 60, 30, 1)


@dataclass(frozen=True, kw_only=True)
class Archetype:
    """How a kind of customer behaves over the 180 days. Pairs are (180 days ago, now) unless
    they say otherwise; the sample draws each company from one archetype."""

    label: str
    expected: str  # the band the idea behind the signals predicts
    weight: int  # companies of this archetype per cycle of the sample
    seats: tuple[int, int]  # range
    active_share: tuple[float, float]  # share of seats using the product in a week
    fade_after: float = 0.0  # share of the period before active_share starts to move
    days_per_week: tuple[float, float]  # active days of an active user
    silent_days: tuple[int, int] = (0, 0)  # range: no use at all in the last days
    interactions_per_month: tuple[float, float]
    customer_share: float  # conversations the customer starts
    contacts: int
    executive: bool
    champion_leaves: bool = False  # the main contact leaves 35-60 days ago
    co_innovation: tuple[int, int]  # range, over the last 360 days
    tickets_per_10_seats: float  # per 90 days
    escalation_share: float  # of tickets, high or urgent
    arr_growth_before: float  # a year, before the period
    arr_change: tuple[float, float]  # range, across the period


ARCHETYPES: dict[str, Archetype] = {
    # The best customers: they use it, start conversations, co-innovate, and grow.
    "collaborator": Archetype(
        label="healthy collaborators", expected="healthy", weight=3, seats=(10, 30),
        active_share=(0.6, 0.68), days_per_week=(1.9, 2.0), interactions_per_month=(5, 6),
        customer_share=0.4, contacts=6, executive=True, co_innovation=(4, 7),
        tickets_per_10_seats=1.5, escalation_share=0.03, arr_growth_before=0.2,
        arr_change=(0.08, 0.18),
    ),
    # Many seats, little use: one contact, we start every conversation, nothing moves.
    "transactional": Archetype(
        label="big but transactional", expected="neutral", weight=2, seats=(80, 200),
        active_share=(0.48, 0.48), days_per_week=(0.75, 0.75), interactions_per_month=(2, 2),
        customer_share=0.05, contacts=1, executive=False, co_innovation=(0, 0),
        tickets_per_10_seats=0.4, escalation_share=0.0, arr_growth_before=0.02,
        arr_change=(0.02, 0.04),
    ),
    # Sold to the wrong buyer: few seats, little use, and a heavy support load per seat.
    "poorly_sold": Archetype(
        label="poorly sold", expected="at_risk", weight=2, seats=(12, 30),
        active_share=(0.4, 0.3), days_per_week=(0.6, 0.5), interactions_per_month=(3, 3),
        customer_share=0.15, contacts=2, executive=False, co_innovation=(0, 0),
        tickets_per_10_seats=8.0, escalation_share=0.3, arr_growth_before=0.0,
        arr_change=(-0.15, -0.08),
    ),
    # A big account that stopped growing: fair use, spend flat and now shrinking.
    "leveled_off": Archetype(
        label="leveled-off spenders", expected="neutral", weight=1, seats=(70, 140),
        active_share=(0.55, 0.5), days_per_week=(1.0, 1.0), interactions_per_month=(3, 3),
        customer_share=0.15, contacts=2, executive=True, co_innovation=(1, 1),
        tickets_per_10_seats=1.5, escalation_share=0.05, arr_growth_before=0.05,
        arr_change=(-0.2, -0.12),
    ),
    # Use fades over the period, to nothing in the last weeks; the champion leaves.
    "fading": Archetype(
        label="fading usage", expected="at_risk", weight=2, seats=(30, 80),
        active_share=(0.65, 0.04), fade_after=0.3, days_per_week=(1.4, 0.5),
        silent_days=(12, 24), interactions_per_month=(3, 0.5), customer_share=0.2, contacts=2,
        executive=False, champion_leaves=True, co_innovation=(0, 0),
        tickets_per_10_seats=0.8, escalation_share=0.0, arr_growth_before=0.05,
        arr_change=(0.0, 0.0),
    ),
}  # fmt: skip


def _lerp(pair: tuple[float, float], progress: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * progress


@dataclass(frozen=True, kw_only=True)
class SampleCompany:
    name: str
    archetype: str
    seed: int

    @property
    def owner_id(self) -> str:
        """The sandbox owner the company is assigned to (`hubspot_owner_id`): one with an
        e-mail, so alerts can be routed to the account owner."""
        return SEEDED_OWNERS[self.seed % len(SEEDED_OWNERS)][0]

    def native_events(self, account: str, now: datetime) -> list[dict[str, object]]:
        """The company's 180 days as native events (`POST /ingest/events`): attributes,
        contacts and CRM activity first, then usage newest first, so that even a company too
        big for one worker batch is scored close to its final health on the first part."""
        rng = random.Random(self.seed)
        a = ARCHETYPES[self.archetype]
        seats = rng.randint(*a.seats)
        events: list[dict[str, object]] = []
        events += self._arr_history(account, now, rng, seats)
        contacts, left = self._contacts(account, now, rng, events)
        events += self._collaboration(account, now, rng)
        events += self._interactions(account, now, rng, contacts, left)
        events += self._tickets(account, now, rng, seats)
        events += self._usage(account, now, rng, seats)
        return events

    def _arr_history(
        self, account: str, now: datetime, rng: random.Random, seats: int
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        at_start = seats * rng.choice((600, 900, 1200))  # ARR when the period began
        change = rng.uniform(*a.arr_change)
        events = []
        for days in _ARR_DAYS:
            if days >= DAYS:
                arr = at_start * (1 + a.arr_growth_before) ** (-(days - DAYS) / 365)
            else:
                arr = at_start * (1 + change * (DAYS - days) / DAYS)
            attributes: dict[str, object] = {"arr": round(arr, -2)}
            if days == _ARR_DAYS[0]:
                renewal = now + timedelta(days=rng.randint(5, 365))
                attributes |= {
                    "seats": seats,
                    "segment": self.archetype,
                    "owner": self.owner_id,
                    "renewal_date": renewal.date().isoformat(),
                }
            events.append(
                _native("account", account, now - timedelta(days=days), {"attributes": attributes})
            )
        return events

    def _contacts(
        self, account: str, now: datetime, rng: random.Random, events: list[dict[str, object]]
    ) -> tuple[list[str], int | None]:
        """The contacts (an executive first when the archetype has one) and, when the champion
        leaves, how many days ago."""
        a = ARCHETYPES[self.archetype]
        contacts = [f"{account}-c{index}" for index in range(a.contacts)]
        for index, contact in enumerate(contacts):
            executive = a.executive and index == 0
            title = rng.choice(_EXECUTIVE_TITLES if executive else _TITLES)
            events.append(
                _native("contact", account, now - timedelta(days=DAYS + 20),
                        {"contact": contact, "title": title, "executive": executive})
            )  # fmt: skip
        left = rng.randint(35, 60) if a.champion_leaves else None
        if left is not None:
            events.append(
                _native("contact", account, now - timedelta(days=left),
                        {"contact": contacts[0], "left": True})
            )  # fmt: skip
        return contacts, left

    def _collaboration(
        self, account: str, now: datetime, rng: random.Random
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        count = rng.randint(*a.co_innovation)
        if not count:
            return []
        # Evenly spread with some jitter: a steady collaborator has two in any six months.
        span = 2 * DAYS if count > 1 else DAYS
        return [
            _native(
                "collaboration",
                account,
                now - timedelta(days=(index + rng.uniform(0.2, 0.8)) * span / count),
                {"kind": rng.choice(_CO_INNOVATION)},
            )
            for index in range(count)
        ]

    def _interactions(
        self,
        account: str,
        now: datetime,
        rng: random.Random,
        contacts: Sequence[str],
        left: int | None,
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        events = []
        for month in range(DAYS // 30):
            progress = 1 - (month * 30 + 15) / DAYS
            expected = _lerp(a.interactions_per_month, progress)
            count = int(expected) + (rng.random() < expected % 1)
            for _ in range(count):
                days = month * 30 + rng.uniform(0, 30)
                present = [c for i, c in enumerate(contacts) if i or left is None or days > left]
                customer = rng.random() < a.customer_share
                events.append(
                    _native(
                        "interaction",
                        account,
                        now - timedelta(days=days),
                        {
                            "channel": rng.choice(("email", "email", "call", "meeting")),
                            "direction": "customer" if customer else "ours",
                            "contact": rng.choice(present) if present else None,
                        },
                    )
                )
            if a.executive:
                # A business review with the executive sponsor every month.
                events.append(
                    _native(
                        "interaction",
                        account,
                        now - timedelta(days=month * 30 + rng.uniform(5, 25)),
                        {"channel": "meeting", "direction": "ours", "contact": contacts[0]},
                    )
                )
        return events

    def _tickets(
        self, account: str, now: datetime, rng: random.Random, seats: int
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        expected = seats / 10 * a.tickets_per_10_seats * DAYS / 90
        count = max(0, round(expected * rng.uniform(0.8, 1.2)))
        events = []
        for index in range(count):
            escalated = rng.random() < a.escalation_share
            events.append(
                _native(
                    "ticket",
                    account,
                    now - timedelta(days=rng.uniform(0, DAYS)),
                    {
                        "ticket": f"{account}-t{index}",
                        "priority": rng.choice(
                            ("high", "urgent") if escalated else ("low", "medium")
                        ),
                    },
                )
            )
        return events

    def _usage(
        self, account: str, now: datetime, rng: random.Random, seats: int
    ) -> list[dict[str, object]]:
        """Active user-days drawn week by week from the trajectory: the week's share of seats
        in use picks the active users (the same ones week after week), each uses the product
        on a few days of the week. A user-day is what the store keeps, so one event each."""
        a = ARCHETYPES[self.archetype]
        silent = rng.randint(*a.silent_days)
        habit = [rng.uniform(0.6, 1.4) for _ in range(seats)]  # occasional to power users
        events = []
        for week in range((DAYS + 6) // 7):
            progress = 1 - (week * 7 + 3.5) / DAYS
            moved = max(0.0, (progress - a.fade_after) / (1 - a.fade_after))
            share = _lerp(a.active_share, moved)
            per_week = _lerp(a.days_per_week, moved)
            for user in range(int(seats * share)):
                expected = min(7.0, per_week * habit[user])
                count = int(expected) + (rng.random() < expected % 1)
                for weekday in rng.sample(range(7), count):
                    days = week * 7 + weekday
                    if silent <= days < DAYS:
                        at = now - timedelta(days=days, seconds=rng.randrange(36_000))
                        events.append(_native("usage", account, at, {"user": f"u{user}"}))
        events.sort(key=lambda event: str(event["at"]), reverse=True)
        return events


def _native(
    event_type: str, account: str, at: datetime, fields: dict[str, object]
) -> dict[str, object]:
    return {"type": event_type, "account": account, "at": at.isoformat(), **fields}


def sample_companies(count: int, seed: int) -> list[SampleCompany]:
    """Deterministic sample: the same seed gives the same companies and activity. Archetypes
    come in shuffled cycles of their weights, so every sample size holds them all in the same
    proportions."""
    rng = random.Random(seed)
    cycle = [name for name, a in ARCHETYPES.items() for _ in range(a.weight)]
    kinds: list[str] = []
    while len(kinds) < count:
        rng.shuffle(cycle)
        kinds.extend(cycle)
    combos = len(_NAMES) * len(_SUFFIXES)
    companies = []
    for index, kind in enumerate(kinds[:count]):
        name = f"{_NAMES[index % len(_NAMES)]} {_SUFFIXES[(index // len(_NAMES)) % len(_SUFFIXES)]}"
        if index >= combos:
            name += f" {index // combos + 1}"
        companies.append(SampleCompany(name=name, archetype=kind, seed=rng.randrange(2**32)))
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
        # A creation: the service reads every mapped property, the lifecycle stage with them.
        "subscriptionType": "company.creation",
        "attemptNumber": 0,
        "objectId": int(company_id),
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


def fresh_database_url(database: str) -> str:
    """The demo starts from an empty SQLite file each time, so its output is reproducible."""
    path = Path(database).resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


@dataclass(frozen=True, kw_only=True)
class DemoCompany:
    crm_id: str
    name: str
    archetype: str


@dataclass(kw_only=True)
class DemoResult:
    """What the demo did and found, for its summary and for tests."""

    companies: list[DemoCompany]
    # Each sample company's record as the sandbox CRM holds it after the replay.
    records: dict[str, dict[str, str | None]]
    events: int
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    alerted: dict[str, set[str]] = field(default_factory=dict)  # rule -> CRM ids
    # Open alerts by (rule, the account's band now): where the alerts land.
    open_by_band: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: float = 0.0

    def band_of(self, crm_id: str) -> str:
        record = self.records.get(crm_id, {})
        if record.get("lifecyclestage") not in (None, "customer", "evangelist"):
            return NOT_A_CUSTOMER  # its health fields are left empty on purpose
        return record.get("health_band") or "not written"

    def unknown_reasons(self) -> Counter[str]:
        """Why accounts are unknown: the first driver ("Not enough evidence ...: no ...")."""
        return Counter(
            (self.records[c.crm_id].get("health_drivers") or "").split("\n")[0].split(": ", 1)[-1]
            for c in self.companies
            if self.band_of(c.crm_id) == "unknown"
        )

    @property
    def bands(self) -> Counter[str]:
        return Counter(self.band_of(company.crm_id) for company in self.companies)

    @property
    def by_archetype(self) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {name: Counter() for name in ARCHETYPES}
        for company in self.companies:
            table[company.archetype][self.band_of(company.crm_id)] += 1
        return table

    def most_at_risk(self, count: int = 5) -> list[DemoCompany]:
        scores = {c.crm_id: self.records[c.crm_id].get("health_score") for c in self.companies}
        scored = [c for c in self.companies if scores[c.crm_id]]
        scored.sort(key=lambda c: (float(scores[c.crm_id] or 0), c.name))
        return scored[:count]


# Every PROSPECT_EVERY-th sample company is still an opportunity (not a customer: listed, not
# scored); every NEW_CUSTOMER_EVERY-th became a customer days ago (onboarding); the rest are
# customers of long standing.
PROSPECT_EVERY = 25
NEW_CUSTOMER_EVERY = 20


def _lifecycle(index: int, now: datetime) -> dict[str, str]:
    if index % PROSPECT_EVERY == PROSPECT_EVERY - 1:
        return {"lifecyclestage": "opportunity"}
    since = now - timedelta(days=700)
    if index % NEW_CUSTOMER_EVERY == NEW_CUSTOMER_EVERY - 1:
        since = now - timedelta(days=10 + index % 30)
    stamp = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"lifecyclestage": "customer", "hs_lifecyclestage_customer_date": stamp}


async def run_demo(
    *, port: int, sandbox_port: int, database_url: str, accounts: int, seed: int, keep_serving: bool
) -> DemoResult:
    started = time.perf_counter()
    await asyncio.to_thread(upgrade_to_head, database_url)

    state = SandboxState()
    companies = sample_companies(accounts, seed)
    now = datetime.now(UTC)
    ids = [
        state.add_company(
            {
                "name": c.name,
                "domain": f"{c.name.lower().replace(' ', '')}.example",
                "hubspot_owner_id": c.owner_id,
                **_lifecycle(index, now),
            }
        )
        for index, c in enumerate(companies)
    ]

    service_url = f"http://127.0.0.1:{port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    settings = Settings(
        database_url=database_url,
        public_url=service_url,
        admin_token=SecretStr(DEMO_ADMIN_TOKEN),
        hubspot_client_secret=DEMO_SECRET,
        hubspot_access_token=DEMO_TOKEN,
        hubspot_api_base=sandbox_url,
        hubspot_requests_per_second=100,  # the sandbox is local
        # The demo provisions the fields itself (to report it) and runs the worker's passes
        # itself during the replay (see _replay); the worker starts once it is done.
        provision_on_start=False,
        run_worker=False,
        worker_batch_size=WORKER_BATCH,
        worker_poll_seconds=0.2,
        log_level="warning",
        log_format="console",
    )
    service_app = create_app(settings)
    sandbox = _server(create_sandbox_app(state, access_token=DEMO_TOKEN), sandbox_port)
    service = _server(service_app, port)
    # The sandbox first: the service talks to it as soon as it runs.
    tasks = [await _start(sandbox, ports=(port, sandbox_port))]
    tasks.append(await _start(service, ports=(port, sandbox_port), others=tasks))
    try:
        runtime: Runtime = service_app.state.runtime
        connector = HubSpotConnector.create(
            connection="demo", access_token=DEMO_TOKEN, api_base=sandbox_url
        )
        try:
            report = await connector.ensure_fields()
        finally:
            await connector.aclose()
        print(f"Sandbox CRM at {sandbox_url}: {len(ids)} companies, {_provisioned(report)}")
        now = datetime.now(UTC)
        events = await _replay(runtime, service_url, companies, ids, now)
        await _rebuild_history(runtime, now=now)
        await _rescore_all(runtime)
        runtime.start_worker()  # from here on the service runs as it always does

        result = DemoResult(
            companies=[
                DemoCompany(crm_id=i, name=c.name, archetype=c.archetype)
                for i, c in zip(ids, companies, strict=True)
            ],
            records={i: dict(state.companies[i]) for i in ids},
            events=events,
        )
        await _count_alerts(runtime, settings.connection_name, result)
        result.seconds = time.perf_counter() - started
        print_summary(
            result,
            service_url=service_url,
            sandbox_url=sandbox_url,
            database=shown_database_path(database_url),
            serving=keep_serving,
        )
    except BaseException:
        await _stop(service, sandbox, tasks)
        raise

    if keep_serving:
        print("Serving; press Ctrl-C to stop.")
        loop = asyncio.get_running_loop()

        def stop_all() -> None:
            service.should_exit = True

        # The sandbox once the service (and its worker, which writes to it) has stopped.
        tasks[-1].add_done_callback(lambda _: setattr(sandbox, "should_exit", True))
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Installed after the servers started so one Ctrl-C stops both.
            loop.add_signal_handler(sig, stop_all)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)
    else:
        await _stop(service, sandbox, tasks)
    return result


def _provisioned(report: ProvisionReport) -> str:
    """What ensure_fields created, as counted by a person: fields, and the group they sit in."""
    groups = [name for name in report.created if name.startswith("group:")]
    fields = len(report.created) - len(groups)
    text = f"{fields} health field{'' if fields == 1 else 's'}"
    if groups:
        text += f' and their property group "{GROUP_LABEL}"'
    return text + " provisioned"


def shown_database_path(database_url: str) -> str:
    """The demo's SQLite file as a person would type it here: relative to the working
    directory when inside it, else absolute."""
    path = Path(make_url(database_url).database or "").resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _server(app: Starlette, port: int) -> uvicorn.Server:
    return build_server(
        app, ServerLimits(), host="127.0.0.1", port=port, log_level="warning", log_config=None
    )


async def _start(
    server: uvicorn.Server,
    *,
    ports: tuple[int, int],
    others: Sequence[asyncio.Task[None]] = (),
) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            for other in others:
                other.cancel()
            raise SystemExit(
                f"could not start the demo servers: are ports {ports[0]} and {ports[1]} free?"
            )
        await asyncio.sleep(0.05)
    return task


async def _stop(
    service: uvicorn.Server, sandbox: uvicorn.Server, tasks: Sequence[asyncio.Task[None]]
) -> None:
    # The service first: its worker must not try to write to a sandbox already gone.
    service.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await tasks[-1]
    sandbox.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)


async def _replay(
    runtime: Runtime,
    service_url: str,
    companies: Sequence[SampleCompany],
    ids: Sequence[str],
    now: datetime,
) -> int:
    """Each company appears as a signed HubSpot webhook and its activity goes through
    `POST /ingest/events` with the admin token, a thousand events a call.

    Companies go in groups that fit one worker batch, and the demo runs the worker's passes
    itself after each group: every company is scored once on its whole history, as a service
    that had been watching would see it, never on a part of it (which would raise alerts the
    next part takes back)."""
    # Off a terminal (output to a file), text lines every two seconds instead of the bar: the
    # replay takes tens of seconds and must not look hung.
    progress = Progress(f"Replaying {DAYS} days", text_lines=True, interval=2.0)
    began = time.perf_counter()
    sent = done = 0
    group: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=service_url, timeout=60) as client:
        for index, (company_id, company) in enumerate(zip(ids, companies, strict=True)):
            activity = company.native_events(company_id, now)
            if group and (
                len(events) + len(activity) > GROUP_EVENTS or len(group) == GROUP_COMPANIES
            ):
                await _send_group(client, runtime, service_url, group, events)
                done, sent = done + len(group), sent + len(events)
                progress.update(done, len(ids), detail=f"companies, {sent:,} events")
                group, events = [], []
            group.append(_company_created(company_id, company, now, event_id=index + 1))
            events += activity
        await _send_group(client, runtime, service_url, group, events)
        sent += len(events)
    progress.update(len(ids), len(ids), detail=f"companies, {sent:,} events")
    progress.finish()
    print(
        f"Replayed {DAYS} days of {len(ids)} companies: {len(ids)} HubSpot webhooks and "
        f"{sent:,} events through POST /ingest/events, scored and written back to the CRM "
        f"in {time.perf_counter() - began:.1f} s"
    )
    return sent


async def _send_group(
    client: httpx.AsyncClient,
    runtime: Runtime,
    service_url: str,
    webhooks: list[dict[str, object]],
    events: list[dict[str, object]],
) -> None:
    if webhooks:
        await _post_signed(client, f"{service_url}/webhooks/hubspot", webhooks)
    headers = {"Authorization": f"Bearer {DEMO_ADMIN_TOKEN}", "Content-Type": "application/json"}

    async def post(chunk: list[dict[str, object]]) -> None:
        body = json.dumps({"events": chunk}, separators=(",", ":"))
        response = await client.post("/ingest/events", content=body, headers=headers)
        if response.status_code != 202:
            raise SystemExit(
                f"POST /ingest/events answered {response.status_code}: {response.text}"
            )

    for start in range(0, len(events), EVENTS_PER_CALL):
        await post(events[start : start + EVENTS_PER_CALL])
    await _drain(runtime)


async def _drain(runtime: Runtime) -> None:
    """Run the worker's passes until it has nothing left to do: events, recompute, write-backs."""
    while await runtime.pipeline.run_once():
        pass
    async with runtime.sessions() as session:
        owed = await writeback.count_by_status(session)
        events = await inbox.count_by_status(session)
    stuck = owed.get(writeback.PENDING, 0) + events.get(inbox.PENDING, 0)
    if stuck:
        # Only a failing call leaves work for later; the background worker retries it.
        print(f"warning: {stuck} events or CRM writes wait for a retry", file=sys.stderr)


async def _rebuild_history(runtime: Runtime, *, now: datetime) -> None:
    """Record the health each company had every few days of the last 90, from the facts as
    they stood then: what the service would have recorded had it watched the whole period.
    It gives the admin page its sparklines and the CRM its 30-day trend. The accounts' rows
    keep their current health (the copies scored here are never saved)."""
    began = time.perf_counter()
    async with runtime.sessions() as session, session.begin():
        config = (await configs.current(session))[1]
        everyone = await accounts.accounts_after(session, after_id=0, limit=1_000_000)
        # Prospects have no health to record: the sample companies' lifecycle stages never
        # changed, but their stage is dated today, so the past would read them as customers.
        live = [account for account in everyone if account.customer]
        previous = {account.id: Band.UNKNOWN for account in live}
        versions = accounts.scoring_versions(live, config)
        for account in live:
            account.health_updated_at = None  # the first step is always recorded
        for days in range(HISTORY_DAYS, 0, -HISTORY_STEP_DAYS):
            as_of = now - timedelta(days=days)
            snapshots = await facts.read_facts(session, accounts=live, as_of=as_of, historical=True)
            scored = []
            for account in live:
                health = score(
                    snapshots[account.id],
                    config.for_connection(account.connection),
                    previous_band=previous[account.id],
                )
                previous[account.id] = health.band
                scored.append((account, health))
            await accounts.record_health(session, scored=scored, at=as_of, versions=versions)
    print(
        f"Rebuilt the health history of the last {HISTORY_DAYS} days (every "
        f"{HISTORY_STEP_DAYS} days) of {len(live)} accounts in {time.perf_counter() - began:.1f} s"
    )


async def _rescore_all(runtime: Runtime) -> None:
    """Rescore every account now that it has a history: its 30-day trend reaches the CRM, and
    alert rules that compare with the past (a score drop) get their chance."""
    began = time.perf_counter()
    async with runtime.sessions() as session, session.begin():
        await configs.request_recompute(
            session,
            config_id=await configs.current_id(session),
            reason="demo: health history rebuilt",
            now=datetime.now(UTC),
        )
    await _drain(runtime)
    print(f"Rescored every account with its 30-day trend in {time.perf_counter() - began:.1f} s")


async def _count_alerts(runtime: Runtime, connection: str, result: DemoResult) -> None:
    where = alerts.AlertFilter(connection=connection)
    offset, page = 0, 500
    async with runtime.sessions() as session:
        while True:
            rows, total = await alerts.list_alerts(
                session, where=where, now=datetime.now(UTC), limit=page, offset=offset
            )
            for alert, account in rows:
                result.alerts_by_rule[alert.rule] += 1
                result.alerted.setdefault(alert.rule, set()).add(account.crm_id)
                if alert.status == "open":
                    band = account.band if account.customer else NOT_A_CUSTOMER
                    result.open_by_band[(alert.rule, band)] += 1
            offset += page
            if offset >= total:
                return


def _print_open_alerts(result: DemoResult) -> None:
    """Open alerts per rule and per band of the account now: alerts belong on at-risk
    accounts, and none on healthy ones."""
    if not result.open_by_band:
        return
    seen = {band for _, band in result.open_by_band}
    bands = [band for band in (*BANDS, NOT_A_CUSTOMER) if band in seen]
    rules = sorted({rule for rule, _ in result.open_by_band})
    width = max(len("open alerts"), *(len(rule) for rule in rules))
    print(
        "\n"
        + "open alerts".ljust(width)
        + "".join(f"  {band:>10}" for band in bands)
        + "       total"
    )
    for rule in rules:
        counts = [result.open_by_band[(rule, band)] for band in bands]
        print(rule.ljust(width) + "".join(f"  {n:>10}" for n in counts) + f"  {sum(counts):>10}")
    totals = [sum(n for (_, band), n in result.open_by_band.items() if band == b) for b in bands]
    print("total".ljust(width) + "".join(f"  {n:>10}" for n in totals) + f"  {sum(totals):>10}")


def print_summary(
    result: DemoResult, *, service_url: str, sandbox_url: str, database: str, serving: bool
) -> None:
    bands = result.bands
    shown = [band for band in (*BANDS, NOT_A_CUSTOMER, "not written") if bands[band]]
    print("\nBands: " + ", ".join(f"{band} {bands[band]}" for band in shown))
    print(
        f"  onboarding: customers of less than {HealthConfig().bands.onboarding_days} days, "
        "scored but not judged; not a customer: the CRM's lifecycle stage is not customer, "
        "so no score, band or alert"
    )
    for reason, count in result.unknown_reasons().most_common(3):
        print(f"  unknown ({count}): {reason}")

    columns = list(BANDS[:3]) + [b for b in shown if b not in BANDS[:3]]
    print("\nBy archetype (what makes a customer healthy is use and collaboration, not size):")
    print(
        f"  {'archetype':<24}{'expected':<10}"
        + "".join(f"{band:>{max(9, len(band) + 2)}}" for band in columns)
    )
    for name, counts in result.by_archetype.items():
        archetype = ARCHETYPES[name]
        cells = "".join(f"{counts[band]:>{max(9, len(band) + 2)}}" for band in columns)
        print(f"  {archetype.label:<24}{archetype.expected:<10}{cells}")

    print("\nMost at risk, and why:")
    for company in result.most_at_risk():
        record = result.records[company.crm_id]
        trend = record.get("health_trend_30d")
        change = f", {int(float(trend)):+d} in 30 days" if trend else ""
        print(
            f"  {company.name} ({ARCHETYPES[company.archetype].label}): "
            f"score {record.get('health_score')}{change}"
        )
        for driver in (record.get("health_drivers") or "").splitlines():
            print(f"      - {driver}")

    total = sum(result.alerts_by_rule.values())
    rules = ", ".join(f"{rule} {count}" for rule, count in result.alerts_by_rule.most_common())
    print(f"\nAlerts raised: {total}" + (f" ({rules})" if rules else ""))
    _print_open_alerts(result)

    # Other commands find the demo's data only when told where it is (see "Where the data
    # lives" in the README): say so with a command that works as printed.
    quoted = shlex.quote(database)
    print(f"\nDatabase:   {database} (SQLite; each demo run starts it afresh)")
    print(f"            other commands read it with: crm-health status --database {quoted}")
    if serving:
        print(f"Admin page: {service_url}/admin  (sign in with the admin token {DEMO_ADMIN_TOKEN})")
        print(f"API docs:   {service_url}/docs")
        print(
            f"API:        curl -H 'Authorization: Bearer {DEMO_ADMIN_TOKEN}' "
            f"'{service_url}/api/v1/accounts?band=at_risk'"
        )
        print(
            f"Sandbox:    curl -H 'Authorization: Bearer {DEMO_TOKEN}' '{sandbox_url}"
            "/crm/v3/objects/companies?properties=name,health_score,health_band,health_drivers'"
        )
    else:
        print("Servers:    stopped (--exit); run without --exit to use the admin page and the API")
    print(f"Demo ready in {result.seconds:.1f} s")
