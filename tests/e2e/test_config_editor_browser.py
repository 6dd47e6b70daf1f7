"""The configuration editor in a real browser, as a CS-ops admin uses it: refusals marked on the
input they name and listed by the labels on screen, indicators with their unit, explanation and
share of the weight, percentages typed as percentages, no stale preview after a change is in
force, band edges from the configuration in force, and the page usable at 390 px.

Fixtures from tests/e2e/conftest.py (a seeded site per module, Chromium); screenshots to
test-artifacts/admin/.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
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
from playwright.sync_api import Browser, Page, expect

from signals.registry import SIGNALS
from testkit import RECENCY_ONLY


def on_screen(*crumbs: str) -> str:
    """Where a field is, as the page names it: the legends around it and its label, joined by
    a right-pointing angle quote ("Active use", "Seat utilization", "At risk at")."""
    return " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} ".join(crumbs)


SEAT_AT_RISK = on_screen("Active use", "Seat utilization", "At risk at")
STICKINESS_HEALTHY = on_screen("Active use", "Stickiness (DAU/MAU)", "Healthy at")
STICKINESS_AT_RISK = on_screen("Active use", "Stickiness (DAU/MAU)", "At risk at")


def _api(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}
    )


def _api_config(server: Server) -> dict[str, Any]:
    with _api(server) as api:
        config: dict[str, Any] = api.get("/api/v1/config").json()["config"]
    return config


def _put_config(server: Server, config: dict[str, Any]) -> None:
    with _api(server) as api:
        etag = api.get("/api/v1/config").headers["etag"]
        body = {"config": config, "comment": "test setup"}
        stored = api.put("/api/v1/config", json=body, headers={"If-Match": etag})
        assert stored.status_code == 200, stored.text


def _catalogue(server: Server) -> dict[str, Any]:
    with _api(server) as api:
        answer = api.get("/api/v1/indicators")
    assert answer.status_code == 200, answer.text
    catalogue: dict[str, Any] = answer.json()
    return catalogue


@pytest.fixture(autouse=True)
def _recency_only(server: Server) -> None:
    """Every test starts from the seeded configuration: recency only, bands 40/70."""
    _put_config(server, copy.deepcopy(RECENCY_ONLY))


def test_a_threshold_pair_the_server_refuses_is_marked_on_its_input(
    page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    healthy = page.get_by_label(STICKINESS_HEALTHY)
    expect(page.get_by_label(STICKINESS_AT_RISK)).to_have_value("5")
    healthy.fill("5")  # equal to "at risk at": the server refuses the pair

    for button in ("Preview", "Apply"):  # the preview's refusal, then FastAPI's list
        page.get_by_role("button", name=button).click()
        if button == "Apply":
            page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
        expect(healthy).to_have_attribute("aria-invalid", "true")
        expect(healthy).to_be_focused()
        # Scrolled to, clear of the sticky list of problems above the form.
        listed, marked = page.locator("#error").bounding_box(), healthy.bounding_box()
        assert listed is not None
        assert marked is not None
        assert marked["y"] >= listed["y"] + listed["height"], (listed, marked)
        error_id = (healthy.get_attribute("aria-describedby") or "").split()[-1]
        line = page.locator(f"#{error_id}")
        expect(line).to_have_text("must differ from “At risk at”")
        summary = page.locator("#error")
        expect(summary).to_contain_text(f"{STICKINESS_HEALTHY}: must differ from “At risk at”")
        for leaked in ("Value error", "signals.active_use", "config."):
            expect(summary).not_to_contain_text(leaked)
            expect(line).not_to_contain_text(leaked)
        # Only the input it names: its partner is not marked.
        expect(page.get_by_label(STICKINESS_AT_RISK)).not_to_have_attribute("aria-invalid", "true")
    shot(page, "42-config-errors")

    healthy.fill("20")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("status")).to_contain_text("Preview ready")
    expect(healthy).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#error")).to_be_empty()


def test_a_cross_field_band_refusal_lands_on_an_input_by_its_label(
    page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    page.get_by_label("At risk below score (at_risk_below)").fill("80")
    page.get_by_role("button", name="Preview").click()
    at_risk_below = page.get_by_label("At risk below score (at_risk_below)")
    expect(at_risk_below).to_have_attribute("aria-invalid", "true")
    expect(at_risk_below).to_be_focused()
    expect(page.locator("#error")).to_contain_text(on_screen("Bands", "At risk below score"))
    expect(page.locator("#error")).not_to_contain_text("Value error")


def test_a_number_the_page_cannot_read_is_marked_before_anything_is_sent(
    page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    at_risk = page.get_by_label(SEAT_AT_RISK)
    at_risk.fill("4o")
    sent: list[str] = []
    page.on(
        "request", lambda request: sent.append(request.url) if "/preview" in request.url else None
    )
    page.get_by_role("button", name="Preview").click()
    expect(at_risk).to_have_attribute("aria-invalid", "true")
    expect(at_risk).to_be_focused()
    expect(page.locator("#error")).to_contain_text(f"{SEAT_AT_RISK}: enter a number")
    expect(page.locator("#error")).not_to_contain_text("signals.")
    assert sent == []


def test_percentages_are_typed_as_percentages_and_stored_as_ratios(
    page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    at_risk = page.get_by_label(SEAT_AT_RISK)
    expect(at_risk).to_have_value("40")
    # A change: percent and change indicators take percentages.
    trend = page.get_by_label(on_screen("Active use", "Active users vs prior 30d", "At risk at"))
    expect(trend).to_have_value("-25")
    at_risk.fill("45")
    page.get_by_label("Comment (why this change)").fill("seats: 45%")
    with page.expect_request("**/api/v1/config") as sent:
        page.get_by_role("button", name="Apply").click()
        page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    body = sent.value.post_data_json
    assert body is not None
    seats = body["config"]["signals"]["active_use"]["indicators"]["seat_utilization"]
    assert seats["at_risk"] == pytest.approx(0.45)
    # Untouched values go back exactly as they came.
    assert body["config"]["signals"]["active_use"]["indicators"]["stickiness"] == {
        "at_risk": 0.05, "healthy": 0.2, "weight": 0,
    }  # fmt: skip
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["signals"]["active_use"]["indicators"]["seat_utilization"][
        "at_risk"
    ] == pytest.approx(0.45)
    page.reload()
    expect(page.get_by_label(SEAT_AT_RISK)).to_have_value("45")
    # Nothing edited: the same document, nothing to store.
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Nothing to apply")


def test_each_indicator_shows_its_unit_explanation_and_share_of_the_weight(
    page: Page, server: Server
) -> None:
    config = copy.deepcopy(RECENCY_ONLY)
    config["signals"]["active_use"]["indicators"]["stickiness"]["weight"] = 1
    config["signals"]["active_use"]["indicators"]["seat_utilization"]["weight"] = 2
    _put_config(server, config)
    catalogue = _catalogue(server)
    in_force = _api_config(server)
    sign_in(page, server.admin_key, then="/admin/config")
    units = {"percent": "%", "change": "% change", "days": "days", "count": "count",
             "number": "number"}  # fmt: skip
    for signal in catalogue["signals"]:
        if signal["custom"]:
            continue
        box = page.locator(f"fieldset[data-signal='{signal['name']}']")
        expect(box.locator("legend").first).to_have_text(signal["label"])
        configured = in_force["signals"][signal["name"]]["indicators"]
        for indicator in signal["indicators"]:
            if indicator["name"] not in configured:
                continue  # a custom indicator, or the CSM sentiment: edited elsewhere
            row = box.locator(f"tr[data-indicator='{indicator['name']}']")
            expect(row.locator(".ind-label")).to_have_text(indicator["label"])
            expect(row.locator(".ind-unit")).to_contain_text(units[indicator["unit"]])
            expect(row.locator(".ind-explanation")).to_have_text(indicator["explanation"])
    assert {s.name for s in SIGNALS} <= {s["name"] for s in catalogue["signals"]}

    active_use = page.locator("fieldset[data-signal='active_use']")
    seats = active_use.locator("tr[data-indicator='seat_utilization']")
    # Weights 2, 1 and 1 (recency): seat use carries half of Active use, the only signal.
    expect(seats.locator(".share")).to_have_text("2 of 4 → 50% of Active use, 50% of the score")
    expect(active_use.locator("tr[data-indicator='usage_trend'] .share")).to_have_text(
        "not counted (weight 0)"
    )
    # The share follows the form as it is edited.
    page.get_by_label(on_screen("Active use", "Stickiness (DAU/MAU)", "Weight")).fill("5")
    expect(seats.locator(".share")).to_have_text("2 of 8 → 25% of Active use, 25% of the score")
    expect(active_use.locator(".signal-share")).to_have_text("1 of 1 → 100% of the score")
    # A custom indicator of the signal (weight 1) counts in its total.
    page.get_by_role("button", name="Add a custom indicator").click()
    expect(seats.locator(".share")).to_have_text("2 of 9 → 22% of Active use, 22% of the score")
    expect(active_use.locator(".share-note")).to_have_text(
        "The total weight of Active use includes 1 custom indicator."
    )
    # Another signal in the score: each indicator's part of the score follows.
    page.get_by_label(on_screen("Collaboration", "Weight in the score")).fill("1")
    expect(active_use.locator(".signal-share")).to_have_text("1 of 2 → 50% of the score")
    expect(seats.locator(".share")).to_have_text("2 of 9 → 22% of Active use, 11% of the score")
    stickiness = active_use.locator("tr[data-indicator='stickiness']")
    expect(stickiness.locator(".ind-unit")).to_contain_text("%")
    expect(page.locator("fieldset[data-signal='active_use'] td .unit").first).to_have_text("%")


def test_the_preview_is_gone_once_its_draft_is_in_force(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    preview = page.locator("#preview-result")
    healthy_min = page.get_by_label("Healthy from score (healthy_min)")
    healthy_min.fill("80")
    page.get_by_role("button", name="Preview").click()
    expect(preview.locator("#preview-bands")).to_be_visible()
    # An edit after the preview: it says it is out of date.
    page.get_by_label("Hysteresis, points (hysteresis)").fill("4")
    expect(preview.locator(".stale")).to_contain_text("The form changed after this preview")
    page.get_by_label("Hysteresis, points (hysteresis)").fill("3")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    expect(preview).to_be_hidden()
    expect(page.locator("#preview-bands")).to_have_count(0)

    # After Reload and Roll back too.
    healthy_min.fill("75")
    page.get_by_role("button", name="Preview").click()
    expect(preview.locator("#preview-bands")).to_be_visible()
    page.get_by_role("button", name="Reload").click()
    expect(page.get_by_role("status")).to_contain_text("Reloaded")
    expect(preview).to_be_hidden()
    healthy_min.fill("75")
    page.get_by_role("button", name="Preview").click()
    expect(preview.locator("#preview-bands")).to_be_visible()
    page.locator("#versions-table tbody tr").nth(1).get_by_role("button", name="Roll back").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Rolled back")
    expect(preview).to_be_hidden()


def test_band_edges_shown_are_those_in_force_and_of_the_draft(page: Page, server: Server) -> None:
    config = copy.deepcopy(RECENCY_ONLY)
    config["bands"] = {"healthy_min": 80, "at_risk_below": 30, "hysteresis": 3}
    _put_config(server, config)
    sign_in(page, server.admin_key, then="/admin/config")
    scale = page.locator("#band-scale")
    expect(scale).to_contain_text("At risk below 30")
    expect(scale).to_contain_text("healthy from 80")
    expect(scale.locator("rect.bar-neutral")).to_have_attribute("x", "30")
    expect(scale.locator("rect.bar-neutral")).to_have_attribute("width", "50")
    page.get_by_label("Healthy from score (healthy_min)").fill("60")
    expect(scale).to_contain_text("healthy from 60")
    expect(scale).to_contain_text("Draft")
    expect(scale.locator("rect.bar-neutral")).to_have_attribute("width", "30")
    page.get_by_role("button", name="Preview").click()
    bands = page.locator("#preview-bands")
    expect(bands.locator("tr[data-band='healthy'] th")).to_contain_text("80 or more")
    expect(bands.locator("tr[data-band='healthy'] th")).to_contain_text("60 or more")
    expect(bands.locator("tr[data-band='at_risk'] th")).to_contain_text("below 30")


@pytest.mark.parametrize(("viewport", "width"), [(DESKTOP, 1440), (PHONE, 390)])
def test_the_editor_at_desktop_and_phone_width(
    browser: Browser, server: Server, viewport: Any, width: int
) -> None:
    with open_tab(browser, server, viewport=viewport) as page:
        sign_in(page, server.admin_key, then="/admin/config")
        expect(page.get_by_label(SEAT_AT_RISK)).to_have_value("40")
        expect(page.locator("#versions-table tbody tr").first).to_be_visible()
        assert_no_sideways_scroll(page)
        # Every control has a name.
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('main input, main select, main textarea')]
                .filter((node) => !node.labels?.length && !node.getAttribute('aria-label'))
                .map((node) => node.outerHTML.slice(0, 80))"""
        )
        assert unnamed == []
        shot(page, f"42-config-{width}")
        assert_accessible(page, f"config-{width}")
        page.get_by_label("Healthy from score (healthy_min)").fill("80")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#preview-bands")).to_be_visible()
        assert_no_sideways_scroll(page)
        assert_accessible(page, f"config-preview-{width}")
        page.get_by_label(STICKINESS_HEALTHY).fill("5")
        page.get_by_role("button", name="Preview").click()
        expect(page.get_by_label(STICKINESS_HEALTHY)).to_have_attribute("aria-invalid", "true")
        assert_no_sideways_scroll(page)
        assert_accessible(page, f"config-errors-{width}")
        if width == 390:
            shot(page, "42-config-errors-390")


def test_the_indicator_catalogue_answers_with_units(server: Server) -> None:
    catalogue = _catalogue(server)
    active_use = next(s for s in catalogue["signals"] if s["name"] == "active_use")
    seats = next(i for i in active_use["indicators"] if i["name"] == "seat_utilization")
    assert seats["unit"] == "percent"
    assert re.search(r"\w", seats["explanation"])
