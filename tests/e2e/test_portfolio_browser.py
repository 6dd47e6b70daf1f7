"""The portfolio home (/admin) in a real browser against the real app: headline figures, ARR by
band, the 90-day chart, movers, renewals, one set of filters for all of them kept in the
address, "My accounts", the list with ARR and renewals, its CSV export, sparklines on each
account's own range and a score distribution coloured at the band edges in force; checked at
1440 and 390 px with screenshots in test-artifacts/admin/ (40-portfolio-*.png).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from admin_site import (
    ACCOUNTS,
    DESKTOP,
    MONEY,
    PHONE,
    Server,
    assert_accessible,
    assert_no_sideways_scroll,
    open_tab,
    shot,
    sign_in,
)
from playwright.sync_api import Browser, Locator, Page, Route, expect

# The seed, read the way the page sums it: ARR of every account that has one, at risk only
# Initech (score 20).
AT_RISK = {"3"}
HEALTHY = {"1", "4"}  # Acme 100, Hooli 75


def usd(amount: float) -> str:
    return f"${amount:,.0f}"


def arr_of(ids: set[str]) -> int:
    return sum(MONEY[crm_id][0] or 0 for crm_id in ids)


ALL = set(ACCOUNTS)
ENTERPRISE = {crm_id for crm_id, row in ACCOUNTS.items() if row[2] == "enterprise"}
RENEWING_IN_90 = [
    crm_id
    for crm_id, (_, days) in sorted(MONEY.items(), key=lambda item: item[1][1] or 10**6)
    if days is not None and days <= 90
]


def tile(page: Page, key: str) -> Locator:
    return page.locator(f"[data-tile='{key}'] .tile-value")


def list_ids(page: Page) -> list[str]:
    rows = page.locator("#accounts-table tbody tr[data-account]")
    return [rows.nth(i).get_attribute("data-account") or "" for i in range(rows.count())]


def wait_for_page(page: Page) -> None:
    expect(page.locator("#tiles")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#accounts-table tbody")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#distribution")).to_have_attribute("aria-busy", "false")


@contextmanager
def _api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}
    ) as client:
        yield client


def _put_bands(server: Server, **bands: float) -> dict[str, Any]:
    """Apply a configuration with other band edges; the one it replaced, to restore."""
    with _api(server) as api:
        current = api.get("/api/v1/config")
        before: dict[str, Any] = current.json()["config"]
        config = {**before, "bands": {**before["bands"], **bands}}
        body = {"config": config, "comment": "portfolio test"}
        stored = api.put("/api/v1/config", json=body, headers={"If-Match": current.headers["etag"]})
        assert stored.status_code == 200, stored.text
    return before


def _restore(server: Server, config: dict[str, Any]) -> None:
    with _api(server) as api:
        etag = api.get("/api/v1/config").headers["etag"]
        body = {"config": config, "comment": "restored"}
        stored = api.put("/api/v1/config", json=body, headers={"If-Match": etag})
        assert stored.status_code == 200, stored.text


# --- without a browser ------------------------------------------------------------------------


def test_the_portfolio_page_holds_no_inline_script_or_style(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/api/v1/session", json={"key": server.admin_key}).status_code < 300
        html = client.get("/admin").text
    assert '<script src="/admin/static/portfolio.js" defer>' in html
    assert '<script src="/admin/static/vendor/uplot/uPlot.iife.min.js" defer>' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "style=" not in html
    assert "<style" not in html


# --- in the browser ---------------------------------------------------------------------------


def test_tiles_bands_chart_movers_and_renewals_show_the_portfolio(
    page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key)
    wait_for_page(page)
    total = arr_of(ALL)
    at_risk = arr_of(AT_RISK)
    # Tiles: compact money, the full amount in the title; ARR at risk with its share and count.
    expect(tile(page, "accounts")).to_have_text(str(len(ACCOUNTS)))
    expect(page.locator("[data-tile='accounts']")).to_contain_text("1 without ARR")
    expect(tile(page, "arr")).to_have_attribute("title", usd(total))
    expect(tile(page, "arr")).to_have_text("$277K")
    expect(page.locator("[data-tile='arr']")).to_contain_text(f"{usd(total)} across 4 accounts")
    expect(tile(page, "arr-at-risk")).to_have_attribute("title", usd(at_risk))
    expect(tile(page, "arr-at-risk")).to_have_text("$80K")
    share = f"{at_risk / total:.1%}"
    expect(page.locator("[data-tile='arr-at-risk']")).to_contain_text(
        f"{share} of ARR · 1 account at risk"
    )
    renewing = arr_of(set(RENEWING_IN_90))
    expect(tile(page, "renewals")).to_have_attribute("title", usd(renewing))

    # ARR and accounts by band.
    bands = page.locator("#band-table")
    expect(bands.locator("tr[data-band='healthy'] .accounts")).to_have_text("2")
    expect(bands.locator("tr[data-band='healthy'] .arr .value")).to_have_text(usd(arr_of(HEALTHY)))
    expect(bands.locator("tr[data-band='at_risk'] .arr .value")).to_have_text(usd(at_risk))
    expect(bands.locator("tr[data-band='unknown'] .accounts")).to_have_text("1")
    expect(bands.locator("tfoot")).to_contain_text(usd(total))

    # The 90-day chart: a uPlot canvas, a summary in words and the figures as a table.
    expect(page.locator("#trend canvas").first).to_be_visible()
    expect(page.locator("#trend figcaption")).to_contain_text("ARR at risk")
    expect(page.locator("#trend figcaption")).to_contain_text("$80K")
    expect(page.locator("#trend .pf-chart")).to_have_attribute("aria-hidden", "true")
    page.get_by_text("Show the chart as a table").click()
    table = page.locator("#trend-table")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr").last).to_contain_text(usd(at_risk))
    page.locator("#trend-measure label", has_text="Accounts").click()  # the ARR / Accounts switch
    expect(page.get_by_role("radio", name="Accounts")).to_be_checked()
    expect(page.locator("#trend figcaption")).to_contain_text(
        re.compile(r"Accounts at risk \d+ → 1")
    )
    expect(page.locator("#trend .pf-chart")).to_have_attribute("data-measure", "accounts")
    expect(page).to_have_url(re.compile(r"measure=accounts"))

    # Movers: Initech fell from 55 (its score a week ago) to 20 and turned at risk.
    mover = page.locator("#movers-table tr[data-account='3']")
    expect(mover).to_contain_text("-35")
    expect(mover.locator(".score-move")).to_have_text(re.compile(r"55\D+20"))
    expect(mover.locator(".band")).to_have_text("At risk")
    expect(mover).to_contain_text("was Neutral")
    expect(mover).to_contain_text(usd(at_risk))
    expect(mover.get_by_role("link", name="Initech")).to_have_attribute("href", "/admin/accounts/3")

    # Renewals in 90 days by band, then soonest first with the days left; Acme (200 d) not.
    renewals = page.locator("#renewals-table tbody tr")
    expect(renewals).to_have_count(len(RENEWING_IN_90))
    for index, crm_id in enumerate(RENEWING_IN_90):
        expect(renewals.nth(index)).to_have_attribute("data-account", crm_id)
        expect(renewals.nth(index)).to_contain_text(f"in {MONEY[crm_id][1]} days")
    expect(page.locator("#renewals")).not_to_contain_text("Acme")
    expect(page.locator("#renewals .band-stats li[data-band='at_risk']")).to_contain_text("$80K")
    expect(page.locator("#renewals .band-stats li[data-band='healthy']")).to_contain_text("$31.5K")
    shot(page, "40-portfolio-chart-accounts")


def test_filters_apply_to_figures_and_list_and_live_in_the_address(
    page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key)
    wait_for_page(page)
    segment = page.get_by_label("Segment", exact=True)
    # Segment values as a person reads them.
    expect(segment.locator("option")).to_have_text(["Any segment", "Enterprise", "SMB"])
    segment.select_option("enterprise")
    expect(tile(page, "arr")).to_have_attribute("title", usd(arr_of(ENTERPRISE)))
    expect(page.locator("#accounts-table tbody tr[data-account]")).to_have_count(len(ENTERPRISE))
    assert set(list_ids(page)) == ENTERPRISE
    expect(page.locator("#accounts-table tbody")).to_contain_text("Enterprise")
    expect(page).to_have_url(re.compile(r"segment=enterprise"))

    page.get_by_label("Band", exact=True).select_option("at_risk")
    expect(tile(page, "arr")).to_have_attribute("title", usd(arr_of(AT_RISK)))
    expect(page.locator("#accounts-table tbody tr[data-account]")).to_have_count(1)
    expect(page.locator("#movers-table tbody tr")).to_have_count(1)
    expect(page.locator("#histogram g.bucket[data-count='1']")).to_have_count(1)

    # A link reproduces the view.
    page.reload()
    wait_for_page(page)
    expect(page.get_by_label("Segment", exact=True)).to_have_value("enterprise")
    expect(page.get_by_label("Band", exact=True)).to_have_value("at_risk")
    expect(tile(page, "arr")).to_have_attribute("title", usd(arr_of(AT_RISK)))

    page.get_by_role("button", name="Clear filters").click()
    expect(tile(page, "arr")).to_have_attribute("title", usd(arr_of(ALL)))
    expect(page.locator("#accounts-table tbody tr[data-account]")).to_have_count(len(ACCOUNTS))

    # Renewing within 30 days: only Initech (25 d).
    page.get_by_label("Renewal", exact=True).select_option("30")
    expect(page.locator("#accounts-table tbody tr[data-account]")).to_have_count(1)
    expect(page.locator("#accounts-table tbody tr").first).to_contain_text("Initech")
    expect(tile(page, "arr")).to_have_attribute("title", usd(MONEY["3"][0] or 0))
    expect(page.locator("#renewals-table tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"renewal_within_days=30"))
    shot(page, "40-portfolio-filtered")


def test_my_accounts_asks_once_and_is_remembered_for_that_user(
    browser: Browser, page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key)
    wait_for_page(page)
    owner = page.get_by_label("Owner", exact=True)
    owner.select_option(label="My accounts")
    dialog = page.get_by_role("dialog", name="Which owner are you?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("I am")).to_be_focused()
    shot(page, "40-portfolio-who-am-i")
    dialog.get_by_label("I am").select_option("bob")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    bobs = {crm_id for crm_id, row in ACCOUNTS.items() if row[3] == "bob"}
    expect(page.locator("#accounts-table tbody tr[data-account]")).to_have_count(len(bobs))
    assert set(list_ids(page)) == bobs
    expect(tile(page, "arr")).to_have_attribute("title", usd(arr_of(bobs)))
    expect(page.locator("#me-note")).to_contain_text("you are bob")
    expect(page).to_have_url(re.compile(r"owner=%40me"))

    # Remembered on the server: a reload, and a fresh visit choosing it again, do not ask.
    page.reload()
    wait_for_page(page)
    expect(owner).to_have_value("@me")
    expect(dialog).to_be_hidden()
    assert set(list_ids(page)) == bobs
    page.goto("/admin")
    wait_for_page(page)
    page.get_by_label("Owner", exact=True).select_option(label="My accounts")
    expect(page.locator("#accounts-table tbody tr[data-account]")).to_have_count(len(bobs))
    expect(dialog).to_be_hidden()

    # Another user is asked for themselves; cancelling leaves everyone's accounts.
    with open_tab(browser, server) as other:
        sign_in(other, server.viewer_key, then="/admin?owner=%40me")
        asked = other.get_by_role("dialog", name="Which owner are you?")
        expect(asked).to_be_visible()
        asked.get_by_role("button", name="Cancel").click()
        expect(asked).to_be_hidden()
        expect(other.get_by_label("Owner", exact=True)).to_have_value("")
        expect(other.locator("#accounts-table tbody tr[data-account]")).to_have_count(len(ACCOUNTS))


def test_the_list_sorts_by_arr_and_renewal(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key)
    wait_for_page(page)
    by_arr = sorted(
        (crm_id for crm_id in ACCOUNTS if MONEY[crm_id][0]), key=lambda i: MONEY[i][0] or 0
    )
    by_renewal = sorted(
        (crm_id for crm_id in ACCOUNTS if MONEY[crm_id][1] is not None),
        key=lambda i: MONEY[i][1] or 0,
    )
    no_arr = [crm_id for crm_id in ACCOUNTS if not MONEY[crm_id][0]]
    arr = page.locator("#accounts-table th[data-sort='arr']")
    arr.get_by_role("button").click()  # biggest first
    expect(arr).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#accounts-table tbody tr").first).to_have_attribute(
        "data-account", by_arr[-1]
    )
    assert list_ids(page) == [*reversed(by_arr), *no_arr]  # nulls always last
    expect(page.locator("#accounts-table tbody tr").first.locator("td.arr")).to_have_text(
        usd(MONEY[by_arr[-1]][0] or 0)
    )
    arr.get_by_role("button").click()
    expect(arr).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#accounts-table tbody tr").first).to_have_attribute(
        "data-account", by_arr[0]
    )
    renewal = page.locator("#accounts-table th[data-sort='renewal']")
    renewal.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(renewal).to_have_attribute("aria-sort", "ascending")
    expect(arr).not_to_have_attribute("aria-sort", re.compile("."))
    expect(page.locator("#accounts-table tbody tr").first).to_have_attribute(
        "data-account", by_renewal[0]
    )
    assert list_ids(page)[: len(by_renewal)] == by_renewal
    first = page.locator("#accounts-table tbody tr").first
    expect(first.locator("td.renewal")).to_contain_text(f"in {MONEY[by_renewal[0]][1]} days")
    expect(page).to_have_url(re.compile(r"sort=renewal"))


def test_export_csv_downloads_the_rows_shown(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key, then="/admin?segment=enterprise&sort=-arr")
    wait_for_page(page)
    shown = list_ids(page)
    assert set(shown) == ENTERPRISE
    link = page.get_by_role("link", name="Export CSV")
    expect(link).to_have_attribute("href", re.compile(r"^/api/v1/accounts\.csv\?"))
    expect(link).to_have_attribute("href", re.compile(r"segment=enterprise"))
    expect(link).to_have_attribute("href", re.compile(r"sort=-arr"))
    with page.expect_download() as download:
        link.click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [row["id"] for row in rows] == shown
    assert [row["name"] for row in rows] == [ACCOUNTS[crm_id][0] for crm_id in shown]


def test_sparklines_use_the_accounts_own_range_and_say_it(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key)
    wait_for_page(page)
    # Initech: 90 (85 days ago), 55, then 20 now; the box spans about 12..98, not 0..100, with
    # both band edges (40, 70) drawn inside it.
    initech = page.locator("tr[data-account='3'] svg.sparkline")
    expect(initech).to_have_attribute("role", "img")
    expect(initech).to_have_attribute("aria-label", "Score 90 → 20 over 90 days")
    expect(initech.locator("line.edge")).to_have_count(2)
    low = int(initech.get_attribute("data-low") or "0")
    high = int(initech.get_attribute("data-high") or "100")
    assert 0 < low <= 20, low
    assert 90 <= high < 100, high
    # Hooli holds 75 in a narrow box: the healthy edge (70) shows, the at-risk one (40) does not.
    hooli = page.locator("tr[data-account='4'] svg.sparkline")
    expect(hooli).to_have_attribute("aria-label", re.compile(r"^Score 75 "))
    expect(hooli.locator("line.edge")).to_have_count(1)
    expect(hooli.locator("line.edge")).to_have_attribute("data-edge", "70")
    expect(page.locator("tr[data-account='5'] td").nth(3)).to_have_text("no scores")


def test_the_histogram_follows_the_band_edges_in_force(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key)
    wait_for_page(page)
    hooli_bin = page.locator("#histogram g.bucket[data-from='70']")
    expect(hooli_bin).to_have_attribute("data-band", "healthy")
    expect(page.locator("#histogram g.band-edge")).to_have_count(2)
    before = _put_bands(server, healthy_min=80)
    try:
        page.reload()
        wait_for_page(page)
        # 75 is neutral under healthy_min 80: its bar takes the neutral colour, the edge moves.
        expect(hooli_bin).to_have_attribute("data-band", "neutral")
        expect(hooli_bin).to_have_attribute("data-count", "1")
        neutral = page.evaluate(
            "getComputedStyle(document.querySelector('#histogram .bar-neutral')).fill"
        )
        assert hooli_bin.locator("rect").evaluate("r => getComputedStyle(r).fill") == neutral
        healthy = hooli_bin.locator("rect").evaluate(
            "() => getComputedStyle(document.querySelector('#histogram .bar-healthy')).fill"
        )
        assert healthy != neutral
        expect(page.locator("#histogram g.band-edge[data-edge='80']")).to_have_count(1)
        expect(page.locator("#histogram g.band-edge[data-edge='70']")).to_have_count(0)
        expect(page.locator("#histogram")).to_have_attribute(
            "aria-label", re.compile(r"healthy from 80")
        )
        expect(page.locator("#distribution")).to_contain_text("Healthy: 80 and up")
        shot(page, "40-portfolio-histogram-healthy-80")
    finally:
        _restore(server, before)


def test_names_from_the_crm_are_text_and_crm_links_open_a_new_tab(
    page: Page, server: Server
) -> None:
    """The real answers with a CRM link added to each row (the test site has no CRM that
    makes them) and a name carrying markup: shown as text, links only to http(s)."""
    hostile = '<img src=x onerror="document.title=1">Initech'

    def with_links(route: Route) -> None:
        response = route.fetch()
        data = response.json()
        for item in data["items"]:
            item["record_url"] = (
                "javascript:alert(1)"
                if item["id"] == "2"
                else f"https://app.hubspot.com/contacts/1/company/{item['id']}"
            )
            if item["id"] == "3":
                item["name"] = hostile
        route.fulfill(response=response, json=data)

    page.route(re.compile(r".*/api/v1/accounts\?.*"), with_links)
    sign_in(page, server.admin_key)
    wait_for_page(page)
    row = page.locator("#accounts-table tr[data-account='3']")
    expect(row.locator("th a").first).to_have_text(hostile)
    expect(page.locator("#accounts-table img")).to_have_count(0)
    crm = row.get_by_role("link", name=re.compile(r"^Open in CRM"))
    expect(crm).to_have_attribute("href", "https://app.hubspot.com/contacts/1/company/3")
    expect(crm).to_have_attribute("target", "_blank")
    expect(crm).to_have_attribute("rel", "noopener noreferrer")
    expect(crm).to_have_accessible_name(re.compile(r"opens in a new tab"))
    expect(page.locator("#accounts-table tr[data-account='2'] a.crm-link")).to_have_count(0)
    assert page.title() == "Portfolio · crm-health admin"


def test_desktop_and_phone_fit_and_are_accessible(browser: Browser, server: Server) -> None:
    for viewport, name in ((DESKTOP, "1440"), (PHONE, "390")):
        with open_tab(browser, server, viewport=viewport) as page:
            sign_in(page, server.admin_key)
            wait_for_page(page)
            expect(page.locator("#trend canvas").first).to_be_visible()
            assert_no_sideways_scroll(page)
            # The chart fits its card.
            chart = page.locator("#trend .uplot").bounding_box()
            card = page.locator(".pf-trend").bounding_box()
            assert chart
            assert card
            assert chart["width"] <= card["width"]
            shot(page, f"40-portfolio-{name}")
            assert_accessible(page, f"portfolio-{name}")
            if viewport is DESKTOP:
                # Narrowed in place: the chart follows its box, the page does not scroll sideways.
                page.set_viewport_size(PHONE)
                page.wait_for_function(
                    "document.querySelector('#trend .uplot').getBoundingClientRect().width <= 390"
                )
                assert_no_sideways_scroll(page)
    # The "My accounts" question and an open table, on a phone.
    with open_tab(browser, server, viewport=PHONE) as page:
        sign_in(page, server.viewer_key)
        wait_for_page(page)
        page.get_by_text("Show the chart as a table").click()
        assert_no_sideways_scroll(page)
        page.get_by_label("Owner", exact=True).select_option(label="My accounts")
        expect(page.get_by_role("dialog")).to_be_visible()
        assert_accessible(page, "portfolio-390-who-am-i")
        shot(page, "40-portfolio-who-am-i-390")
