"""`crm-health demo`: sandbox + service on real ports, 180 days of sample activity replayed
through the API, health written into every sample company, archetypes in their bands, renewal
outcomes stored for backtests."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.base import HEALTH_FIELDS
from webhooks.cli import cli
from webhooks.demo import (
    BANDS,
    NOT_A_CUSTOMER,
    DemoResult,
    fresh_database_url,
    print_summary,
    run_demo,
)
from webhooks.demo_data import ARCHETYPES, RENEWAL_DAYS, decides_renewal, sample_companies

ACCOUNTS = 40
SEED = 7
DEMO_ACCOUNTS = 300  # what `crm-health demo` replays by default (with the seed SEED)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[DemoResult, str]:
    """One demo run shared by the tests below (it takes several seconds)."""
    database = tmp_path_factory.mktemp("demo") / "demo.db"
    capture = _Capture()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", capture)
        result = asyncio.run(
            run_demo(
                port=_free_port(),
                sandbox_port=_free_port(),
                database_url=fresh_database_url(str(database)),
                accounts=ACCOUNTS,
                seed=SEED,
                keep_serving=False,
            )
        )
    return result, capture.text


class _Capture:
    """A non-terminal standard output that keeps what the demo prints."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _bands(result: DemoResult, archetype: str) -> Counter[str]:
    return result.by_archetype[archetype]


def test_sample_data_is_deterministic_for_a_seed() -> None:
    assert sample_companies(20, seed=3) == sample_companies(20, seed=3)
    assert sample_companies(20, seed=3) != sample_companies(20, seed=4)


def test_sample_holds_every_archetype_in_proportion() -> None:
    counts = Counter(company.archetype for company in sample_companies(ACCOUNTS, seed=SEED))
    cycle = sum(archetype.weight for archetype in ARCHETYPES.values())
    assert counts == {
        name: ACCOUNTS // cycle * archetype.weight for name, archetype in ARCHETYPES.items()
    }


def test_sample_activity_spans_the_whole_period() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for company in sample_companies(10, seed=SEED):
        usage = [
            datetime.fromisoformat(str(e["at"]))
            for e in company.native_events("1", now)
            if e["type"] == "usage"
        ]
        if company.archetype != "fading":
            assert min(usage) < now - timedelta(days=170), company
            assert max(usage) > now - timedelta(days=3), company


def _renewals(count: int, now: datetime) -> dict[str, Counter[str]]:
    """{archetype: {outcome: companies}} of the sample's renewal decisions."""
    decided: dict[str, Counter[str]] = {name: Counter() for name in ARCHETYPES}
    for index, company in enumerate(sample_companies(count, seed=SEED)):
        if decides_renewal(index):
            event = company.renewal(str(index), now)
            assert now - timedelta(days=RENEWAL_DAYS) <= datetime.fromisoformat(str(event["at"]))
            assert datetime.fromisoformat(str(event["at"])) < now
            decided[company.archetype][str(event["outcome"])] += 1
    return decided


def test_the_demos_renewals_follow_the_archetypes() -> None:
    """At the demo's size: enough of both outcomes for a backtest, all in the last
    RENEWAL_DAYS; healthy collaborators churn least, poorly sold and fading accounts most."""
    decided = _renewals(DEMO_ACCOUNTS, datetime(2026, 6, 1, tzinfo=UTC))
    total = sum(decided.values(), Counter())
    assert total["churned"] >= 30, decided
    assert total["renewed"] >= 30, decided
    churn = {name: counts["churned"] / counts.total() for name, counts in decided.items()}
    assert min(churn, key=lambda name: churn[name]) == "collaborator", churn
    kept = max(churn[name] for name in ("collaborator", "transactional", "leveled_off"))
    assert min(churn["poorly_sold"], churn["fading"]) > kept, churn


