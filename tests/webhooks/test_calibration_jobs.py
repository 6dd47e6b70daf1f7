"""Backtests and suggestions end to end, on SQLite and PostgreSQL: a book whose churned
accounts stopped using the product weeks before the outcome, its jobs over HTTP (progress,
result, refusal, failure, interruption) and the same from the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from typer.testing import CliRunner

from signals.config import HealthConfig
from testkit import RECENCY_ONLY, in_thread, native, store_native
from webhooks import calibration
from webhooks.cli import cli
from webhooks.store import analysis_jobs, configs, keys
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

CHURNED = RENEWED = 32


async def bearer(service: Any, role: str = "viewer") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection="default", now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


# Another connection's own settings: a suggestion made for "default" must keep them.
ELSEWHERE = {"elsewhere": {"alerts": {"entered-at-risk": {"enabled": False}}}}
IN_FORCE = {**RECENCY_ONLY, "connections": ELSEWHERE}


async def book(service_factory: Any) -> Any:
    """Outcomes 5 days ago. The churned stopped using the product 40 to 71 days ago, so 30 days
    before their outcome (35 days ago) their last use was 5 to 36 days old; the renewed used it
    every 3 days throughout. Scored on recency alone (RECENCY_ONLY: at risk at 100 days)."""
    service = await service_factory(hubspot_access_token=None)
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(IN_FORCE),
            author="test",
            comment="recency only",
            now=datetime.now(UTC) - timedelta(days=200),
        )
    events: list[dict[str, object]] = []
    for i in range(CHURNED):
        events += [native("usage", f"c{i}", days_ago=days, user="u") for days in (120, 40 + i)]
        events.append(native("outcome", f"c{i}", days_ago=5, outcome="churned"))
    for i in range(RENEWED):
        events += [native("usage", f"r{i}", days_ago=days, user="u") for days in range(1, 121, 3)]
        events.append(native("outcome", f"r{i}", days_ago=5, outcome="renewed"))
    await store_native(service.runtime, events)
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(),
    )
    while await pipeline.run_once():
        pass
    return service


async def run_job(service: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = await bearer(service)
    started = await service.client.post(path, json=body, headers=headers)
    assert started.status_code == 202, started.text
    await service.runtime.jobs.wait()
    job: dict[str, Any] = (
        await service.client.get(started.json()["links"]["self"], headers=headers)
    ).json()
    return job


async def test_a_backtest_finds_the_ranking_and_its_bands(service_factory) -> None:
    service = await book(service_factory)

    job = await run_job(service, "/api/v1/config/backtest", {"horizons": [30]})

    assert job["status"] == "done", job["error"]
    assert (job["done"], job["total"]) == (CHURNED + RENEWED, CHURNED + RENEWED)
    [horizon] = job["result"]["horizons"]
    assert (horizon["churned"], horizon["renewed"]) == (CHURNED, RENEWED)
    # Every renewed account used the product within 3 days, every churned one 5 or more.
    assert horizon["auc"] == 1.0
    assert horizon["roc"][-1] == {"threshold": pytest.approx(horizon["roc"][-1]["threshold"]),
                                  "fpr": 1.0, "tpr": 1.0}  # fmt: skip
    [recency] = [i for i in horizon["indicators"] if i["key"] == "active_use.recency_days"]
    assert (recency["direction"], recency["configured"], recency["power"]) == (
        "lower",
        "lower",
        1.0,
    )


async def test_a_suggestion_is_a_candidate_that_validates_and_is_applied_by_nobody(
    service_factory,
) -> None:
    service = await book(service_factory)

    job = await run_job(service, "/api/v1/config/suggest", {"horizon": 30, "min_churned": CHURNED})

    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["status"] == "suggested"
    candidate = HealthConfig.model_validate(result["config"])
    suggested = candidate.signals.items()["active_use"].indicators.items()["recency_days"]
    # Each group's median: the renewed used it 0 to 3 days before, the churned 5 to 36.
    assert 0 <= suggested.healthy <= 3
    assert 5 <= suggested.at_risk <= 36
    cv = result["cross_validation"]
    assert cv["folds"] == 5
    assert cv["suggested_auc"] >= cv["current_auc"]
    async with service.runtime.sessions() as session:
        _, in_force = await configs.current(session)
    assert in_force == HealthConfig.model_validate(IN_FORCE), "nothing changes by itself"
    # The whole document to apply: the other connection's settings are kept.
    assert HealthConfig.model_validate(result["config"]).connections == in_force.connections
    assert result["based_on_version"] is not None


async def test_too_few_outcomes_is_a_refusal_in_words(service_factory) -> None:
    service = await book(service_factory)

    job = await run_job(service, "/api/v1/config/suggest", {"min_churned": 100})

    assert job["status"] == "done"
    assert job["result"]["status"] == "refused"
    assert job["result"]["reason"] == (
        f"{CHURNED} churned and {RENEWED} renewed outcomes; at least 100 of each are needed "
        "to suggest anything (min_churned)"
    )


async def test_a_job_that_breaks_says_why_and_never_stays_running(
    service_factory, monkeypatch
) -> None:
    service = await book(service_factory)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(calibration, "evaluate", broken)
    job = await run_job(service, "/api/v1/config/backtest", {})

    assert job["status"] == "failed"
    assert job["error"] == "failed: RuntimeError: disk on fire"
    assert job["finished_at"] is not None


async def test_a_job_whose_process_stopped_is_failed_as_interrupted(service_factory) -> None:
    service = await book(service_factory)
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    async with service.runtime.sessions() as session, session.begin():
        job = await analysis_jobs.create(
            session, kind="backtest", connection="default", author="gone", request={},
            now=long_ago,
        )  # fmt: skip
        await analysis_jobs.start(session, job_id=job.id, now=long_ago)
        job_id = job.id

    response = await service.client.get(
        f"/api/v1/config/jobs/{job_id}", headers=await bearer(service)
    )

    assert response.json()["status"] == "failed"
    assert response.json()["error"] == analysis_jobs.INTERRUPTED


@pytest.mark.parametrize(
    ("body", "field"),
    [({"horizon": 0}, "horizon"), ({"min_churned": 0}, "min_churned"), ({"seed": -1}, "seed"),
     ({"config": {"bands": {"hysteresis": 80}}}, "config.bands.hysteresis"),
     ({"colour": "red"}, "colour")],
)  # fmt: skip
async def test_a_bad_suggest_request_names_the_field(service_factory, body, field) -> None:
    service = await service_factory(hubspot_access_token=None)

    response = await service.client.post(
        "/api/v1/config/suggest", json=body, headers=await bearer(service)
    )

    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize("job_id", ["0", "9223372036854775808", "abc"])
async def test_a_job_id_no_row_can_have_is_a_422_naming_it(service_factory, job_id) -> None:
    service = await service_factory(hubspot_access_token=None)

    response = await service.client.get(
        f"/api/v1/config/jobs/{job_id}", headers=await bearer(service)
    )

    assert response.status_code == 422
    assert "job_id" in response.text


# --- the command line -----------------------------------------------------------------------


def crm_health(database_url: str, *args: str) -> Any:
    """The command on the test's database. Logging is put back afterwards: the command sets it
    onto the runner's captured stderr, which is closed once it returns."""
    config = structlog.get_config()

    def run() -> Any:
        return CliRunner().invoke(cli, [*args, "--database", database_url])

    try:
        return in_thread(run)
    finally:
        structlog.configure(**config)


async def test_the_cli_prints_the_backtest_and_writes_a_suggestion_to_apply(
    service_factory, database_url, tmp_path: Path
) -> None:
    await book(service_factory)

    printed = crm_health(database_url, "backtest", "--horizons", "30,60")
    assert printed.exit_code == 0, printed.output
    assert "30 d" in printed.output
    assert "active_use.recency_days" in printed.output

    output = tmp_path / "suggested.yaml"
    suggested = crm_health(
        database_url, "suggest", "--horizon", "30", "--min-churned", "30", "--output", str(output)
    )
    assert suggested.exit_code == 0, suggested.output
    assert "cross-validated AUC" in suggested.output
    assert f"crm-health config apply {output} --dry-run" in suggested.output
    HealthConfig.model_validate(yaml.safe_load(output.read_text()))

    refused = crm_health(database_url, "suggest", "--min-churned", "500")
    assert refused.exit_code == 1
    assert "No suggestion: 32 churned and 32 renewed outcomes" in refused.output

    unknown = crm_health(database_url, "backtest", "--connection", "defualt")
    assert unknown.exit_code == 2
    assert "unknown connection 'defualt'" in unknown.output
