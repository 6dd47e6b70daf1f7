"""Every expected failure of `crm-health` ends in at most two lines on stderr (what went wrong,
what to do), no traceback, and the documented exit status: 1 a CRM refused or failed, ids
that name nothing; 2 configuration or database; 3 a server cannot start. `--debug` and
CRM_HEALTH_DEBUG=1 keep the traceback. HubSpot is mocked with respx or is a refused local
port; a port in use is a real bound socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
import structlog
import typer
from typer.testing import CliRunner, Result

from connector.errors import CRMAuthError, CRMRetriesExhausted
from testkit import HUBSPOT_API, HUBSPOT_TOKEN
from webhooks.cli import cli
from webhooks.cli_errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_SERVER,
    CLIFailure,
    ErrorReportingGroup,
    explain,
)

PROPERTY_GROUPS = f"{HUBSPOT_API}/crm/v3/properties/companies/groups"
COMPANIES = f"{HUBSPOT_API}/crm/v3/objects/companies"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # Commands configure logging onto the runner's captured streams.
    config = structlog.get_config()
    yield
    structlog.configure(**config)


@pytest.fixture
def no_crm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CRM settings from the environment; the working directory is a fresh one."""
    for name in (
        "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN",
        "CRM_HEALTH_CONNECTIONS_FILE",
        "CRM_HEALTH_DEBUG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRM_HEALTH_CRM_RETRY_MAX_ATTEMPTS", "1")
    return tmp_path


@pytest.fixture
def hubspot(no_crm: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN)
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_API_BASE", HUBSPOT_API)
    return database_url


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def short_failure(result: Result, exit_code: int, *phrases: str) -> list[str]:
    """The failure is at most two lines on stderr, names each phrase, and has no traceback."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, lines
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, lines)
    return lines


# -- bad credentials ---------------------------------------------------------------------------


@respx.mock
def test_provision_with_a_refused_token_says_which_setting(hubspot: str) -> None:
    respx.get(PROPERTY_GROUPS).mock(return_value=httpx.Response(401, json={"status": "error"}))

    result = CliRunner().invoke(cli, ["provision"])

    short_failure(
        result, EXIT_FAILED, "refused the credentials", "401", "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN"
    )


@respx.mock
def test_backfill_restart_with_a_refused_token_says_which_setting(hubspot: str) -> None:
    respx.route(url__startswith=HUBSPOT_API).mock(
        return_value=httpx.Response(401, json={"status": "error"})
    )

    result = CliRunner().invoke(cli, ["backfill", "--restart"])

    short_failure(result, EXIT_FAILED, "refused the credentials", "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN")


@pytest.mark.parametrize(
    ("message", "setting"),
    [
        ("Salesforce token request refused: invalid_grant (expired)", "CRM_HEALTH_SALESFORCE_"),
        ("salesforce:eu: GET /services/data was refused with status 401", "CRM_HEALTH_SALESFORCE_"),
        ("Entra ID token request refused: invalid_client", "CRM_HEALTH_DYNAMICS_CLIENT_SECRET"),
        ("dynamics:ops: GET /accounts was refused with status 403", "CRM_HEALTH_DYNAMICS_"),
    ],
)
def test_salesforce_and_dynamics_refusals_name_their_settings(message: str, setting: str) -> None:
    failure = explain(CRMAuthError(message, status=401))

    assert failure is not None
    assert failure.exit_code == EXIT_FAILED
    assert message in failure.message
    assert failure.fix is not None
    assert setting.split("_")[2] in failure.fix


# -- CRM unreachable ---------------------------------------------------------------------------


def test_provision_with_the_crm_refusing_connections_says_cannot_reach(
    hubspot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_HEALTH_HUBSPOT_API_BASE", f"http://127.0.0.1:{closed_port()}")

    result = CliRunner().invoke(cli, ["provision"])

    short_failure(result, EXIT_FAILED, "cannot reach the CRM", "CRM_HEALTH_HUBSPOT_API_BASE")


@pytest.mark.parametrize("transport_error", ["ConnectError", "ConnectTimeout", "ReadTimeout"])
def test_dns_failures_and_timeouts_say_cannot_reach(transport_error: str) -> None:
    failure = explain(
        CRMRetriesExhausted(
            f"hubspot:default: GET /x gave up after 5 attempt(s) in 9.0s; last status None "
            f"({transport_error})",
            status=None,
            attempts=5,
        )
    )

    assert failure is not None
    assert failure.message.startswith("cannot reach the CRM")
    assert failure.fix is not None
    assert "CRM_HEALTH_HUBSPOT_API_BASE" in failure.fix


def test_an_unreachable_token_endpoint_names_its_own_setting() -> None:
    failure = explain(
        CRMRetriesExhausted(
            "dynamics:default:oauth: POST /tenant/oauth2/v2.0/token gave up after 1 attempt(s) "
            "in 0.1s; last status None (ConnectError)",
            status=None,
            attempts=1,
        )
    )

    assert failure is not None
    assert "CRM_HEALTH_DYNAMICS_AUTHORITY" in (failure.fix or "")


# -- port in use -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_port_in_use_names_the_port_and_the_option(
    command: str, busy_port: int, no_crm: Path
) -> None:
    result = CliRunner().invoke(cli, [command, "--host", "127.0.0.1", "--port", str(busy_port)])

    short_failure(result, EXIT_SERVER, f"port {busy_port}", "in use", "--port")


def test_demo_names_which_of_its_ports_is_in_use(busy_port: int, no_crm: Path) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--port", str(closed_port()), "--sandbox-port", str(busy_port), "--exit"]
    )

    short_failure(result, EXIT_SERVER, f"port {busy_port}", "--sandbox-port")
    assert not (no_crm / "demo.db").exists()


def test_a_worker_metrics_port_in_use_names_the_option(busy_port: int, no_crm: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--metrics-port", str(busy_port)])

    short_failure(result, EXIT_SERVER, f"port {busy_port}", "--metrics-port")


# -- missing or wrong configuration ------------------------------------------------------------


@pytest.mark.parametrize("command", [["backfill"], ["provision"]])
def test_no_crm_configured_says_which_setting_to_set(
    command: list[str], no_crm: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)

    result = CliRunner().invoke(cli, command)

    short_failure(
        result, EXIT_CONFIG, "no CRM credentials configured", "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN"
    )


def test_a_bad_setting_value_names_the_variable(
    no_crm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_HEALTH_LOG_LEVEL", "loud")

    result = CliRunner().invoke(cli, ["keys", "list"])

    short_failure(result, EXIT_CONFIG, "configuration error: CRM_HEALTH_LOG_LEVEL")


def test_a_missing_connections_file_is_named(no_crm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_CONNECTIONS_FILE", str(no_crm / "absent.yaml"))

    result = CliRunner().invoke(cli, ["keys", "list"])

    short_failure(result, EXIT_CONFIG, "configuration error", "absent.yaml")


def test_a_broken_channels_file_is_named(no_crm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channels = no_crm / "channels.yaml"
    channels.write_text("channels: [\n", encoding="utf-8")
    monkeypatch.setenv("CRM_HEALTH_ALERT_CHANNELS_FILE", str(channels))

    result = CliRunner().invoke(cli, ["keys", "list"])

    short_failure(result, EXIT_CONFIG, "CRM_HEALTH_ALERT_CHANNELS_FILE")


# -- unknown connection or id ------------------------------------------------------------------


def test_keys_create_refuses_an_unknown_connection_and_lists_the_known(hubspot: str) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "create", "--name", "sync", "--role", "viewer", "--connection", "nope"]
    )

    short_failure(result, EXIT_CONFIG, "unknown connection 'nope'", "default", "--connection")
    assert result.stdout == ""
    listed = CliRunner().invoke(cli, ["keys", "list"])
    assert "no API keys" in listed.stdout


def test_keys_create_takes_a_configured_connection(hubspot: str) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "create", "--name", "sync", "--role", "viewer", "--connection", "default"]
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("chk_")


def test_backfill_of_an_unknown_connection_lists_the_configured(hubspot: str) -> None:
    result = CliRunner().invoke(cli, ["backfill", "--connection", "nope"])

    short_failure(result, EXIT_CONFIG, "unknown connection 'nope'", "configured: default")


@pytest.mark.parametrize(
    "command",
    [["writeback", "retry", "--connection", "nope"], ["unmatched", "--connection", "nope"]],
)
def test_a_connection_filter_that_names_nothing_known_is_refused(
    command: list[str], hubspot: str
) -> None:
    result = CliRunner().invoke(cli, command)

    short_failure(result, EXIT_CONFIG, "unknown connection 'nope'", "configured: default")


def test_replay_of_an_id_that_names_nothing_fails_and_says_where_to_look(hubspot: str) -> None:
    result = CliRunner().invoke(cli, ["replay", "12345"])

    short_failure(result, EXIT_FAILED, "no inbox event with id: 12345", "dead-letters")


def test_revoking_an_unknown_key_fails(hubspot: str) -> None:
    result = CliRunner().invoke(cli, ["keys", "revoke", "chk_nothing"])

    short_failure(result, EXIT_FAILED, "no active API key", "chk_nothing")


# -- database unreachable or not migrated ------------------------------------------------------


def test_an_unreachable_postgresql_says_check_the_database_url(
    no_crm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CRM_HEALTH_DATABASE_URL", f"postgresql+asyncpg://crm@127.0.0.1:{closed_port()}/crm"
    )

    result = CliRunner().invoke(cli, ["keys", "list"])

    short_failure(result, EXIT_CONFIG, "cannot use the database", "CRM_HEALTH_DATABASE_URL")


def test_an_unknown_database_driver_is_named(no_crm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", "oracle+nosuchdriver://crm@db/crm")

    result = CliRunner().invoke(cli, ["keys", "list"])

    short_failure(result, EXIT_CONFIG, "CRM_HEALTH_DATABASE_URL cannot be used", "postgresql")


def test_a_database_without_the_schema_says_run_migrate(
    no_crm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = no_crm / "empty.db"
    empty.touch()
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite+aiosqlite:///{empty}")

    result = CliRunner().invoke(cli, ["recompute"])

    # recompute checks the schema before it starts, naming the revision it needs.
    short_failure(result, EXIT_CONFIG, "has no schema yet", "crm-health migrate")


def test_a_postgresql_missing_table_says_run_migrate() -> None:
    class ProgrammingError(Exception):
        pass

    from sqlalchemy.exc import ProgrammingError as Wrapped  # noqa: PLC0415

    error = Wrapped(
        "SELECT 1",
        {},
        ProgrammingError(
            "<class 'asyncpg.exceptions.UndefinedTableError'>: relation \"x\" does not exist"
        ),
    )
    failure = explain(error)

    assert failure is not None
    assert failure.exit_code == EXIT_CONFIG
    assert "crm-health migrate" in (failure.fix or "")


# -- --debug -----------------------------------------------------------------------------------


def test_debug_shows_the_exception_instead(no_crm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_LOG_LEVEL", "loud")

    result = CliRunner().invoke(cli, ["--debug", "keys", "list"])

    assert result.exit_code == 1
    assert type(result.exception).__name__ == "ValidationError"


def test_the_debug_variable_shows_the_exception_instead(
    no_crm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_HEALTH_LOG_LEVEL", "loud")
    monkeypatch.setenv("CRM_HEALTH_DEBUG", "1")

    result = CliRunner().invoke(cli, ["keys", "list"])

    assert type(result.exception).__name__ == "ValidationError"


def test_an_unexpected_error_keeps_its_traceback() -> None:
    app = typer.Typer(cls=ErrorReportingGroup)

    @app.command()
    def broken() -> None:
        raise RuntimeError("a bug")

    @app.command()
    def refused() -> None:
        raise CLIFailure("what went wrong", fix="what to do", exit_code=EXIT_CONFIG)

    assert isinstance(CliRunner().invoke(app, ["broken"]).exception, RuntimeError)
    result = CliRunner().invoke(app, ["refused"])
    assert result.exit_code == EXIT_CONFIG
    assert result.stderr.splitlines() == ["what went wrong", "what to do"]
