"""The admin site as the browser tests meet it: the real app on uvicorn in a thread over a
migrated SQLite copy, seeded the way the service builds accounts (native events through the
worker), and Debian's Chromium driven by Playwright. Fixtures in tests/e2e/conftest.py; every
browser test module starts its own site from here.

Chromium is /usr/bin/chromium (`make test` installs it); Playwright's own browser downloads are
never used. Without it the tests skip locally and fail on CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import uvicorn
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect
from sqlalchemy import select

from signals.config import HealthConfig
from testkit import RECENCY_ONLY, make_settings, native, store_native
from webhooks.app import create_app
from webhooks.settings import Settings
from webhooks.store import configs, keys
from webhooks.store.models import Account, HealthSnapshot

CHROMIUM = Path("/usr/bin/chromium")
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"
TIMEOUT_MS = 15_000
# Answers the tests provoke on purpose (a wrong key, a stale If-Match, a field the server
# refuses); Chromium logs them.
EXPECTED_STATUS = re.compile(r"status of (401|412|422) ")

# crm id -> (name, days since last use or None, segment, owner). Recency-only scoring: the
# score is 100 minus the days since the last use.
ACCOUNTS: dict[str, tuple[str, int | None, str, str]] = {
    "1": ("Acme", 0, "enterprise", "alice"),  # 100 healthy
    "2": ("Globex", 35, "smb", "bob"),  # 65 neutral
    "3": ("Initech", 80, "enterprise", "bob"),  # 20 at risk (raises entered-at-risk)
    "4": ("Hooli", 25, "enterprise", "carol"),  # 75 healthy; neutral once healthy_min is 80
    "5": ("Umbrella", None, "smb", "carol"),  # never used: unknown
}

# crm id -> (ARR, days until renewal or None): money and renewals for the portfolio.
MONEY: dict[str, tuple[int | None, int | None]] = {
    "1": (120_000, 200),
    "2": (45_000, 40),
    "3": (80_000, 25),
    "4": (31_500, 75),
    "5": (None, None),
}

# cs-mail is open to the default connection's admin keys, leads-mail only to a global admin.
CHANNELS = """\
channels:
  - name: cs-mail
    type: email
    to: [cs@example.com]
    connections: [default]
  - name: leads-mail
    type: email
    to: [leads@example.com]
"""


@dataclass
class Server:
    url: str
    admin_key: str  # a global admin
    viewer_key: str
    connection_admin_key: str  # an admin of the default connection only
    database_url: str
    book_admin_key: str  # a global admin of the connection with outcomes (BOOK)
    book_viewer_key: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The calibration page's connection: renewals and churn, with months of facts before them.
# Most churned accounts went quiet three months or more before their outcome with one seat of
# five in use; one in five used it to the end. Most renewed ones kept using it with three
# seats; one in six went quiet. Too few churned for the default minimum (30) to suggest.
BOOK = "book"
BOOK_CHURNED = 24
BOOK_RENEWED = 36


def _book_events() -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(BOOK_CHURNED + BOOK_RENEWED):
        churned = i < BOOK_CHURNED
        crm_id = f"b{i}"
        outcome_ago = 3 + i % 10
        quiet = i % 3 != 0 if churned else i % 4 == 0
        last_use = outcome_ago + (95 + 2 * (i % 24) if quiet else 1)
        attributes = {"name": f"Book {i:02d}", "seats": "5"}
        events.append(native("account", crm_id, days_ago=220, attributes=attributes))
        for day in range(last_use, 210, 7):
            for user in range(1 + i % 2 + (not churned)):
                events.append(native("usage", crm_id, days_ago=day, user=f"u{user}"))
        outcome = "churned" if churned else "renewed"
        events.append(native("outcome", crm_id, days_ago=outcome_ago, outcome=outcome))
    return events


def _story_events() -> list[dict[str, object]]:
    """Initech's last 90 days, for the account page's timeline and contacts: a champion and an
    executive sponsor, calls both ways, tickets, a beta, and the champion leaving."""
    return [
        native("contact", "3", days_ago=70, contact="dana@initech.example", title="Head of Ops"),
        native("contact", "3", days_ago=60, contact="ceo@initech.example", title="CEO",
               executive=True),
        native("interaction", "3", days_ago=65, channel="meeting", direction="ours",
               contact="dana@initech.example"),
        native("interaction", "3", days_ago=50, channel="email", direction="customer",
               contact="dana@initech.example"),
        native("collaboration", "3", days_ago=55, kind="beta"),
        native("ticket", "3", days_ago=30, ticket="T-1", priority="high"),
        native("ticket", "3", days_ago=20, ticket="T-2", priority="urgent"),
        native("contact", "3", days_ago=15, contact="dana@initech.example", title="Head of Ops",
               left=True),
    ]  # fmt: skip


async def seed(settings: Settings) -> tuple[str, str, str, str, str]:
    """Accounts built the way the service builds them (native events through the worker), a
    little older history for the charts, a book with outcomes (BOOK), and five keys."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        now = datetime.now(UTC)
        async with runtime.sessions() as session, session.begin():
            await configs.save(
                session,
                config=HealthConfig.model_validate(RECENCY_ONLY),
                author="seed",
                comment="recency only",
                now=now - timedelta(days=1),
            )
            _, admin_key = await keys.create(
                session, name="alice", role="global_admin", connection="default", now=now
            )
            _, connection_admin_key = await keys.create(
                session, name="carol", role="admin", connection="default", now=now
            )
            _, viewer_key = await keys.create(
                session, name="victor", role="viewer", connection="default", now=now
            )
            _, book_admin_key = await keys.create(
                session, name="olga", role="global_admin", connection=BOOK, now=now
            )
            _, book_viewer_key = await keys.create(
                session, name="vera", role="viewer", connection=BOOK, now=now
            )
        events: list[dict[str, object]] = []
        for crm_id, (name, days, segment, owner) in ACCOUNTS.items():
            if days is not None:
                events.append(native("usage", crm_id, days_ago=days, user="u1"))
            attributes = {"name": name, "segment": segment, "owner": owner, "seats": "20"}
            arr, renewal_in = MONEY[crm_id]
            if arr is not None:
                attributes["arr"] = str(arr)
            if renewal_in is not None:
                attributes["renewal_date"] = (date.today() + timedelta(days=renewal_in)).isoformat()
            events.append(native("account", crm_id, days_ago=0.001, attributes=attributes))
        events.extend(_story_events())
        await store_native(runtime, events)
        await store_native(runtime, _book_events(), connection=BOOK)
        while (await runtime.pipeline.process_inbox()).claimed:
            pass
        async with runtime.sessions() as session, session.begin():
            for crm_id, points in {"1": ((80, 60), (40, 85)), "3": ((85, 90), (30, 55))}.items():
                account_id = await session.scalar(
                    select(Account.id).where(Account.crm_id == crm_id)
                )
                for days_ago, score in points:
                    session.add(
                        HealthSnapshot(
                            account_id=account_id,
                            computed_at=now - timedelta(days=days_ago),
                            score=score,
                            band="healthy" if score >= 70 else "neutral",
                        )
                    )
    return admin_key, viewer_key, connection_admin_key, book_admin_key, book_viewer_key


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, key: str, *, then: str = "/admin") -> None:
    page.goto(then)
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#whoami")).not_to_be_empty()


