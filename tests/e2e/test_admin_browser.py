"""The admin page in a real browser: Playwright drives Debian's Chromium against the real app
(uvicorn on a free port, a migrated SQLite database with accounts scored by the worker).

Every step saves a screenshot to test-artifacts/admin/. Chromium is /usr/bin/chromium (`make
test` installs it); Playwright's own browser downloads are never used. Without it the tests
skip locally and fail on CI.
"""

from __future__ import annotations

import asyncio
import copy
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sync_rows
from admin_site import ARTIFACTS, BOOK_CHURNED, BOOK_RENEWED, Server, run_worker, shot, sign_in
from playwright.sync_api import Browser, Page, Route, expect
from sqlalchemy import update

from signals.config import DEFAULT_ALERT_RULES
from signals.registry import SIGNALS
from testkit import RECENCY_ONLY
from webhooks.store import analysis_jobs, keys
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import WritebackItem

# --- without a browser: redirects and headers -----------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/admin", "/admin/config", "/admin/calibration", "/admin/alerts", "/admin/sync",
     "/admin/accounts/1"],
)  # fmt: skip
def test_pages_redirect_to_the_login_when_not_signed_in(server: Server, path: str) -> None:
    response = httpx.get(server.url + path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=%2Fadmin")


@pytest.mark.parametrize("path", ["/admin/login", "/admin/static/admin.js", "/admin"])
def test_admin_responses_carry_the_security_headers(server: Server, path: str) -> None:
    response = httpx.get(server.url + path, follow_redirects=False)
    assert response.headers["content-security-policy"] == (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
    )
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "content-security-policy" not in httpx.get(server.url + "/healthz").headers


def test_the_pages_hold_no_inline_script_or_style(server: Server) -> None:
    html = httpx.get(server.url + "/admin/login").text
    assert "<script src=" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "style=" not in html
    assert "<style" not in html


# --- in the browser ---------------------------------------------------------------------------


def test_the_login_form_works_with_the_keyboard(page: Page, server: Server) -> None:
    page.goto("/admin/login")
    # The key field has the focus; before it only the skip link.
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type("chk_not-a-key")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("That key is unknown or revoked.")
    expect(page.get_by_label("API key")).to_be_focused()
    shot(page, "01-login-error")
    page.get_by_label("API key").fill(server.admin_key)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/admin(\?.*)?$"))
    expect(page.locator("#whoami")).to_contain_text("alice")


def test_accounts_table_shows_bands_as_text_sorts_and_filters(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key)
    rows = page.locator("#accounts-table tbody tr")
    expect(rows).to_have_count(5)
    # Most at-risk first; the band is written out, not only coloured.
    expect(rows.first).to_contain_text("Initech")
    expect(rows.first.locator(".band")).to_have_text("At risk")
    expect(page.locator("#accounts-table tr[data-account='1'] .band")).to_have_text("Healthy")
    expect(page.locator("#accounts-table tr[data-account='2'] .band")).to_have_text("Neutral")
    expect(page.locator("#accounts-table tr[data-account='5'] .band")).to_have_text("Unknown")
    expect(page.locator("#accounts-table tr[data-account='1'] svg.sparkline")).to_be_visible()
    # The distribution counts the four scored accounts: 20, 65, 75, 100.
    histogram = page.locator("#histogram")
    expect(histogram).to_have_attribute(
        "aria-label", re.compile(r"20.29: 1, 60.69: 1, 70.79: 1, 90.100: 1")
    )
    expect(page.locator("#histogram g.bucket[data-from='90']")).to_have_attribute("data-count", "1")
    shot(page, "02-accounts")

    # Sorting by a header button, from the keyboard.
    page.get_by_role("button", name="Name").focus()
    page.keyboard.press("Enter")
    expect(rows.first).to_contain_text("Acme")
    expect(page.locator("th[data-sort='name']")).to_have_attribute("aria-sort", "ascending")
    page.keyboard.press("Enter")
    expect(rows.first).to_contain_text("Umbrella")
    expect(page.locator("th[data-sort='name']")).to_have_attribute("aria-sort", "descending")

    # The portfolio's filters apply as they change; the name search is the list's own.
    page.get_by_label("Band", exact=True).select_option("healthy")
    page.get_by_label("Segment", exact=True).select_option("enterprise")
    expect(rows).to_have_count(2)
    expect(page.locator("#accounts-table tbody")).not_to_contain_text("Globex")
    page.get_by_label("Name contains").fill("hoo")
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Hooli")
    shot(page, "03-accounts-filtered")


def test_an_account_shows_indicators_drivers_history_and_alerts(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key)
    page.locator("#accounts-table").get_by_role("link", name="Initech").click()
    expect(page).to_have_url(re.compile(r"/admin/accounts/3$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Initech")
    expect(page.locator("#summary")).to_contain_text("At risk")
    # The indicators by their labels and in their units (tests/e2e/test_account_browser.py
    # covers the rest of the account page).
    indicators = page.locator("#indicator-table tbody[data-signal='active_use']")
    expect(indicators).to_contain_text("Days since last use")
    expect(indicators.locator("tr[data-indicator='recency_days']")).to_contain_text("80 days")
    expect(page.locator("#history-chart canvas").first).to_be_visible()
    expect(page.locator("#drivers li").first).not_to_be_empty()
    expect(page.locator("#coverage")).to_contain_text("% of the configured weight")
    expect(page.locator("#account-alerts")).to_contain_text("entered-at-risk")
    shot(page, "04-account")


def test_a_csm_sets_and_clears_a_sentiment_on_the_account_page(page: Page, server: Server) -> None:
    sign_in(page, server.connection_admin_key, then="/admin/accounts/2")
    expect(page.locator("#sentiment-now")).to_contain_text("None in force")
    page.get_by_label("Rating").select_option("red")
    page.get_by_label("Reason").select_option("champion left")
    page.get_by_label("Note (optional)").fill("<script>alert(1)</script> Jo moved on")
    page.get_by_role("button", name="Set sentiment").click()
    expect(page.get_by_role("status")).to_contain_text("Sentiment stored")
    run_worker(server)
    page.reload()
    expect(page.locator("#drivers li").first).to_contain_text(
        "CSM: red, champion left (carol, until"
    )
    expect(page.locator("#sentiment-now")).to_contain_text("Red: champion left, by carol")
    # A person's words are shown as text, never run.
    expect(page.locator("#sentiment-now")).to_contain_text("<script>alert(1)</script>")
    shot(page, "21-sentiment-set")
    _at_390px(page, "21-sentiment-set")

    page.get_by_role("button", name="Clear sentiment").click()
    expect(page.get_by_role("status")).to_contain_text("Sentiment cleared")
    run_worker(server)
    page.reload()
    expect(page.locator("#sentiment-now")).to_contain_text("None in force")
    page.locator("#sentiment-history-box summary").click()
    expect(page.locator("#sentiment-history tbody tr")).to_have_count(2)
    shot(page, "22-sentiment-history")


def test_a_viewer_sees_the_sentiment_but_no_form(page: Page, server: Server) -> None:
    sign_in(page, server.viewer_key, then="/admin/accounts/2")
    expect(page.locator("#sentiment-now")).not_to_be_empty()
    expect(page.locator("#sentiment-form")).to_be_hidden()


def test_edit_preview_apply_and_roll_back_the_configuration(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    versions = page.locator("#versions-table tbody tr")
    expect(versions).to_have_count(1)
    first_version = versions.first.get_attribute("data-version")
    healthy_min = page.get_by_label("Healthy from score (healthy_min)")
    expect(healthy_min).to_have_value("70")
    shot(page, "05-config")

    healthy_min.fill("80")
    page.get_by_role("button", name="Preview").click()
    bands = page.locator("#preview-bands")
    expect(bands.locator("tr[data-band='healthy'] td.before")).to_have_text("2")
    expect(bands.locator("tr[data-band='healthy'] td.after")).to_have_text("1")
    expect(bands.locator("tr[data-band='neutral'] td.after")).to_have_text("2")
    changed = page.locator("#preview-changed tbody tr")
    expect(changed).to_have_count(1)
    expect(changed.first).to_contain_text("Hooli")
    expect(changed.first).to_contain_text("Healthy")
    expect(changed.first).to_contain_text("Neutral")
    expect(page.locator("#preview-result")).to_contain_text("bands.healthy_min")
    shot(page, "06-preview")

    page.get_by_label("Comment (why this change)").fill("stricter healthy band")
    page.get_by_role("button", name="Apply").click()
    dialog = page.get_by_role("dialog", name="Apply the configuration?")
    expect(dialog).to_contain_text("Every account is rescored")
    shot(page, "06b-confirm-apply")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text("Not applied")
    expect(versions).to_have_count(1)
    page.get_by_role("button", name="Apply").click()
    dialog.get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    expect(versions).to_have_count(2)
    expect(versions.first).to_contain_text("stricter healthy band")
    expect(versions.first).to_contain_text("In force")
    expect(versions.first).to_contain_text("alice")
    expect(healthy_min).to_have_value("80")
    shot(page, "07-applied")

    page.get_by_role("button", name="Apply").click()  # the same again: nothing to store
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Nothing to apply")
    expect(versions).to_have_count(2)

    page.get_by_role("button", name=f"Roll back to version {first_version}").click()
    rollback = page.get_by_role("dialog", name=f"Roll back to version {first_version}?")
    expect(rollback).to_contain_text("Every account is rescored")
    rollback.get_by_role("button", name="Roll back and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Rolled back")
    expect(versions).to_have_count(3)
    expect(versions.first).to_contain_text(f"rollback to version {first_version}")
    expect(versions.first).to_contain_text("In force")
    expect(healthy_min).to_have_value("70")
    shot(page, "08-rolled-back")

    healthy_min.fill("75")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(versions).to_have_count(4)
    page.get_by_role("button", name="Roll back to the defaults").click()
    page.get_by_role("dialog", name="Roll back to the defaults?").get_by_role(
        "button", name="Roll back and rescore"
    ).click()
    expect(page.get_by_role("status")).to_contain_text("equal to the defaults")
    expect(versions.first).to_contain_text("rollback to the defaults")
    expect(healthy_min).to_have_value("70")


def test_a_stale_apply_says_someone_else_changed_it(
    browser: Browser, page: Page, server: Server
) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    expect(page.locator("#versions-table tbody tr").first).to_contain_text("In force")
    # Another admin stores a version meanwhile.
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}
    ) as other:
        current = other.get("/api/v1/config")
        config = current.json()["config"]
        config["bands"]["healthy_min"] = 72  # a real change: an unchanged one stores nothing
        body: dict[str, Any] = {"config": config, "comment": "someone else"}
        stored = other.put(
            "/api/v1/config", json=body, headers={"If-Match": current.headers["etag"]}
        )
        assert stored.status_code == 200, stored.text
    page.get_by_label("Hysteresis, points (hysteresis)").fill("4")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.locator("#error")).to_contain_text("Someone else changed the configuration")
    expect(page.get_by_role("button", name="Reload")).to_be_focused()
    shot(page, "09-conflict")
    page.get_by_role("button", name="Reload").click()
    expect(page.locator("#versions-table tbody tr").first).to_contain_text("someone else")


def test_alerts_can_be_acknowledged(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key, then="/admin/alerts?status=open")
    row = page.locator("#alerts-table tbody tr", has_text="Initech")
    expect(row).to_contain_text("Open")
    shot(page, "10-alerts")
    row.get_by_role("button", name=re.compile("^Acknowledge alert")).click()
    expect(page.get_by_role("status")).to_contain_text("acknowledged")
    expect(page.locator("#alerts-table tbody")).to_contain_text("No alerts match.")
    page.get_by_label("Status").select_option("acknowledged")
    page.get_by_role("button", name="Apply filters").click()
    expect(row).to_contain_text("Acknowledged by alice")
    shot(page, "11-alert-acknowledged")


def test_a_viewer_sees_everything_but_cannot_change_anything(page: Page, server: Server) -> None:
    sign_in(page, server.viewer_key, then="/admin/config")
    expect(page.locator("#role-note")).to_contain_text("viewer key")
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()
    expect(page.locator("button.rollback").first).to_be_disabled()
    expect(page.get_by_role("button", name="Preview")).to_be_enabled()
    shot(page, "12-viewer")


def test_a_connection_admin_changes_only_its_connections_settings(
    page: Page, server: Server
) -> None:
    # Another connection's settings exist: this key must never see them.
    config = _api_config(server)
    config["connections"] = {"elsewhere": {"segments": [SECRET_SEGMENT], "alerts": {}}}
    _put_config(server, config)
    sign_in(page, server.connection_admin_key, then="/admin/config")
    expect(page.locator("#role-note")).to_contain_text("admin key of connection default")
    expect(page.locator("#global-note")).to_contain_text("only a global admin key changes them")
    expect(page.get_by_label("Healthy from score (healthy_min)")).to_be_disabled()
    # The rules of every connection are there to read, not to change.
    expect(page.locator("#rules-editor").get_by_label("Name", exact=True).first).to_be_disabled()
    expect(page.locator("#rules-editor").get_by_label("Name", exact=True).first).to_have_value(
        "entered-at-risk"
    )
    expect(page.locator("#add-rule")).to_be_disabled()
    expect(page.locator("body")).not_to_contain_text("elsewhere")
    expect(page.locator("body")).not_to_contain_text(SECRET_NAME)
    own = page.get_by_role("region", name="Settings of connection default only")
    routing = own.locator("#routing-table")
    expect(routing.locator("tbody tr")).to_have_count(len(DEFAULT_ALERT_RULES))
    shot(page, "12b-connection-admin")

    page.get_by_label("Raise score-drop for connection default").uncheck()
    channels = page.get_by_label("Channels of entered-at-risk for connection default")
    channels.select_option("other")
    offered = page.get_by_role("group", name="Channels of entered-at-risk for connection default")
    # Only the channel the channels file opens to this connection is offered.
    expect(offered.get_by_role("checkbox")).to_have_count(1)
    offered.get_by_label("cs-mail (email)").check()
    page.get_by_label("Comment (why this change)").fill("no score-drop alerts for us")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    versions = page.locator("#versions-table tbody tr")
    expect(versions.first).to_contain_text("no score-drop alerts for us")
    expect(versions.first).to_contain_text("carol")
    stored = _api_config(server)
    assert stored["connections"]["default"]["alerts"] == {
        "score-drop": {"channels": None, "enabled": False},
        "entered-at-risk": {"channels": ["cs-mail"], "enabled": True},
    }
    assert stored["connections"]["elsewhere"]["segments"] == [SECRET_SEGMENT]

    # Its own segment override, with the same widgets a global admin has.
    own.get_by_role("button", name="Add a segment override").click()
    segment = own.locator("fieldset.segment").last
    segment.get_by_label("Name", exact=True).fill("our-enterprise")
    segment.get_by_label("Condition 1: attribute").fill("segment")
    segment.get_by_label("Condition 1: value").fill("enterprise")
    changes = segment.get_by_label("Changes for these accounts")
    changes.fill("{not json")
    page.get_by_role("button", name="Apply").click()
    expect(changes).to_have_attribute("aria-invalid", "true")
    expect(segment.locator(".field-error").filter(has_text="not valid JSON")).to_be_visible()
    # Listed by the labels on screen, not by the configuration path.
    expect(page.locator("#error")).to_contain_text(
        " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} ".join(
            [
                "Segment overrides of connection default only",
                "Segment override our-enterprise",
                "Changes for these accounts: not valid JSON",
            ]
        )
    )
    expect(page.locator("#error")).not_to_contain_text("connections.default")
    changes.fill('{"bands": {"healthy_min": 80}}')
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["connections"]["default"]["segments"] == [
        {
            "name": "our-enterprise",
            "match": {"segment": "enterprise"},
            "changes": {"bands": {"healthy_min": 80}},
        }
    ]
    shot(page, "12c-connection-admin-applied")
    _at_390px(page, "12c-connection-admin-applied")


def test_signing_out_ends_the_session(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    page.goto("/admin")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))


def _seed_sync(server: Server) -> tuple[str, str]:
    """Write-backs in every state and dead letters for connections of their own ("sync-*": the
    other tests' accounts stay as they are), a CRM error text carrying markup, and a viewer key
    for the connection that needs attention and one for a connection with nothing stuck."""

    async def seed() -> tuple[str, str]:
        engine = create_engine(server.database_url)
        sessions = create_session_factory(engine)
        try:
            ids = await sync_rows.seed(sessions, prefix="sync-")
            async with sessions() as session, session.begin():
                await session.execute(
                    update(WritebackItem)
                    .where(WritebackItem.account_id == ids["default", "6"])
                    .values(last_error=HOSTILE_ERROR)
                )
                now = datetime.now(UTC)
                _, stuck = await keys.create(
                    session, name="sync-viewer", role="viewer", connection="sync-default", now=now
                )
                _, calm = await keys.create(
                    session, name="calm-viewer", role="viewer", connection="sync-calm", now=now
                )
            return stuck, calm
        finally:
            await engine.dispose()

    # Playwright's sync API runs an event loop in this thread: the seed gets a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, seed()).result()


HOSTILE_ERROR = '<img src=x onerror="document.title=1">record 6 was deleted in the CRM'


def test_the_sync_panel_shows_what_is_stuck_and_how_to_retry_it(page: Page, server: Server) -> None:
    stuck, calm = _seed_sync(server)
    sign_in(page, stuck, then="/admin/sync")
    expect(page.get_by_role("link", name="Sync")).to_have_attribute("aria-current", "page")
    card = page.get_by_role("region", name=re.compile("Connection sync-default"))
    expect(card.locator(".sync-state")).to_have_text("Needs attention")
    facts = card.locator("dl")
    expect(facts).to_contain_text("Pending3 (1 being sent)")
    expect(facts).to_contain_text("Failing (retried)2")
    expect(facts).to_contain_text("Failed (refused by the CRM)1")
    expect(facts).to_contain_text("Dead letters2")
    expect(facts).to_contain_text("Last success")
    # The CRM's text is shown as text: the markup is visible, nothing of it runs.
    expect(card.locator(".crm-text").last).to_have_text(HOSTILE_ERROR)
    expect(card.locator("img")).to_have_count(0)
    expect(card.locator(".crm-text").first).to_have_text("HTTP 503 Service Unavailable")
    commands = card.locator(".sync-commands code")
    expect(commands).to_have_text(
        [
            "crm-health writeback retry --connection sync-default --failed",
            "crm-health writeback retry --connection sync-default --failing",
            "crm-health dead-letters",
            "crm-health replay --all",
        ]
    )
    expect(page.locator("#sync-inbox")).to_contain_text("dead letters")
    shot(page, "09-sync-needs-attention")
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("status")).to_have_text("Sync status refreshed.")
    assert page.title() == "Sync · crm-health admin"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    sign_in(page, calm, then="/admin/sync")
    card = page.get_by_role("region", name=re.compile("Connection sync-calm"))
    expect(card.locator(".sync-state")).to_have_text("OK")
    expect(card.locator("dl")).to_contain_text("Last successnever")
    expect(card.locator(".sync-commands")).to_have_count(0)
    shot(page, "10-sync-ok")


# --- the rule and segment editors -------------------------------------------------------------

SECRET_NAME = "elsewhere-vip"
SECRET_SEGMENT: dict[str, Any] = {"name": SECRET_NAME, "match": {"tier": "vip"}, "changes": {}}


def _api(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}
    )


def _api_config(server: Server) -> dict[str, Any]:
    with _api(server) as api:
        config: dict[str, Any] = api.get("/api/v1/config").json()["config"]
    return config


def _job_result(server: Server, page: Page, where: str) -> dict[str, Any]:
    """The result of the job the calibration page shows in `where`, as the API answers it:
    the book's outcomes are dated from today, so the figures move with the clock (the day an
    outcome falls on, and so its facts `days` before it) and the page is checked against the
    API rather than against fixed numbers."""
    state = page.locator(f"{where} .job-state").inner_text()
    found = re.search(r"\(job (\d+)", state)
    assert found, state
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.book_admin_key}"}
    ) as api:
        job = api.get(f"/api/v1/config/jobs/{found.group(1)}").json()
    result: dict[str, Any] = job["result"]
    return result


def _put_config(server: Server, config: dict[str, Any]) -> None:
    with _api(server) as api:
        etag = api.get("/api/v1/config").headers["etag"]
        body = {"config": config, "comment": "test setup"}
        stored = api.put("/api/v1/config", json=body, headers={"If-Match": etag})
        assert stored.status_code == 200, stored.text


