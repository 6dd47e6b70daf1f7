"""`crm-health config export|apply`: YAML round trip, a dry run that stores nothing, a diff
of changed field paths, every invalid field listed (exit 2), an audit row per apply."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from signals.config import HealthConfig
from webhooks.cli import cli
from webhooks.store import configs
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import ConfigAudit, ConfigVersion, RecomputeJob


@pytest.fixture
def cli_env(database_url, monkeypatch):
    """The command on the test's database, and logging put back afterwards: the command
    configures it onto the runner's captured stderr, which is closed once it returns."""
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    config = structlog.get_config()
    yield database_url
    structlog.configure(**config)


def counts(url: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                return {
                    model.__tablename__: (
                        await session.execute(select(func.count()).select_from(model))
                    ).scalar_one()
                    for model in (ConfigVersion, ConfigAudit, RecomputeJob)
                }
        finally:
            await engine.dispose()

    return asyncio.run(run())


def audit(url: str) -> list[ConfigAudit]:
    async def run() -> list[ConfigAudit]:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                return (await configs.list_audit(session, limit=10, offset=0))[0]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def export(runner: CliRunner, path: Path) -> dict[str, Any]:
    result = runner.invoke(cli, ["config", "export", str(path)])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(path.read_text())


def test_export_writes_the_defaults_as_yaml_to_stdout(cli_env):
    result = CliRunner().invoke(cli, ["config", "export", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# crm-health configuration: the defaults")
    assert yaml.safe_load(result.stdout) == HealthConfig().model_dump(mode="json")


def test_dry_run_prints_the_diff_and_stores_nothing(cli_env, tmp_path):
    runner = CliRunner()
    path = tmp_path / "health.yaml"
    document = export(runner, path)
    document["bands"]["healthy_min"] = 75
    document["signals"]["active_use"]["weight"] = 0.5
    path.write_text(yaml.safe_dump(document))
    result = runner.invoke(cli, ["config", "apply", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "2 change(s) from the defaults:" in result.stdout
    assert "  signals.active_use.weight: 0.4 -> 0.5\n" in result.stdout
    assert "  bands.healthy_min: 70.0 -> 75.0\n" in result.stdout
    assert "dry run: nothing stored" in result.stdout
    assert counts(cli_env) == {"config_versions": 0, "config_audit": 0, "recompute_jobs": 0}


def test_apply_stores_a_version_with_audit_and_recompute_and_round_trips(cli_env, tmp_path):
    runner = CliRunner()
    path = tmp_path / "health.yaml"
    document = export(runner, path)
    document["bands"]["hysteresis"] = 5
    path.write_text(yaml.safe_dump(document))
    result = runner.invoke(
        cli, ["config", "apply", str(path), "--comment", "calmer bands", "--author", "ops"]
    )
    assert result.exit_code == 0, result.output
    assert "  bands.hysteresis: 3.0 -> 5.0\n" in result.stdout
    assert "stored version 1" in result.stdout
    assert counts(cli_env) == {"config_versions": 1, "config_audit": 1, "recompute_jobs": 1}
    [row] = audit(cli_env)
    assert (row.action, row.actor, row.comment, row.changed) == (
        "apply",
        "ops",
        "calmer bands",
        ["bands.hysteresis"],
    )
    assert (row.from_version_id, row.to_version_id) == (None, 1)
    exported = export(runner, tmp_path / "again.yaml")
    assert exported["bands"]["hysteresis"] == 5
    assert "version 1" in (tmp_path / "again.yaml").read_text().splitlines()[0]
    # Applying what is in force stores nothing: config as code is idempotent.
    again = runner.invoke(cli, ["config", "apply", str(tmp_path / "again.yaml")])
    assert again.exit_code == 0, again.output
    assert "no changes: version 1 is this configuration already" in again.stdout
    assert counts(cli_env)["config_versions"] == 1


def test_apply_reads_standard_input(cli_env):
    document = HealthConfig().model_dump(mode="json")
    document["bands"]["at_risk_below"] = 35
    result = CliRunner().invoke(cli, ["config", "apply", "-"], input=yaml.safe_dump(document))
    assert result.exit_code == 0, result.output
    assert "  bands.at_risk_below: 40.0 -> 35.0\n" in result.stdout
    assert counts(cli_env)["config_versions"] == 1


def test_apply_lists_every_invalid_field_and_exits_2(cli_env, tmp_path):
    document = HealthConfig().model_dump(mode="json")
    document["bands"]["hysteresis"] = 60
    document["signals"]["collaboration"]["weight"] = -1
    document["alerts"][0]["when"] = "sometimes"
    document["extra"] = True
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(cli, ["config", "apply", str(path)])
    assert result.exit_code == 2
    for field in (
        "bands.hysteresis",
        "signals.collaboration.weight",
        "alerts.0.when",
        "extra",
    ):
        assert f"{path}: {field}: " in result.stderr
    assert "4 invalid field(s); nothing applied" in result.stderr
    assert counts(cli_env)["config_versions"] == 0


@pytest.mark.parametrize("content", ["bands: [unclosed", "", "- a list"])
def test_apply_refuses_a_file_that_is_not_a_configuration(cli_env, tmp_path, content):
    path = tmp_path / "health.yaml"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["config", "apply", str(path)])
    assert result.exit_code == 2
    assert "nothing applied" in result.stderr


def test_apply_of_a_missing_file_exits_2(cli_env, tmp_path):
    result = CliRunner().invoke(cli, ["config", "apply", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr
