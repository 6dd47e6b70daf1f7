"""`crm-health demo`: a sandbox CRM and the service on SQLite, 180 days of sample activity
replayed through the service's own API, health written back into the sandbox's companies.

The sample (`demo_data`) is deterministic for a seed: several hundred companies, each drawn
from one of five archetypes with a 180-day trajectory; this module runs the servers, replays the
sample through the API and prints the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import statistics
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

from connector.base import ProvisionReport, signal_field
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import signature_v3
from connector.hubspot.fields import GROUP_LABEL
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.seed import SEEDED_OWNERS
from connector.sandbox.state import SandboxState
from signals import active_use
from signals.config import HealthConfig
from signals.model import Band
from signals.scoring import score
from webhooks.accounts_view import AccountQuery
from webhooks.app import create_app
from webhooks.config_service import apply_config
from webhooks.demo_data import (
    ARCHETYPES,
    DAYS,
    DEMO_KEY_FEATURES,
    RENEWAL_DAYS,
    SampleCompany,
    decides_renewal,
    lifecycle,
    sample_companies,
)
from webhooks.portfolio import Portfolio, portfolio
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.sentiment import SentimentIn, set_sentiment
from webhooks.server import ServerLimits, build_server
from webhooks.settings import Settings
from webhooks.store import accounts, alerts, configs, facts, inbox, outcomes, writeback
from webhooks.store.migrate import upgrade_to_head

DEMO_SECRET = "demo-client-secret"  # noqa: S105 - a local demo, nothing real behind it
DEMO_TOKEN = "demo-access-token"  # noqa: S105
DEMO_ADMIN_TOKEN = "demo-admin-token"  # noqa: S105
DEMO_PORTAL = 62515
HISTORY_DAYS = 90  # the health history rebuilt from it (the admin page's sparklines)
HISTORY_STEP_DAYS = 3
EVENTS_PER_CALL = 1000  # the most `POST /ingest/events` takes
WORKER_BATCH = 10_000  # events the demo's worker claims at once
# A group of companies replayed before the worker runs: it must fit one worker batch.
GROUP_COMPANIES = 100  # also the most events of one HubSpot webhook call
GROUP_EVENTS = WORKER_BATCH - GROUP_COMPANIES
BANDS = ("healthy", "neutral", "at_risk", "unknown", "onboarding")
NOT_A_CUSTOMER = "not a customer"


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
    # Per account: the share of its active users who used a key feature in 30 days, as the
    # active use signal measures it, and the demo's custom indicator (DEMO_CUSTOM_INDICATOR);
    # None: no data.
    key_feature_adoption: dict[str, float | None] = field(default_factory=dict)
    report_exports: dict[str, float | None] = field(default_factory=dict)
    # The CRM ids of the accounts a CSM set a sentiment on (DEMO_SENTIMENTS).
    judged: list[str] = field(default_factory=list)
    # CRM id -> (when, "renewed" or "churned"): the renewal decisions as the service stored them.
    outcomes: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    # The admin home's portfolio (GET /api/v1/portfolio) as the demo ends.
    portfolio: Portfolio | None = None
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

    def median_adoption(self, archetype: str) -> float | None:
        return self._median(self.key_feature_adoption, archetype)

    def median_exports(self, archetype: str) -> float | None:
        return self._median(self.report_exports, archetype)

    def _median(self, values: dict[str, float | None], archetype: str) -> float | None:
        found = [
            value
            for company in self.companies
            if company.archetype == archetype and (value := values.get(company.crm_id)) is not None
        ]
        return statistics.median(found) if found else None

    @property
    def by_archetype(self) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {name: Counter() for name in ARCHETYPES}
        for company in self.companies:
            table[company.archetype][self.band_of(company.crm_id)] += 1
        return table

    @property
    def outcomes_by_archetype(self) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {name: Counter() for name in ARCHETYPES}
        for company in self.companies:
            if company.crm_id in self.outcomes:
                table[company.archetype][self.outcomes[company.crm_id][1]] += 1
        return table

    def most_at_risk(self, count: int = 5) -> list[DemoCompany]:
        scores = {c.crm_id: self.records[c.crm_id].get("health_score") for c in self.companies}
        scored = [c for c in self.companies if scores[c.crm_id]]
        scored.sort(key=lambda c: (float(scores[c.crm_id] or 0), c.name))
        return scored[:count]


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
                **lifecycle(index, now),
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
        await _configure(runtime, now=now)
        events = await _replay(runtime, service_url, companies, ids, now)
        sentiments = await _judge(runtime, companies, ids, now=now)
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
            judged=sentiments,
        )
        await _collect(runtime, settings, result)
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
    """Each company appears as a signed HubSpot webhook and its activity (with its renewal
    decision, for a customer of long standing) goes through `POST /ingest/events` with the
    admin token, a thousand events a call.

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
            if decides_renewal(index):
                activity.append(company.renewal(company_id, now))
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


# The demo's own signal: how much of the product's value its people take home in reports.
DEMO_CUSTOM_SIGNAL = {"name": "adoption", "label": "Adoption", "weight": 0.1}
DEMO_CUSTOM_INDICATOR: dict[str, object] = {
    "name": "report_exports",
    "label": "Reports exported per seat (30d)",
    "signal": "adoption",
    "source": {"kind": "product_events", "features": ["Report Exported"],
               "aggregation": "events_per_seat", "days": 30},
    "at_risk": 0.05,
    "healthy": 0.4,
}  # fmt: skip


async def _configure(runtime: Runtime, *, now: datetime) -> None:
    """What an admin of the demo product sets up first, as config as code would: its key
    features, a custom signal with one custom indicator, and the CSM sentiment picklists on
    the CRM record (the rest are the defaults)."""
    config = HealthConfig.model_validate(
        {
            "product": {"key_features": list(DEMO_KEY_FEATURES)},
            "custom_signals": [DEMO_CUSTOM_SIGNAL],
            "custom_indicators": [DEMO_CUSTOM_INDICATOR],
            # CSMs set their sentiment on the company too: the worker provisions the picklists.
            "sentiment": {"crm_field": True},
        }
    )
    async with runtime.sessions() as session, session.begin():
        await apply_config(
            session,
            config=config,
            author="demo",
            comment="the demo product's key features",
            dry_run=False,
            now=now,
        )


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
            snapshots = await facts.read_facts(
                session,
                accounts=live,
                as_of=as_of,
                historical=True,
                reads=config.fact_reads,
            )
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


# What a few CSMs know that the data does not, by archetype: (rating, reason, how many).
DEMO_SENTIMENTS: dict[str, tuple[str, str, int]] = {
    "fading": ("red", "champion left", 3),
    "transactional": ("amber", "budget cut", 2),
    "collaborator": ("green", "expansion planned", 2),
}


async def _judge(
    runtime: Runtime, companies: Sequence[SampleCompany], ids: Sequence[str], *, now: datetime
) -> list[str]:
    """A few CSM sentiments, set through the admin API's own path by the companies' owners;
    the CRM ids of the accounts judged."""
    judged: list[str] = []
    for archetype, (rating, reason, count) in DEMO_SENTIMENTS.items():
        chosen = [
            (company, crm_id)
            for index, (company, crm_id) in enumerate(zip(companies, ids, strict=True))
            # Customers only: a prospect has no health for a CSM to weigh.
            if company.archetype == archetype
            and lifecycle(index, now)["lifecyclestage"] == "customer"
        ]
        for company, crm_id in chosen[:count]:
            owner = next(o for o in SEEDED_OWNERS if o[0] == company.owner_id)
            await set_sentiment(
                runtime.sessions,
                connection=runtime.settings.connection_name,
                record_id=crm_id,
                change=SentimentIn.model_validate({"rating": rating, "reason": reason, "days": 30}),
                author=f"{owner[2]} {owner[3]}",
                now=now,
            )
            judged.append(crm_id)
    await _drain(runtime)
    return judged


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