def _at_390px(page: Page, name: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, f"{name}-390px")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_an_admin_adds_a_rule_previews_it_per_rule_and_applies_it(
    page: Page, server: Server
) -> None:
    _put_config(server, dict(RECENCY_ONLY))
    sign_in(page, server.admin_key, then="/admin/config")
    rules = page.locator("#rules-editor fieldset.rule")
    defaults = len(DEFAULT_ALERT_RULES)
    expect(rules).to_have_count(defaults)
    page.get_by_role("button", name="Add an alert rule").click()
    rule = rules.last
    expect(rule.get_by_label("Name", exact=True)).to_be_focused()
    rule.get_by_label("Name", exact=True).fill("neutral-entered")
    expect(rule.locator("legend").first).to_have_text("Rule neutral-entered")
    # Only the fields of the chosen kind are shown.
    expect(rule.get_by_label("Band entered")).to_be_visible()
    expect(rule.get_by_label("Drop of at least (points)")).to_be_hidden()
    rule.get_by_label("Raised when").select_option("score_drop")
    expect(rule.get_by_label("Drop of at least (points)")).to_be_visible()
    expect(rule.get_by_label("Band entered")).to_be_hidden()
    rule.get_by_label("Raised when").select_option("indicator_at_risk")
    expect(rule.get_by_label("Indicator")).to_be_visible()
    # Every indicator of every signal can be watched.
    indicators = sum(len(signal.indicators) for signal in SIGNALS)
    expect(rule.get_by_label("Indicator").locator("option")).to_have_count(indicators)
    rule.get_by_label("Raised when").select_option("band_entered")
    rule.get_by_label("Band entered").select_option("neutral")
    expect(rule.get_by_label("cs-mail (email)")).to_be_visible()
    expect(rule.get_by_label("leads-mail (email)")).to_be_visible()

    with page.expect_request("**/api/v1/config/preview") as sent:
        page.get_by_role("button", name="Preview").click()
    # Severity left at its default is not sent: the server's default for the kind applies.
    sent_body = sent.value.post_data_json
    assert sent_body is not None
    sent_rule = sent_body["config"]["alerts"][-1]
    assert "severity" not in sent_rule
    assert (sent_rule["when"], sent_rule["band"], sent_rule["indicator"]) == (
        "band_entered", "neutral", None,
    )  # fmt: skip
    # Globex (65) is neutral: the new rule would raise one alert there, the others none new.
    per_rule = page.locator("#preview-rules tr[data-rule='neutral-entered']")
    expect(per_rule.locator("td.total")).to_have_text("1")
    expect(per_rule).to_contain_text("Globex")
    expect(page.locator("#preview-rules tbody tr")).to_have_count(defaults + 1)
    expect(rule.locator(".rule-preview")).to_have_text("Preview: 1 new alert on 1 account: Globex.")
    shot(page, "13-rule-preview")
    _at_390px(page, "13-rule-preview")

    # A name the server refuses: the message lands on the input it is about.
    page.get_by_role("button", name="Add an alert rule").click()
    bad = rules.last
    bad.get_by_label("Name", exact=True).fill("Not A Name")
    page.get_by_role("button", name="Preview").click()
    expect(bad.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    name_error = bad.get_by_label("Name", exact=True).get_attribute("aria-describedby")
    assert name_error is not None
    expect(page.locator(f"#{name_error.split()[-1]}")).to_contain_text("should match pattern")
    expect(page.locator("#error")).to_contain_text(
        " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} ".join(
            ["Alert rules", "Rule Not A Name", "Name: String should match pattern"]
        )
    )
    expect(page.locator("#error")).not_to_contain_text(f"alerts.{defaults + 1}.name")
    shot(page, "14-rule-error")
    bad.get_by_role("button", name="Remove rule Not A Name").click()
    expect(rules).to_have_count(defaults + 1)

    page.get_by_label("Comment (why this change)").fill("tell us about neutral accounts")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    stored = {rule["name"]: rule for rule in _api_config(server)["alerts"]}
    assert stored["neutral-entered"]["when"] == "band_entered"
    assert stored["neutral-entered"]["band"] == "neutral"
    assert stored["neutral-entered"]["enabled"] is True
    # The untouched rules are stored as they were.
    assert stored["entered-at-risk"]["notify_recovered"] is True
    expect(rules).to_have_count(defaults + 1)


def test_an_admin_edits_a_segment_override(page: Page, server: Server) -> None:
    config = dict(RECENCY_ONLY)
    config["segments"] = [
        {"name": "big", "match": {"segment": "enterprise"}, "changes": {"bands": {"hysteresis": 3}}}
    ]
    _put_config(server, config)
    sign_in(page, server.admin_key, then="/admin/config")
    segment = page.locator("fieldset.segments-editor").first.locator("fieldset.segment")
    expect(segment).to_have_count(1)
    expect(segment.get_by_label("Name", exact=True)).to_have_value("big")
    expect(segment.get_by_label("Condition 1: attribute")).to_have_value("segment")
    changes = segment.get_by_label("Changes for these accounts")
    # Hooli (enterprise, 75) is no longer healthy when the segment's healthy band starts at 80.
    changes.fill('{"bands": {"healthy_min": 80}}')
    segment.get_by_role("button", name="Add a condition").click()
    segment.get_by_label("Condition 2: attribute").fill("owner")
    segment.get_by_label("Condition 2: value").fill("carol")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-changed tbody tr")).to_have_count(1)
    expect(page.locator("#preview-changed")).to_contain_text("Hooli")

    # A value out of range: the server names segments.0.changes.bands.healthy_min.
    changes.fill('{"bands": {"healthy_min": 200}}')
    page.get_by_role("button", name="Preview").click()
    expect(changes).to_have_attribute("aria-invalid", "true")
    expect(segment.locator(".field-error").filter(has_text="bands.healthy_min")).to_be_visible()
    shot(page, "15-segment-error")
    _at_390px(page, "15-segment-error")

    changes.fill('{"bands": {"healthy_min": 80}}')
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["segments"] == [
        {
            "name": "big",
            "match": {"segment": "enterprise", "owner": "carol"},
            "changes": {"bands": {"healthy_min": 80}},
        }
    ]
    shot(page, "16-segment-applied")

    # Removing a condition and then the override itself.
    segment.get_by_role("button", name="Remove condition 2").click()
    expect(segment.get_by_label("Condition 2: attribute")).to_have_count(0)
    segment.get_by_role("button", name="Remove segment override big").click()
    expect(segment).to_have_count(0)
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["segments"] == []


def test_an_admin_marks_key_features(page: Page, server: Server) -> None:
    sign_in(page, server.admin_key, then="/admin/config")
    features = page.get_by_label("Key features, one per line (key_features)")
    expect(features).to_have_value("")
    # The same feature twice (case and spaces aside): the server refuses it on the field.
    features.fill("Report Exported\n  report  exported ")
    page.get_by_role("button", name="Preview").click()
    expect(features).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#product .field-error")).to_contain_text("listed twice")
    shot(page, "17-key-features-error")

    features.fill("Report Exported\n\nDashboard Shared\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-result")).to_contain_text("product.key_features")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["product"] == {
        "key_features": ["Report Exported", "Dashboard Shared"]
    }
    expect(features).to_have_value("Report Exported\nDashboard Shared")
    shot(page, "18-key-features-applied")


def test_an_admin_sets_what_a_csm_sentiment_does(page: Page, server: Server) -> None:
    _put_config(server, dict(RECENCY_ONLY))
    sign_in(page, server.admin_key, then="/admin/config")
    box = page.locator("#sentiment-settings")
    box.get_by_label("What a sentiment does (mode)").select_option("cap")
    reasons = box.get_by_label("Reasons a CSM picks from, one per line (reasons)")
    reasons.fill("champion left\nChampion Left\nbudget cut")
    page.get_by_role("button", name="Preview").click()
    expect(reasons).to_have_attribute("aria-invalid", "true")
    expect(box.locator(".field-error").filter(has_text="listed twice")).to_be_visible()
    reasons.fill("champion left\nbudget cut")
    box.get_by_label("Holds for, days (default_days)").fill("14")
    box.get_by_label("CSMs set it on the CRM record too (crm_field)").check()
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    stored = _api_config(server)["sentiment"]
    assert (stored["mode"], stored["reasons"], stored["default_days"], stored["crm_field"]) == (
        "cap", ["champion left", "budget cut"], 14, True,
    )  # fmt: skip
    box.screenshot(path=str(ARTIFACTS / "23-sentiment-settings.png"))
    _put_config(server, dict(RECENCY_ONLY))


