"""The account page (/admin/accounts/<id>), the CSM's workspace, in a real browser against the
real app: the header in human terms, the score chart with its band shading and configuration
markers, why the score moved between two dates, the indicators in their units, the timeline,
the contacts and the CSM sentiment; on a desktop and a phone, each checked by axe-core.

The seed (tests/support/admin_site.py): Initech (record 3) scores 20, at risk, under the
"recency only" configuration applied a day ago; ARR 80,000, renewal in 25 days, owner bob; its
champion dana left 15 days ago, the CEO is an executive contact; tickets T-1 and T-2, a beta.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from admin_site import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Server,
    assert_accessible,
    assert_no_sideways_scroll,
    open_tab,
    run_worker,
    shot,
    sign_in,
)
from playwright.sync_api import Browser, Page, expect

INITECH = "/admin/accounts/3"


def _api(server: Server, path: str) -> Any:
    response = httpx.get(server.url + path, headers={"Authorization": f"Bearer {server.admin_key}"})
    response.raise_for_status()
    return response.json()


def _open(page: Page, server: Server, path: str = INITECH) -> None:
    sign_in(page, server.admin_key, then=path)
    expect(page.locator("#indicator-table")).to_be_visible()
    expect(page.locator("#history-chart canvas").first).to_be_visible()
    expect(page.locator(".movement-summary")).to_be_visible()
    expect(page.locator("#events li").first).to_be_visible()


def test_the_header_reads_in_human_terms(page: Page, server: Server) -> None:
    _open(page, server)
    expect(page.get_by_role("heading", level=1)).to_have_text("Initech")
    summary = page.locator("#summary")
    expect(summary.locator(".stat", has_text="Health")).to_contain_text("At risk")
    expect(summary.locator(".stat-score")).to_contain_text("20")
    expect(summary.locator(".stat", has_text="ARR")).to_contain_text("$80,000")
    expect(summary.locator("[data-days-left]")).to_have_text("in 25 days")
    expect(summary.locator(".stat", has_text="Owner")).to_contain_text("bob")
    expect(summary.locator(".stat", has_text="Segment")).to_contain_text("Enterprise")
    expect(summary.locator(".stat", has_text="Seats")).to_contain_text("20")
    # "Open in CRM" exactly when the connection gives the record a link.
    record_url = _api(server, "/api/v1/accounts/3")["record_url"]
    link = page.get_by_role("link", name="Open in CRM")
    if record_url is None:
        expect(link).to_have_count(0)
    else:
        expect(link).to_have_attribute("href", record_url)
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
    # The open alerts, as before.
    expect(page.locator("#account-alerts")).to_contain_text("entered-at-risk")


def test_the_indicators_read_in_their_units_with_thresholds_share_and_points(
    page: Page, server: Server
) -> None:
    _open(page, server)
    table = page.locator("#indicator-table")
    row = table.locator("tr[data-indicator='recency_days']")
    expect(row.locator("th")).to_contain_text("Days since last use")
    # Measured, at-risk and healthy thresholds, score, share of the total, points.
    expect(row.locator("td")).to_have_text(
        ["80 days", "≥ 100 days", "≤ 0 days", "20", "100%", "20.0"]
    )
    expect(table).not_to_contain_text("80.0002")
    expect(table).not_to_contain_text("weight_in_signal")
    expect(table.locator("tfoot")).to_contain_text("20.0")
    # Every driver names an indicator of the table by its label; that row says it drives.
    drivers = page.locator("#drivers li").all_text_contents()
    assert drivers
    assert drivers[0].startswith("Days since last use 80")
    names = table.locator(".indicator-name").all_text_contents()
    for driver in drivers:
        assert any(driver.startswith(f"{name} ") for name in names), (driver, names)
    expect(row.locator(".tag-driver")).to_have_text("Driver")
    # The signals the configuration switched off say so instead of showing a silent 0.
    expect(table.locator("tbody[data-signal='collaboration']")).to_contain_text("Not counted")
    expect(page.locator("#coverage")).to_contain_text("% of the configured weight")


def test_the_score_chart_shades_the_bands_and_marks_the_configuration_change(
    page: Page, server: Server
) -> None:
    _open(page, server)
    chart = page.locator("#history-chart")
    bands = json.loads(chart.get_attribute("data-bands") or "[]")
    assert [band["band"] for band in bands] == ["healthy", "neutral", "at_risk"]
    assert (bands[0]["from"], bands[2]["to"]) == (70, 40)  # the configuration in force
    # Pixels in the middle of each band, left of the first point: the band's background
    # colour (with no shading they are transparent).
    sampled = page.evaluate(
        """() => {
          const box = document.querySelector("#history-chart");
          const plot = JSON.parse(box.dataset.plot);
          const canvas = box.querySelector("canvas");
          const scale = canvas.width / canvas.getBoundingClientRect().width;
          const ctx = canvas.getContext("2d");
          const css = getComputedStyle(document.documentElement);
          const hex = (name) => {
            const value = css.getPropertyValue(name).trim().slice(1);
            return [0, 2, 4].map((i) => parseInt(value.slice(i, i + 2), 16));
          };
          const wanted = {
            healthy: "--healthy-bg", neutral: "--neutral-bg", at_risk: "--at-risk-bg",
          };
          return JSON.parse(box.dataset.bands).map((band) => {
            const y = plot.top + (1 - (band.from + band.to) / 200) * plot.height;
            const x = plot.left + 3;
            const pixel = ctx.getImageData(Math.round(x * scale), Math.round(y * scale), 1, 1).data;
            return { band: band.band, pixel: Array.from(pixel), wanted: hex(wanted[band.band]) };
          });
        }"""
    )
    for found in sampled:
        red, green, blue, alpha = found["pixel"]
        assert alpha == 255, found
        wanted = found["wanted"]
        assert all(abs(a - b) <= 3 for a, b in zip((red, green, blue), wanted, strict=True)), found
    # A marker where the configuration changed, a day ago, explained under the chart.
    markers = json.loads(chart.get_attribute("data-config-markers") or "[]")
    assert len(markers) == 1
    ago = datetime.now(UTC) - datetime.fromisoformat(markers[0].replace("Z", "+00:00"))
    assert timedelta(hours=23) < ago < timedelta(hours=25), markers
    legend = page.locator("#history-legend")
    expect(legend).to_contain_text("Configuration changed")
    expect(legend.locator(".config-changes")).to_contain_text("recency only")
    # The text alternative says what the chart shows.
    expect(page.locator("#history-summary")).to_contain_text("Score over the last 90 days")
    expect(page.locator("#history-summary")).to_contain_text("Now 20, At risk")


def test_why_it_moved_between_two_dates_and_by_dragging_across_the_chart(
    page: Page, server: Server
) -> None:
    _open(page, server)
    # Two dates from the keyboard: yesterday (after the configuration changed) to today.
    today = date.today()
    page.get_by_label("From", exact=True).fill((today - timedelta(days=1)).isoformat())
    page.get_by_label("To", exact=True).fill(today.isoformat())
    page.get_by_role("button", name="Explain the change").click()
    summary = page.locator(".movement-summary")
    expect(summary).to_contain_text("Days since last use")
    expect(summary).to_contain_text("fell 1 point")
    moved = page.locator(".movement-table tr[data-indicator='recency_days']")
    expect(moved).to_contain_text("79 days → 80 days")
    expect(moved.locator(".pts")).to_contain_text("\N{MINUS SIGN}")
    expect(page.locator("#movement-status")).to_contain_text("Days since last use")
    page.locator("#movement-card").screenshot(path=str(ARTIFACTS / "41-account-why-it-moved.png"))

    # Dragging across the chart sets both dates and explains that span.
    before = summary.text_content()
    over = page.locator("#history-chart .u-over")
    box = over.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    start = date.fromisoformat(page.get_by_label("From", exact=True).input_value())
    end = date.fromisoformat(page.get_by_label("To", exact=True).input_value())
    assert 75 <= (today - start).days <= 85, start
    assert 40 <= (today - end).days <= 50, end
    expect(summary).not_to_have_text(before or "")


def test_the_timeline_lists_what_happened_and_filters_by_kind(page: Page, server: Server) -> None:
    _open(page, server)
    events = page.locator("#events")
    for text in ("Ticket T-1", "Ticket T-2", "Beta", "Contact left: dana@initech.example"):
        expect(events).to_contain_text(text)
    # Newest first.
    times = events.locator("time").evaluate_all("(all) => all.map((t) => t.dateTime)")
    assert times == sorted(times, reverse=True)
    # Each event names its kind in words.
    expect(events.locator("li[data-kind='contact_left'] .kind")).to_have_text("Contact left")
    page.get_by_label("Show").select_option("ticket")
    expect(events.locator("li")).to_have_count(2)
    expect(events.locator("li[data-kind='ticket']")).to_have_count(2)
    page.get_by_label("Show").select_option("")
    # The weeks: two tickets, one beta.
    expect(page.locator(".week-row[data-series='tickets'] .week-figure")).to_have_text("total 2")
    expect(page.locator(".week-row[data-series='collaborations'] .week-figure")).to_have_text(
        "total 1"
    )


def test_the_contacts_list_the_executive_first_and_who_left(page: Page, server: Server) -> None:
    _open(page, server)
    rows = page.locator("#contacts-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("ceo@initech.example")
    expect(rows.first.locator(".tag-exec")).to_have_text("Executive")
    expect(rows.first).to_contain_text("CEO")
    expect(rows.nth(1)).to_contain_text("dana@initech.example")
    expect(rows.nth(1)).to_contain_text("Head of Ops")
    expect(rows.nth(1).locator("td.left")).to_contain_text("Left on ")


@pytest.mark.parametrize(("size", "viewport"), [("1440", DESKTOP), ("390", PHONE)])
def test_the_page_fits_the_screen_and_passes_axe(
    browser: Browser, server: Server, size: str, viewport: Any
) -> None:
    with open_tab(browser, server, viewport=viewport) as page:
        _open(page, server)
        assert_no_sideways_scroll(page)
        # The chart is as wide as its box, never wider.
        widths = page.evaluate(
            """() => {
              const box = document.querySelector("#history-chart");
              return [box.clientWidth, box.querySelector("canvas").getBoundingClientRect().width];
            }"""
        )
        assert widths[1] <= widths[0] + 1, widths
        shot(page, f"41-account-{size}")
        assert_accessible(page, f"41-account-{size}")


def test_the_chart_follows_the_width_of_the_window(browser: Browser, server: Server) -> None:
    with open_tab(browser, server, viewport=DESKTOP) as page:
        _open(page, server)
        wide = page.locator("#history-chart canvas").first.bounding_box()
        page.set_viewport_size(PHONE)
        page.wait_for_function(
            "() => document.querySelector('#history-chart canvas')"
            ".getBoundingClientRect().width < 400"
        )
        narrow = page.locator("#history-chart canvas").first.bounding_box()
        assert wide
        assert narrow
        assert narrow["width"] < wide["width"]
        assert_no_sideways_scroll(page)


def test_a_csm_sentiment_still_works_on_the_account_page(page: Page, server: Server) -> None:
    # Hooli (4), so the other tests' Initech keeps its computed health.
    sign_in(page, server.connection_admin_key, then="/admin/accounts/4")
    expect(page.locator("#sentiment-now")).to_contain_text("None in force")
    page.get_by_label("Rating").select_option("red")
    page.get_by_label("Reason").select_option("champion left")
    page.get_by_label("Note (optional)").fill("<b>Jo</b> moved on")
    page.get_by_role("button", name="Set sentiment").click()
    expect(page.get_by_role("status")).to_contain_text("Sentiment stored")
    run_worker(server)
    page.reload()
    expect(page.locator("#sentiment-now")).to_contain_text("Red: champion left, by carol")
    expect(page.locator("#sentiment-now")).to_contain_text("<b>Jo</b> moved on")
    expect(page.locator("#drivers li").first).to_contain_text("CSM: red, champion left")
    expect(page.locator("#events")).to_contain_text(re.compile(r"CSM: red|CSM sentiment"))