async def _collect(runtime: Runtime, settings: Settings, result: DemoResult) -> None:
    """What the summary reports, read from the service's store once the demo has run."""
    await _count_alerts(runtime, settings.connection_name, result)
    await _read_outcomes(runtime, settings.connection_name, result)
    await _measure_adoption(runtime, result)
    result.portfolio = await _read_portfolio(runtime, settings)


async def _read_portfolio(runtime: Runtime, settings: Settings) -> Portfolio:
    return await portfolio(
        runtime.sessions,
        connection=settings.connection_name,
        query=AccountQuery(),
        now=datetime.now(UTC),
        currency=settings.currency,
    )


async def _read_outcomes(runtime: Runtime, connection: str, result: DemoResult) -> None:
    async with runtime.sessions() as session:
        known = await outcomes.known_outcomes(session, connection=connection)
    for account, at, outcome, _ in known:  # the demo sends no ARR with its outcomes
        result.outcomes[account.crm_id] = (at, outcome)


async def _measure_adoption(runtime: Runtime, result: DemoResult) -> None:
    """Each account's key-feature adoption and custom indicator now, from the facts as the
    worker reads them."""
    position = [spec.name for spec in active_use.SIGNAL.indicators].index("key_feature_adoption")
    async with runtime.sessions() as session:
        config = (await configs.current(session))[1]
        everyone = await accounts.accounts_after(session, after_id=0, limit=1_000_000)
        snapshots = await facts.read_facts(
            session,
            accounts=everyone,
            as_of=datetime.now(UTC),
            reads=config.fact_reads,
        )
    exports = config.custom_indicators[0].source.key
    for account in everyone:
        measured = active_use.SIGNAL.measure(snapshots[account.id])
        result.key_feature_adoption[account.crm_id] = measured[position]
        result.report_exports[account.crm_id] = snapshots[account.id].custom.get(exports)


def _print_sentiments(result: DemoResult) -> None:
    """The CSMs' voice: how many sentiments, and one as its account's first driver says it."""
    if not result.judged:
        return
    by = Counter(
        DEMO_SENTIMENTS[c.archetype][0] for c in result.companies if c.crm_id in result.judged
    )
    print(
        f"\nCSM sentiments set: {len(result.judged)} ("
        + ", ".join(f"{rating} {count}" for rating, count in by.most_common())
        + "); each is its account's first driver, e.g."
    )
    for crm_id in result.judged[:1]:
        company = next(c for c in result.companies if c.crm_id == crm_id)
        first = (result.records[crm_id].get("health_drivers") or "").split("\n")[0]
        print(f"  {company.name}: {first}")


def _print_outcomes(result: DemoResult) -> None:
    """The renewal decisions the backtest checks the bands against, and each archetype's churn."""
    if not result.outcomes:
        return
    by = Counter(outcome for _, outcome in result.outcomes.values())
    churn = [
        f"{ARCHETYPES[name].label} {counts['churned'] / counts.total():.0%}"
        for name, counts in result.outcomes_by_archetype.items()
        if counts
    ]
    print(
        f"\nOutcomes: {by['renewed']} renewed, {by['churned']} churned in the last {RENEWAL_DAYS}"
        f" days (churned: {', '.join(churn)})"
    )


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


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.0f} {currency}"


