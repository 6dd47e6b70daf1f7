"""/docs (Swagger UI) and /redoc (ReDoc) in a real browser with no way off the machine:
Playwright drives Debian's Chromium against the real app (uvicorn on a free port), aborts every
request to another host, and the pages must still render the API with no error. The pages' CSP
stops most such requests before they leave; its violations fail the tests as well.

Screenshots at a desktop and a phone viewport go to test-artifacts/admin/. Chromium is
/usr/bin/chromium (`make test` installs it); Playwright's own browser downloads are never used.
Without it the tests skip locally and fail on CI.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from admin_site import ARTIFACTS
from playwright.sync_api import (
    Browser,
    Page,
    Route,
    ViewportSize,
    expect,
)

from testkit import make_settings
from webhooks.app import create_app

TIMEOUT_MS = 15_000
HOST = "127.0.0.1"
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# Runs before any script of the page: CSP violations are recorded even when the console is quiet.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """The real app on uvicorn in a thread; the pages need no data, only the schema."""
    path = tmp_path_factory.mktemp("api-docs") / "api-docs.db"
    shutil.copy(sqlite_template, path)
    port = _free_port()
    url = f"http://{HOST}:{port}"
    settings = make_settings(
        f"sqlite+aiosqlite:///{path}", hubspot_access_token=None, public_url=url
    )
    config = uvicorn.Config(
        create_app(settings), host=HOST, port=port, log_level="warning", lifespan="on"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="api-docs-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
        time.sleep(0.05)
    yield url
    uvicorn_server.should_exit = True
    thread.join(timeout=15)


@dataclass
class Offline:
    page: Page
    problems: list[str] = field(default_factory=list)
    off_host: list[str] = field(default_factory=list)


@pytest.fixture
def offline(browser: Browser, server: str) -> Iterator[Offline]:
    """A tab that can reach the server only: any other host is recorded and aborted."""
    context = browser.new_context(base_url=server, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(RECORD_VIOLATIONS)
    tab = Offline(page=context.new_page())

    def only_the_server(route: Route) -> None:
        if urlsplit(route.request.url).hostname == HOST:
            route.continue_()
        else:
            tab.off_host.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    tab.page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    tab.page.on(
        "console",
        lambda message: (
            tab.problems.append(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    yield tab
    violations = tab.page.evaluate("window.__cspViolations")
    context.close()
    assert violations == [], violations
    assert tab.problems == [], tab.problems
    assert tab.off_host == [], tab.off_host


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_swagger_ui_renders_the_operations_offline(offline: Offline) -> None:
    page = offline.page
    page.goto("/docs")
    expect(page).to_have_title("crm-health - Swagger UI")
    expect(page.locator(".info .title")).to_contain_text("crm-health")
    ingest = page.locator(".opblock.opblock-post", has=page.locator('[data-path="/ingest/events"]'))
    expect(ingest).to_be_visible()
    expect(ingest.locator(".opblock-summary-method")).to_have_text("POST")
    # Opening an operation renders its parameters and responses with their examples.
    ingest.locator(".opblock-summary").click()
    expect(ingest.get_by_role("button", name="Try it out")).to_be_visible()
    expect(ingest.locator("tr.response[data-code='202'] .example")).to_be_visible()
    shot(page, "docs-1440")
    page.set_viewport_size(PHONE)
    ingest.locator(".opblock-summary-method").scroll_into_view_if_needed()
    expect(ingest.locator(".opblock-summary-method")).to_be_in_viewport()
    shot(page, "docs-390")


def test_redoc_renders_the_api_offline(offline: Offline) -> None:
    page = offline.page
    page.goto("/redoc")
    expect(page).to_have_title("crm-health - ReDoc")
    expect(page.get_by_role("heading", level=1)).to_contain_text("crm-health")
    operation = page.locator("[data-section-id$='/operation/native_events_ingest_events_post']")
    expect(operation.get_by_role("heading", level=2)).to_have_text(
        "Native usage, collaboration and account events (up to 1,000 per call)"
    )
    expect(operation).to_contain_text("/ingest/events")
    # The search index runs in a Web Worker made from a blob: URL (the CSP allows it).
    page.get_by_placeholder("Search...").fill("ingest events")
    found = page.locator("[data-role='search:results'] li[data-item-id$='_ingest_events_post']")
    expect(found).to_be_visible()
    page.get_by_placeholder("Search...").fill("")
    shot(page, "redoc-1440")
    page.set_viewport_size(PHONE)
    expect(page.get_by_role("heading", level=1)).to_be_in_viewport()
    shot(page, "redoc-390")


def test_swagger_ui_tries_an_operation_against_the_server(offline: Offline) -> None:
    page = offline.page
    page.goto("/docs")
    healthz = page.locator(".opblock.opblock-get", has=page.locator('[data-path="/healthz"]'))
    healthz.locator(".opblock-summary").click()
    healthz.get_by_role("button", name="Try it out").click()
    healthz.get_by_role("button", name="Execute").click()
    expect(healthz.locator(".live-responses-table .response .response-col_status")).to_have_text(
        "200"
    )
