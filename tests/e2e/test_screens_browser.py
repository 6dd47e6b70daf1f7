"""Every other screen of the admin site on a desktop and a phone: it renders its content, the
page never scrolls sideways (wide tables scroll in their own box), a screenshot is saved to
test-artifacts/admin/, and axe-core finds nothing serious or critical. The portfolio, account,
configuration and API docs screens have modules of their own that do the same."""

from __future__ import annotations

import pytest
from admin_site import (
    DESKTOP,
    PHONE,
    Server,
    assert_accessible,
    assert_no_sideways_scroll,
    open_tab,
    shot,
    sign_in,
)
from playwright.sync_api import Browser, ViewportSize, expect

SIZES: dict[str, ViewportSize] = {"1440": DESKTOP, "390": PHONE}

# path -> (screenshot name, what shows once the page has loaded its data)
SCREENS: dict[str, tuple[str, str]] = {
    "/admin/alerts": ("43-alerts", "#alerts-table tbody tr"),
    "/admin/sync": ("44-sync", "#sync-connections .card"),
    "/admin/calibration": ("45-calibration", "#backtest-fields input"),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", SCREENS)
def test_each_screen_fits_and_passes_axe(
    browser: Browser, server: Server, path: str, size: str
) -> None:
    name, loaded = SCREENS[path]
    with open_tab(browser, server, viewport=SIZES[size]) as page:
        sign_in(page, server.admin_key, then=path)
        expect(page.locator(loaded).first).to_be_visible()
        assert_no_sideways_scroll(page)
        shot(page, f"{name}-{size}")
        assert_accessible(page, f"{name}-{size}")


@pytest.mark.parametrize("size", SIZES)
def test_the_sign_in_screen_fits_and_passes_axe(
    browser: Browser, server: Server, size: str
) -> None:
    with open_tab(browser, server, viewport=SIZES[size]) as page:
        page.goto("/admin/login")
        expect(page.get_by_label("API key")).to_be_visible()
        assert_no_sideways_scroll(page)
        shot(page, f"46-login-{size}")
        assert_accessible(page, f"46-login-{size}")