def _print_portfolio(result: DemoResult, service_url: str | None) -> None:
    """The admin home's headline, so the demo says where the money at risk is (with the
    pages' addresses while the service runs)."""
    found = result.portfolio
    if found is None:
        return
    totals, currency = found.totals, found.currency
    share = totals.arr_at_risk / totals.arr if totals.arr else 0.0
    print(
        f"\nPortfolio (the admin home): {totals.accounts} customers, ARR "
        f"{_money(totals.arr, currency)}; at risk {_money(totals.arr_at_risk, currency)} "
        f"({share:.0%}) on {totals.accounts_at_risk} accounts"
    )
    renewals = found.renewals
    at_risk = next((row for row in renewals.bands if row.band == Band.AT_RISK.value), None)
    if renewals.total:
        print(
            f"  renewing in {renewals.days} days: {renewals.total} accounts"
            + (
                f", {at_risk.accounts} of them at risk ({_money(at_risk.arr, currency)})"
                if at_risk is not None and at_risk.accounts
                else ""
            )
        )
    if found.movers.items:
        print(f"  biggest movers in {found.movers.days} days:")
        for mover in found.movers.items[:5]:
            arr = "" if mover.arr is None else f", ARR {_money(mover.arr, currency)}"
            page = "" if service_url is None else f"  {service_url}/admin/accounts/{mover.id}"
            print(
                f"    {mover.name or mover.id}: {mover.score_before} -> {mover.score} "
                f"({mover.change:+d}, {mover.band_before} -> {mover.band}{arr}){page}"
            )


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
        + f"{'key features':>14}{'exports/seat':>14}"
    )
    for name, counts in result.by_archetype.items():
        archetype = ARCHETYPES[name]
        cells = "".join(f"{counts[band]:>{max(9, len(band) + 2)}}" for band in columns)
        adoption, exports = result.median_adoption(name), result.median_exports(name)
        adopted = "-" if adoption is None else f"{adoption:.0%}"
        exported = "-" if exports is None else f"{exports:.2f}"
        print(f"  {archetype.label:<24}{archetype.expected:<10}{cells}{adopted:>14}{exported:>14}")
    print(
        "  key features: the median share of active users who used "
        + " or ".join(f'"{name}"' for name in DEMO_KEY_FEATURES)
        + " in 30 days (the demo's product.key_features)"
    )
    signal = DEMO_CUSTOM_SIGNAL
    print(
        f'  exports/seat: the median of the custom indicator "{DEMO_CUSTOM_INDICATOR["label"]}"'
        f" of the custom signal {signal['label']} (weight {signal['weight']})"
    )
    field = signal_field(str(signal["name"]))
    written = sum(1 for record in result.records.values() if record.get(field))
    print(
        f"  {field}: the custom signal's own company property, written on {written} companies;"
        ' CSMs can also set their sentiment on the "CSM sentiment" picklist of each company'
    )

    _print_outcomes(result)
    _print_sentiments(result)

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

    _print_portfolio(result, service_url if serving else None)

    total = sum(result.alerts_by_rule.values())
    rules = ", ".join(f"{rule} {count}" for rule, count in result.alerts_by_rule.most_common())
    print(f"\nAlerts raised: {total}" + (f" ({rules})" if rules else ""))
    _print_open_alerts(result)

    # Other commands find the demo's data only when told where it is (see "Where the data
    # lives" in the README): say so with a command that works as printed.
    quoted = shlex.quote(database)
    print(f"\nDatabase:   {database} (SQLite; each demo run starts it afresh)")
    print(f"            other commands read it with: crm-health status --database {quoted}")
    if result.outcomes:
        print(
            f"Calibrate:  crm-health backtest --database {quoted}; crm-health suggest "
            f"--database {quoted} --output suggested.yaml (the outcomes above as the truth)"
        )
    if serving:
        print(f"Admin page: {service_url}/admin  (sign in with the admin token {DEMO_ADMIN_TOKEN})")
        print("            the portfolio home: ARR at risk, 90 days by band, movers, renewals")
        worst = result.most_at_risk(1)
        if worst:
            print(
                f"            an account ({worst[0].name}): {service_url}/admin/accounts/"
                f"{worst[0].crm_id} (why it moved, timeline, contacts)"
            )
        print(f"            calibration: {service_url}/admin/calibration")
        print(f"API docs:   {service_url}/docs")
        print(
            f"API:        curl -H 'Authorization: Bearer {DEMO_ADMIN_TOKEN}' "
            f"'{service_url}/api/v1/accounts?band=at_risk'"
        )
        print(
            f"Sandbox:    curl -H 'Authorization: Bearer {DEMO_TOKEN}' '{sandbox_url}"
            "/crm/v3/objects/companies?properties=name,health_score,health_band,health_adoption,"
            "health_drivers'"
        )
    else:
        print("Servers:    stopped (--exit); run without --exit to use the admin page and the API")
