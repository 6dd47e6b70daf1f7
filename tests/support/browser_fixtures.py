"""Fixtures of the browser tests, loaded as a plugin by tests/conftest.py: one seeded site per
module (tests/support/admin_site.py), one Chromium per module, a clean tab per test. A module
with a `server` or `page` of its own overrides them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_site import CHROMIUM, ON_CI, Server, launch_chromium, open_tab, running_site
from playwright.sync_api import Browser, Page, Playwright, sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Server]:
    with running_site(tmp_path_factory.mktemp("admin"), sqlite_template) as site:
        yield site


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
        if ON_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    with open_tab(browser, server) as tab:
        yield tab