def test_an_admin_adds_a_custom_signal_and_indicator(page: Page, server: Server) -> None:
    _put_config(server, dict(RECENCY_ONLY))
    sign_in(page, server.admin_key, then="/admin/config")
    signals = page.locator("#custom-signals")
    signals.get_by_role("button", name="Add a custom signal").click()
    signal = signals.locator("fieldset.custom-signal")
    signal.get_by_label("Name", exact=True).fill("adoption")
    signal.get_by_label("Label", exact=True).fill("Adoption")
    signal.get_by_label("Weight in the composite").fill("0.5")

    indicators = page.locator("#custom-indicators")
    indicators.get_by_role("button", name="Add a custom indicator").click()
    card = indicators.locator("fieldset.custom-indicator")
    card.get_by_label("Name", exact=True).fill("exporters")
    card.get_by_label("Label", exact=True).fill("People exporting reports (30d)")
    card.get_by_label("Signal", exact=True).select_option("adoption")
    card.get_by_label("Measure", exact=True).select_option("users_per_seat")
    card.get_by_label("At risk at").fill("0.1")
    card.get_by_label("Healthy at").fill("0.5")
    # No features: the server refuses it, marked on the field.
    page.get_by_role("button", name="Preview").click()
    features = card.get_by_label("Features")
    expect(features).to_have_attribute("aria-invalid", "true")
    expect(card.locator(".field-error").filter(has_text="at least 1 item")).to_be_visible()
    shot(page, "19-custom-indicator-error")

    features.fill("Report Exported, Dashboard Shared")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-result")).to_contain_text("custom_indicators.0")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    stored = _api_config(server)
    assert stored["custom_signals"] == [{"name": "adoption", "label": "Adoption", "weight": 0.5}]
    [indicator] = stored["custom_indicators"]
    assert indicator["signal"] == "adoption"
    assert indicator["source"] == {
        "kind": "product_events",
        "features": ["Report Exported", "Dashboard Shared"],
        "aggregation": "users_per_seat",
        "days": 30,
    }
    expect(card.get_by_label("Features")).to_have_value("Report Exported, Dashboard Shared")

    # A second one from survey answers: its own fields, its own errors.
    indicators.get_by_role("button", name="Add a custom indicator").click()
    effort = indicators.locator("fieldset.custom-indicator").nth(1)
    effort.get_by_label("Name", exact=True).fill("effort")
    effort.get_by_label("Label", exact=True).fill("Customer effort (90d)")
    effort.get_by_label("Source").select_option("survey")
    expect(effort.get_by_label("Features")).to_be_hidden()
    effort.get_by_label("Survey").select_option("csat")
    effort.get_by_label("Measure of the answers").select_option("nps")
    effort.get_by_label("At risk at").fill("5")
    effort.get_by_label("Healthy at").fill("2")
    page.get_by_role("button", name="Preview").click()
    expect(effort.get_by_label("Measure of the answers")).to_have_attribute("aria-invalid", "true")
    expect(effort.locator(".field-error").filter(has_text="nps is for NPS answers")).to_be_visible()
    effort.get_by_label("Survey").select_option("ces")
    effort.get_by_label("Measure of the answers").select_option("mean")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["custom_indicators"][1]["source"] == {
        "kind": "survey", "survey": "ces", "aggregation": "mean", "days": 90, "min_responses": 3,
    }  # fmt: skip

    # A third from a field of the CRM record, named per CRM.
    indicators.get_by_role("button", name="Add a custom indicator").click()
    qbr = indicators.locator("fieldset.custom-indicator").nth(2)
    qbr.get_by_label("Name", exact=True).fill("since_qbr")
    qbr.get_by_label("Label", exact=True).fill("Days since the last business review")
    qbr.get_by_label("Source").select_option("crm_property")
    expect(qbr.get_by_label("Survey")).to_be_hidden()
    qbr.get_by_label("What of the field").select_option("days_since")
    qbr.get_by_label("At risk at").fill("120")
    qbr.get_by_label("Healthy at").fill("45")
    page.get_by_role("button", name="Preview").click()
    expect(qbr.locator(".field-error").filter(has_text="at least one CRM")).to_be_visible()
    qbr.get_by_label("Field in HubSpot").fill("last qbr")
    page.get_by_role("button", name="Preview").click()
    expect(qbr.get_by_label("Field in HubSpot")).to_have_attribute("aria-invalid", "true")
    qbr.get_by_label("Field in HubSpot").fill("last_qbr_date")
    qbr.get_by_label("Field in Salesforce").fill("Last_QBR__c")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    assert _api_config(server)["custom_indicators"][2]["source"] == {
        "kind": "crm_property", "hubspot": "last_qbr_date", "salesforce": "Last_QBR__c",
        "dynamics": None, "value": "days_since",
    }  # fmt: skip
    qbr.screenshot(path=str(ARTIFACTS / "20c-crm-property-indicator.png"))
    shot(page, "20-custom-indicator-applied")
    page.locator("#global-editors").screenshot(path=str(ARTIFACTS / "20b-custom-editors.png"))
    _at_390px(page, "20-custom-indicator-applied")


def test_rule_and_account_names_are_shown_as_text(page: Page, server: Server) -> None:
    hostile = '<img src=x onerror="document.title=1">'
    config = dict(RECENCY_ONLY)
    config["segments"] = [{"name": hostile, "match": {"segment": hostile}, "changes": {}}]
    _put_config(server, config)
    sign_in(page, server.admin_key, then="/admin/config")
    segment = page.locator("fieldset.segments-editor").first.locator("fieldset.segment")
    expect(segment.locator("legend").first).to_have_text(f"Segment override {hostile}")
    expect(page.locator("#global-editors img")).to_have_count(0)
    assert page.title() == "Configuration · crm-health admin"


# --- the calibration page ---------------------------------------------------------------------

CALIBRATION_HOSTILE = '<img src=x onerror="document.title=1">QBR'
# The book scored on recency and seat use, the latter light and the wrong way round (healthy
# with few seats in use): the backtest marks it reversed and the suggestion turns it. A custom
# indicator without data carries a label with markup: shown as text.
CALIBRATED: dict[str, Any] = copy.deepcopy(RECENCY_ONLY)
CALIBRATED["signals"]["active_use"]["indicators"]["seat_utilization"] = {
    "at_risk": 0.7, "healthy": 0.4, "weight": 0.25,
}  # fmt: skip
CALIBRATED["custom_indicators"] = [
    {
        "name": "since_qbr",
        "label": CALIBRATION_HOSTILE,
        "signal": "active_use",
        "source": {"kind": "crm_property", "hubspot": "last_qbr_date", "value": "days_since"},
        "at_risk": 120,
        "healthy": 45,
        "weight": 1,
        "optional": True,
    }
]
SEAT_UTILIZATION = "tr[data-indicator='active_use.seat_utilization']"