@contextmanager
def running_site(directory: Path, sqlite_template: Path) -> Iterator[Server]:
    """The seeded app on uvicorn in a thread, on a free port, until the block ends."""
    path = directory / "admin.db"
    shutil.copy(sqlite_template, path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    channels = directory / "channels.yaml"
    channels.write_text(CHANNELS)
    settings = make_settings(
        f"sqlite+aiosqlite:///{path}",
        hubspot_access_token=None,
        public_url=url,
        # Offered in the rule editor; the worker does not run here, so nothing is ever sent.
        alert_channels_file=channels,
        smtp_host="127.0.0.1",
        smtp_from_address="crm-health@example.com",
    )
    # In a thread of its own: Playwright's sync API may already run an event loop in this one.
    with ThreadPoolExecutor(1) as seeder:
        seeded = seeder.submit(asyncio.run, seed(settings)).result()
    admin_key, viewer_key, connection_admin_key, book_admin_key, book_viewer_key = seeded
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="admin-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
        time.sleep(0.05)
    try:
        yield Server(
            url=url,
            admin_key=admin_key,
            viewer_key=viewer_key,
            connection_admin_key=connection_admin_key,
            database_url=settings.database_url,
            book_admin_key=book_admin_key,
            book_viewer_key=book_viewer_key,
        )
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=["--headless", "--no-sandbox", "--disable-gpu"],
    )


# The two screens every page is checked on: a desktop and a phone.
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


@contextmanager
def open_tab(
    browser: Browser, server: Server, *, viewport: ViewportSize | None = None
) -> Iterator[Page]:
    """A new tab on the site that must run clean: a CSP violation, a script error or an
    unexpected failed request fails the test when the block ends."""
    context = browser.new_context(
        base_url=server.url, viewport=viewport or {"width": 1280, "height": 900}
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and not EXPECTED_STATUS.search(message.text)
            else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


_AXE = Axe()
# What a page may not have: axe-core's two highest impacts (WCAG A/AA failures that block a
# keyboard or screen-reader user, contrast below 4.5:1 among them).
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


def assert_accessible(page: Page, name: str) -> None:
    """axe-core over the page as it stands: every finding saved to
    test-artifacts/admin/axe-<name>.json, and none serious or critical."""
    results = _AXE.run(page)
    violations = results.response.get("violations", [])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(violations, indent=1))
    blocking = [
        f"{found['id']} ({found['impact']}): {found['help']} at "
        + ", ".join(str(node["target"]) for node in found["nodes"][:5])
        for found in violations
        if found.get("impact") in BLOCKING_IMPACTS
    ]
    assert not blocking, blocking


def run_worker(server: Server) -> None:
    """What the worker would do next (it does not run beside the test site's server)."""

    async def process() -> None:
        app = create_app(make_settings(server.database_url, hubspot_access_token=None))
        async with app.router.lifespan_context(app):
            while (await app.state.runtime.pipeline.process_inbox()).claimed:
                pass

    # Playwright's own loop may run in this thread: the worker gets a thread of its own.
    worker = threading.Thread(target=lambda: asyncio.run(process()), name="site-worker")
    worker.start()
    worker.join(timeout=60)


def assert_no_sideways_scroll(page: Page) -> None:
    """The page is no wider than its window (wide tables scroll in their own box)."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