def test_the_demo_stores_a_renewal_decision_for_each_customer_of_long_standing(
    demo: tuple[DemoResult, str],
) -> None:
    result, printed = demo
    customers = {
        c.crm_id
        for c in result.companies
        if result.band_of(c.crm_id) not in (NOT_A_CUSTOMER, "onboarding")
    }
    assert set(result.outcomes) == customers
    now = datetime.now(UTC)
    # The demo drew them a little earlier than this test's now.
    earliest = now - timedelta(days=RENEWAL_DAYS, minutes=10)
    assert all(earliest <= at < now for at, _ in result.outcomes.values()), result.outcomes
    # Stored as the sample drew them: the ingest path kept every one.
    decided = _renewals(ACCOUNTS, now)
    assert result.outcomes_by_archetype == decided
    total = sum(decided.values(), Counter())
    assert (
        f"Outcomes: {total['renewed']} renewed, {total['churned']} churned in the last "
        f"{RENEWAL_DAYS} days (churned: healthy collaborators " in printed
    )


def test_every_sample_company_holds_every_health_field(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    assert len(result.companies) == ACCOUNTS
    prospects = [c for c in result.companies if result.band_of(c.crm_id) == NOT_A_CUSTOMER]
    missing = {
        company.name: [
            name for name in HEALTH_FIELDS if not result.records[company.crm_id].get(name)
        ]
        for company in result.companies
        if company not in prospects
    }
    assert {name: fields for name, fields in missing.items() if fields} == {}
    # Companies that are not customers (lifecycle stage opportunity) keep their fields empty.
    assert prospects
    for company in prospects:
        record = result.records[company.crm_id]
        assert [name for name in HEALTH_FIELDS if record.get(name)] == ["health_updated_at"]


def test_collaborators_are_healthy(demo: tuple[DemoResult, str]) -> None:
    bands = _bands(demo[0], "collaborator")
    assert bands["healthy"] >= 0.8 * sum(bands.values()), bands


def test_fading_and_poorly_sold_accounts_are_at_risk(demo: tuple[DemoResult, str]) -> None:
    for archetype in ("fading", "poorly_sold"):
        bands = _bands(demo[0], archetype)
        assert bands["at_risk"] >= 0.8 * sum(bands.values()), (archetype, bands)


def test_big_transactional_and_leveled_off_accounts_are_not_healthy(
    demo: tuple[DemoResult, str],
) -> None:
    for archetype in ("transactional", "leveled_off"):
        bands = _bands(demo[0], archetype)
        assert bands["neutral"] > sum(bands.values()) / 2, (archetype, bands)
        assert bands["healthy"] <= 1, (archetype, bands)


def test_alerts_are_raised_for_every_at_risk_account(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    at_risk = {c.crm_id for c in result.companies if result.band_of(c.crm_id) == "at_risk"}
    healthy = {c.crm_id for c in result.companies if result.band_of(c.crm_id) == "healthy"}
    entered = result.alerted.get("entered-at-risk", set())
    assert at_risk
    assert at_risk <= entered
    assert not healthy & entered, "no healthy account was ever scored at risk on part of its data"
    assert result.alerts_by_rule["entered-at-risk"] == len(entered)


def test_open_alerts_are_at_most_one_per_at_risk_account(demo: tuple[DemoResult, str]) -> None:
    """Issue 21's proof on the demo's data: one alert per account episode, none on healthy
    accounts, no "lost" alert on accounts that never had the thing."""
    result, _ = demo
    at_risk = sum(1 for c in result.companies if result.band_of(c.crm_id) == "at_risk")
    open_alerts = sum(result.open_by_band.values())
    assert 0 < open_alerts <= at_risk
    assert not [key for key in result.open_by_band if key[1] == "healthy"]
    assert "executive-access-lost" not in result.alerts_by_rule
    assert "no-co-innovation" not in result.alerts_by_rule


def test_fading_accounts_show_their_fall(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    trends = [
        int(result.records[c.crm_id].get("health_trend_30d") or 0)
        for c in result.companies
        if c.archetype == "fading" and result.band_of(c.crm_id) != NOT_A_CUSTOMER
    ]
    assert sum(trend < 0 for trend in trends) > len(trends) / 2, trends


def test_key_feature_adoption_tells_collaborators_from_those_who_only_look_in(
    demo: tuple[DemoResult, str],
) -> None:
    result, printed = demo
    collaborators = result.median_adoption("collaborator")
    assert collaborators is not None
    assert collaborators >= 0.8
    for archetype in ("poorly_sold", "fading", "transactional"):
        adoption = result.median_adoption(archetype)
        assert adoption is not None
        assert adoption <= 0.35, archetype
    assert 'who used "Report Exported" or "Dashboard Shared" in 30 days' in printed


def test_the_demos_custom_indicator_scores_its_custom_signal(demo: tuple[DemoResult, str]) -> None:
    result, printed = demo
    collaborators = result.median_exports("collaborator")
    assert collaborators is not None
    assert collaborators >= 0.4  # healthy
    for archetype in ("poorly_sold", "fading"):
        exports = result.median_exports(archetype)
        assert exports is not None
        assert exports <= 0.05, archetype  # at risk
    assert 'custom indicator "Reports exported per seat (30d)" of the custom signal' in printed


def test_a_few_csm_sentiments_lead_their_accounts_drivers(demo: tuple[DemoResult, str]) -> None:
    result, printed = demo
    assert result.judged
    for crm_id in result.judged:
        first = (result.records[crm_id].get("health_drivers") or "").split("\n")[0]
        assert first.startswith("CSM: "), first
    assert "CSM sentiments set:" in printed


def test_summary_names_bands_risks_alerts_and_where_to_look(
    demo: tuple[DemoResult, str],
) -> None:
    result, output = demo
    assert "Bands: " in output
    assert "healthy collaborators" in output
    assert "Most at risk, and why:" in output
    assert f"Alerts raised: {sum(result.alerts_by_rule.values())}" in output
    assert "through POST /ingest/events" in output
    portfolio = result.portfolio
    assert portfolio is not None
    assert portfolio.totals.accounts == sum(
        count for band, count in result.bands.items() if band in BANDS
    ), "the portfolio counts the customers the CRM holds a band for"
    assert f"at risk {portfolio.totals.arr_at_risk:,.0f} USD" in output
    assert "biggest movers in 7 days:" in output


def test_summary_says_where_the_database_is_and_how_other_commands_read_it(
    demo: tuple[DemoResult, str],
) -> None:
    _, output = demo
    [line] = [line for line in output.splitlines() if line.startswith("Database:")]
    assert line.split()[1].endswith("demo.db")
    assert "crm-health status --database " in output


def test_a_demo_that_exits_prints_no_urls_of_stopped_servers(
    demo: tuple[DemoResult, str],
) -> None:
    _, output = demo
    assert "/admin" not in output
    assert "demo-admin-token" not in output
    assert "Servers:    stopped (--exit)" in output


def test_a_serving_demo_prints_where_to_look(
    demo: tuple[DemoResult, str], capsys: pytest.CaptureFixture[str]
) -> None:
    result, _ = demo
    print_summary(
        result,
        service_url="http://127.0.0.1:8000",
        sandbox_url="http://127.0.0.1:8765",
        database="demo.db",
        serving=True,
    )
    output = capsys.readouterr().out
    assert "http://127.0.0.1:8000/admin" in output
    assert "http://127.0.0.1:8000/docs" in output
    assert "demo-admin-token" in output
    assert "crm-health status --database demo.db" in output
    assert "stopped" not in output


def test_the_demo_counts_fields_and_their_group_apart(demo: tuple[DemoResult, str]) -> None:
    _, output = demo
    assert f"{len(HEALTH_FIELDS)} health fields and their property group" in output


def test_the_replay_writes_progress_lines_when_not_on_a_terminal(
    demo: tuple[DemoResult, str],
) -> None:
    _, output = demo
    lines = [line for line in output.splitlines() if line.startswith("Replaying 180 days: ")]
    assert lines, output
    assert lines[-1].startswith(f"Replaying 180 days: {ACCOUNTS}/{ACCOUNTS} companies")
    assert "\r" not in output


def test_demo_command_takes_its_ports_and_exit_options() -> None:
    output = CliRunner().invoke(cli, ["demo", "--help"], env={"COLUMNS": "200"}).output
    for option in ("--port", "--sandbox-port", "--database", "--accounts", "--seed", "--exit"):
        assert option in output


def test_a_fresh_database_replaces_the_old_one(tmp_path: Path) -> None:
    old = tmp_path / "demo.db"
    old.write_text("old")
    url = fresh_database_url(str(old))
    assert url == f"sqlite+aiosqlite:///{old.resolve()}"
    assert not old.exists()