def _hold_jobs_running(page: Page) -> dict[str, bool]:
    """Answers of GET /api/v1/config/jobs/{id} as if the job were half way (the real ones
    finish within a second) until `held["on"]` is set False."""
    held = {"on": True}

    def answer(route: Route) -> None:
        response = route.fetch()
        job = response.json()
        if held["on"]:
            total = job["total"] or 180
            job.update(status="running", done=total // 2, total=total, result=None)
            job.update(finished_at=None)
        route.fulfill(response=response, json=job)

    page.route(re.compile(r".*/api/v1/config/jobs/\d+$"), answer)
    return held


def test_a_backtest_shows_its_progress_then_the_auc_the_roc_curve_and_the_indicators(
    page: Page, server: Server
) -> None:
    _put_config(server, CALIBRATED)
    held = _hold_jobs_running(page)
    sign_in(page, server.book_admin_key, then="/admin/calibration")
    expect(page.get_by_role("link", name="Calibration")).to_have_attribute("aria-current", "page")
    horizons = page.get_by_label("Horizons, days before each outcome")
    expect(horizons).to_have_value("30, 60, 90")
    horizons.fill("30, 90")
    page.get_by_role("button", name="Run the backtest").click()
    state = page.locator("#backtest-job .job-state")
    expect(state).to_contain_text("Backtest running (job")
    expect(state).to_have_attribute("aria-live", "polite")
    progress = page.get_by_role("progressbar", name="Backtest: cases read")
    expect(progress).to_have_attribute("max", str(2 * (BOOK_CHURNED + BOOK_RENEWED)))
    expect(page.locator("#backtest-job")).to_contain_text("60 of 120 cases read")
    expect(page.get_by_role("button", name="Run the backtest")).to_be_disabled()
    # A reload mid-run shows the same job's progress again, and the horizons it was run with.
    page.reload()
    expect(page.locator("#backtest-job")).to_contain_text("60 of 120 cases read")
    expect(horizons).to_have_value("30, 90")
    held["on"] = False

    expect(state).to_contain_text("Backtest done (job")
    expect(progress).to_be_hidden()
    rows = page.locator("#auc-table tbody tr")
    expect(rows).to_have_count(2)
    thirty = _job_result(server, page, "#backtest-job")["horizons"][0]
    interval = thirty["auc_interval"]
    expect(rows.first.locator("th, td")).to_have_text(
        [
            "30 days",
            f"{thirty['auc']:.2f}",
            f"{interval['low']:.2f} to {interval['high']:.2f}",
            str(BOOK_CHURNED),
            str(BOOK_RENEWED),
            "60",
        ]
    )
    expect(page.locator("#backtest-result")).to_contain_text(
        "a renewed account scored above a churned one"
    )
    detail = page.locator("#horizon-detail")
    expect(detail.locator("h3")).to_have_text("90 days before the outcome")
    expect(detail.locator(".auc-words")).to_contain_text("0.5 is chance. 95% interval")
    roc = page.get_by_role("img", name="ROC curve of the score, 90 days before the outcome")
    expect(roc.locator("path.roc-line")).to_have_attribute("d", re.compile(r"^M"))
    expect(roc.locator("line.chance")).to_have_count(1)
    power = page.get_by_role("figure", name="Power of each indicator, 90 days before the outcome")
    expect(power.locator("li.indicator")).to_have_count(2)
    seats = power.locator("li[data-indicator='active_use.seat_utilization']")
    expect(seats).to_have_class(re.compile("reversed"))
    expect(seats.locator(".power-label")).to_have_text("Active use: seat_utilization — reversed")
    expect(seats.locator("svg.power-bar rect.bar-reversed")).to_have_count(1)
    expect(power.locator("li[data-indicator='active_use.recency_days']")).not_to_have_class(
        re.compile("reversed")
    )
    expect(power.locator("figcaption")).to_contain_text("indicators without data")
    # The custom indicator without data is named by its label, as text.
    expect(power.locator("#power-table")).to_contain_text(CALIBRATION_HOSTILE)
    bands = detail.locator("#bands-table tbody tr")
    expect(bands).to_have_count(5)
    expect(detail.locator("#bands-table thead")).to_contain_text("Share of churn")
    expect(detail.locator("#bands-table tr[data-band='healthy'] .band")).to_have_text("Healthy")
    shot(page, "30-calibration-backtest")
    _at_390px(page, "30-calibration-backtest")

    page.get_by_label("Horizon shown below").select_option("30")
    expect(detail.locator("h3")).to_have_text("30 days before the outcome")
    expect(page.get_by_role("img", name=re.compile("ROC curve .* 30 days"))).to_be_visible()
    # A reload once done shows the result again.
    page.reload()
    expect(page.locator("#auc-table tbody tr")).to_have_count(2)
    expect(page.locator("main img")).to_have_count(0)


def test_a_suggestion_stands_beside_the_configuration_and_is_previewed_there(
    page: Page, server: Server
) -> None:
    _put_config(server, CALIBRATED)
    sign_in(page, server.book_admin_key, then="/admin/calibration")
    expect(page.get_by_label("Horizon, days before each outcome")).to_have_value("90")
    page.get_by_label("At least this many churned (and renewed) outcomes").fill("20")
    page.get_by_role("button", name="Suggest").click()
    expect(page.locator("#suggest-job .job-state")).to_contain_text("Suggestion done (job")
    result = page.locator("#suggest-result")
    expect(result.locator(".verdict")).to_contain_text("The suggestion ranks better")
    side = page.locator("#suggest-auc")
    expect(side.locator("thead")).to_contain_text("In force")
    expect(side.locator("thead")).to_contain_text("Suggested")
    cross_validated = _job_result(server, page, "#suggest-job")["cross_validation"]
    expect(side.locator("td.current")).to_have_text(f"{cross_validated['current_auc']:.2f}")
    seats = page.locator(f"#suggest-indicators {SEAT_UTILIZATION}")
    # At risk in force, then suggested: the medians of the churned and the renewed cases.
    expect(seats.locator("td").nth(0)).to_have_text("0.7")
    expect(seats.locator("td").nth(1)).to_contain_text("0.2")
    expect(seats.locator("td.changed").first).to_contain_text("(changed)")
    expect(seats).to_contain_text("medians: churned 0.2, renewed 0.5")
    expect(page.locator("#suggest-indicators")).to_contain_text(CALIBRATION_HOSTILE)
    active_use = page.locator("#suggest-signals tr[data-signal='active_use']")
    expect(active_use).to_contain_text("1 (100%)")
    expect(page.locator("main img")).to_have_count(0)
    shot(page, "31-calibration-suggestion")
    _at_390px(page, "31-calibration-suggestion")

    page.get_by_role("button", name="Preview this suggestion").click()
    expect(page).to_have_url(re.compile(r"/admin/config$"))
    note = page.locator("#draft-note")
    expect(note).to_contain_text("Draft from the calibration page: the thresholds and weights")
    to_preview = note.get_by_role("link", name="The preview")
    expect(to_preview).to_have_attribute("href", "#preview-result")
    # Seat utilization is a percentage on the page (0.2 in the configuration).
    at_risk = page.get_by_label(
        " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} ".join(
            ["Active use", "Seat utilization", "At risk at"]
        )
    )
    expect(at_risk).to_have_value("20")
    preview = page.locator("#preview-result")
    expect(preview).to_contain_text("signals.active_use.indicators.seat_utilization.at_risk")
    expect(preview.locator("#preview-bands")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Preview ready: nothing was changed.")
    comment = page.get_by_label("Comment (why this change)")
    expect(comment).to_have_value(re.compile(r"^Calibration: thresholds and weights suggested"))
    # Taken once: the hand-over is gone from the tab, and nothing was applied.
    assert page.evaluate("sessionStorage.getItem('crm-health.calibration.suggestion')") is None
    assert _api_config(server)["signals"]["active_use"]["indicators"]["seat_utilization"][
        "at_risk"
    ] == pytest.approx(0.7)
    shot(page, "32-calibration-preview")
    preview.screenshot(path=str(ARTIFACTS / "32b-calibration-preview-result.png"))
    _at_390px(page, "32-calibration-preview")

    recency = page.get_by_label(
        " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} ".join(
            ["Active use", "Days since last use", "At risk at"]
        )
    )
    recency_at_risk = recency.input_value()
    # Applied like any change: confirmed, with the comment, under the version it was loaded from.
    comment.fill("seat use the right way round, from 60 outcomes")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("dialog").get_by_role("button", name="Store and rescore").click()
    expect(page.get_by_role("status")).to_contain_text("Applied: version")
    expect(page.locator("#draft-note")).to_be_hidden()
    stored = _api_config(server)["signals"]["active_use"]["indicators"]
    assert (stored["seat_utilization"]["at_risk"], stored["seat_utilization"]["healthy"]) == (
        pytest.approx(0.2),
        pytest.approx(0.5),
    )
    # The churned cases' median days since the last use (fractional: measured to the time of day).
    assert 5 < stored["recency_days"]["at_risk"] < 30
    assert stored["recency_days"]["at_risk"] == pytest.approx(float(recency_at_risk))
    expect(page.locator("#versions-table tbody tr").first).to_contain_text("seat use the right way")
    page.reload()
    expect(page.locator("#draft-note")).to_be_hidden()
    expect(page.locator("#preview-result")).to_be_hidden()


def test_too_few_outcomes_is_a_refusal_in_words(page: Page, server: Server) -> None:
    sign_in(page, server.book_admin_key, then="/admin/calibration")
    # The defaults: 90 days, at least 30 churned; the book has 24.
    page.get_by_role("button", name="Suggest").click()
    refusal = page.locator("#suggest-refusal")
    expect(refusal).to_contain_text(
        "No suggestion. 24 churned outcomes; at least 30 are needed to suggest anything"
    )
    expect(refusal).to_contain_text(f"{BOOK_CHURNED} churned and {BOOK_RENEWED} renewed")
    expect(page.get_by_role("button", name="Preview this suggestion")).to_have_count(0)
    shot(page, "33-calibration-refusal")


def test_a_viewer_runs_a_backtest_and_a_suggestion_and_previews_it(
    page: Page, server: Server
) -> None:
    sign_in(page, server.book_viewer_key, then="/admin/calibration")
    expect(page.locator("#role-note")).to_contain_text("viewer key")
    page.get_by_label("Horizons, days before each outcome").fill("60")
    page.get_by_role("button", name="Run the backtest").click()
    expect(page.locator("#auc-table tbody tr")).to_have_count(1)
    expect(page.locator("#backtest-job .job-state")).to_contain_text("by vera")
    page.get_by_label("At least this many churned (and renewed) outcomes").fill("20")
    page.get_by_role("button", name="Suggest").click()
    expect(page.locator("#suggest-auc")).to_be_visible()
    page.get_by_role("button", name="Preview this suggestion").click()
    expect(page.locator("#draft-note")).to_contain_text("Draft from the calibration page")
    expect(page.locator("#preview-bands")).to_be_visible()
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()


def test_a_horizon_the_server_refuses_is_marked_on_its_field(page: Page, server: Server) -> None:
    sign_in(page, server.book_admin_key, then="/admin/calibration")
    horizons = page.get_by_label("Horizons, days before each outcome")
    horizons.fill("30, soon")
    page.get_by_role("button", name="Run the backtest").click()
    expect(horizons).to_have_attribute("aria-invalid", "true")
    horizons.fill("30, 400")
    page.get_by_role("button", name="Run the backtest").click()
    expect(page.locator("#error")).to_contain_text("horizons.1")
    expect(horizons).to_have_attribute("aria-invalid", "true")


def test_a_failed_job_says_why(page: Page, server: Server) -> None:
    def failed(route: Route) -> None:
        response = route.fetch()
        job = response.json()
        job.update(status="failed", result=None, error=analysis_jobs.INTERRUPTED)
        route.fulfill(response=response, json=job)

    page.route(re.compile(r".*/api/v1/config/jobs/\d+$"), failed)
    sign_in(page, server.book_viewer_key, then="/admin/calibration")
    page.get_by_role("button", name="Run the backtest").click()
    expect(page.locator("#backtest-job .job-state")).to_have_text(
        re.compile(r"^Backtest failed \(job \d+, by vera\): interrupted: the process running it")
    )
    expect(page.locator("#backtest-result")).to_be_empty()
    expect(page.get_by_role("button", name="Run the backtest")).to_be_enabled()
