"""The deployment files agree with the code: the Compose example, the Dockerfile and the
.dockerignore name only real settings, commands and endpoints (no Docker engine is needed:
these are checks of the files themselves)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from webhooks.app import create_app
from webhooks.cli import cli
from webhooks.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.example.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Operator-facing text whose settings and commands must exist.
DOCS = [
    ROOT / "README.md",
    ROOT / "docs" / "operations.md",
    ROOT / "docs" / "security.md",
    ROOT / "docs" / "scaling.md",
]
# Environment variables with the prefix that are not service settings.
# The test suite's PostgreSQL server; the command's --debug (webhooks.cli_errors).
NOT_SETTINGS = {"CRM_HEALTH_TEST_POSTGRES_URL", "CRM_HEALTH_DEBUG"}

SETTING = re.compile(r"\bCRM_HEALTH_[A-Z0-9_]*[A-Z0-9]\b")
# `crm-health <command>` at the start of a shell line or of an inline code span.
COMMAND = re.compile(r"(?:^|`|\$ |&& )crm-health ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", re.M)


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def _cli_commands() -> dict[str, Any]:
    # Typer's own click: a group is whatever has `commands`.
    commands: dict[str, Any] = typer.main.get_command(cli).commands  # type: ignore[attr-defined]
    return commands


def _known_setting(name: str) -> bool:
    return name.removeprefix("CRM_HEALTH_").lower() in Settings.model_fields


def _get_paths() -> set[str]:
    paths: dict[str, dict[str, Any]] = create_app(Settings.model_validate({})).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def _code_text(markdown: str) -> str:
    """Fenced code blocks and inline code spans: where commands are written to be run."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.M | re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S))
    return "\n".join([*fenced, *(f"`{span}" for span in inline)])


# -- docker-compose.example.yml -------------------------------------------------------------------


def test_compose_example_has_postgres_migrate_api_and_workers() -> None:
    services = _services()
    assert {"postgres", "migrate", "api", "worker"} <= services.keys()


def test_compose_postgres_is_16_with_a_health_check_and_a_named_volume() -> None:
    postgres = _services()["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in _compose()["volumes"], "the data lives in a named volume"


def test_compose_migrates_once_before_the_service_and_the_workers_start() -> None:
    services = _services()
    assert _command(services["migrate"]) == ["crm-health", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_compose_runs_at_least_two_workers_on_postgresql() -> None:
    services = _services()
    workers = 0
    for service in services.values():
        command = _command(service)
        replicas = int(service.get("deploy", {}).get("replicas", 1))
        if command[:2] == ["crm-health", "worker"]:
            workers += replicas
        elif command[:2] == ["crm-health", "serve"]:
            run_worker = str(service["environment"].get("CRM_HEALTH_RUN_WORKER", "true"))
            workers += replicas if run_worker.lower() == "true" else 0
    assert workers >= 2
    for name in ("migrate", "api", "worker"):
        url = services[name]["environment"]["CRM_HEALTH_DATABASE_URL"]
        assert url.startswith("postgresql://"), name


def test_compose_api_runs_serve_without_its_worker_and_is_checked_on_readyz() -> None:
    api = _services()["api"]
    assert _command(api)[:2] == ["crm-health", "serve"]
    assert api["environment"]["CRM_HEALTH_RUN_WORKER"] == "false"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_compose_services_restart_and_workers_skip_the_http_check() -> None:
    services = _services()
    for name in ("postgres", "api", "worker"):
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["healthcheck"] == {"disable": True}


def test_compose_reads_the_env_file_and_requires_the_secrets_it_interpolates() -> None:
    services = _services()
    for name in ("migrate", "api", "worker"):
        assert services[name]["env_file"] == ".env", name
    text = COMPOSE.read_text()
    # ${VAR:?message}: Compose refuses to start without them instead of passing "".
    for variable in ("POSTGRES_PASSWORD", "CRM_HEALTH_PUBLIC_URL"):
        assert f"${{{variable}:?" in text, variable
    assert ":-}" not in text, "an empty CRM_HEALTH_* value is not the same as unset"


# -- Dockerfile and .dockerignore ----------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_multi_stage_and_runs_as_an_unprivileged_user() -> None:
    instructions = _dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1] not in {"root", "0"}
    assert [keyword for keyword, _ in instructions].index("USER") < [
        keyword for keyword, _ in instructions
    ].index("CMD")


def test_dockerfile_copies_only_files_that_exist_and_dockerignore_keeps() -> None:
    sources = []
    for keyword, rest in _dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            sources.extend(rest.split()[:-1])
    assert sources
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
        # A file deep inside each copied tree must not be excluded either.
        samples = [source, f"{source}/store/migrations/versions/x.py", f"{source}/ui/a.html"]
        for pattern in patterns:
            for sample in samples:
                assert not fnmatch.fnmatch(sample, pattern.rstrip("/")), (pattern, sample)


@pytest.mark.parametrize(
    "path",
    [".venv", ".git", "tests", "test-artifacts", "bench", "crm_health.db", "demo.db", ".env"],
)
def test_dockerignore_keeps_local_state_out_of_the_image(path: str) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any(
        fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.removeprefix("**/"))
        for pattern in patterns
    ), path


def test_dockerfile_health_check_and_compose_checks_use_real_endpoints() -> None:
    checks = [rest for keyword, rest in _dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    paths = set(re.findall(r"127\.0\.0\.1:8000(/[a-z]+)", checks[0] + COMPOSE.read_text()))
    assert paths == {"/healthz", "/readyz"}
    assert paths <= _get_paths()


def test_dockerfile_cmd_runs_real_commands() -> None:
    (command,) = [rest for keyword, rest in _dockerfile_instructions() if keyword == "CMD"]
    argv = json.loads(command)
    assert argv[:2] == ["sh", "-c"]
    used = re.findall(r"crm-health ([a-z-]+)", argv[2])
    assert used == ["migrate", "serve"]
    assert set(used) <= _cli_commands().keys()


# -- settings and commands the deployment files and operator docs name ----------------------------


def test_compose_names_only_real_settings() -> None:
    named = set(SETTING.findall(COMPOSE.read_text() + DOCKERFILE.read_text()))
    assert named
    assert {name for name in named if not _known_setting(name)} == set()


def test_compose_and_dockerfile_run_only_real_commands() -> None:
    used = {
        _command(service)[1]
        for service in _services().values()
        if _command(service)[:1] == ["crm-health"]
    }
    assert used == {"migrate", "serve", "worker"}
    assert used <= _cli_commands().keys()


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_operator_docs_name_only_real_settings(doc: Path) -> None:
    text = doc.read_text()
    # `CRM_HEALTH_SMTP_*` names a family: at least one setting has that prefix.
    families = set(re.findall(r"\b(CRM_HEALTH_[A-Z0-9_]*_)\*", text))
    for family in families:
        prefix = family.removeprefix("CRM_HEALTH_").lower()
        assert any(field.startswith(prefix) for field in Settings.model_fields), family
    unknown = {
        name
        for name in SETTING.findall(text)
        if name not in NOT_SETTINGS and not _known_setting(name)
    }
    assert unknown == set(), f"{doc.name} names settings the service does not have"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_operator_docs_run_only_real_commands(doc: Path) -> None:
    commands = _cli_commands()
    for command, sub in COMMAND.findall(_code_text(doc.read_text())):
        assert command in commands, f"{doc.name}: crm-health {command}"
        subcommands = getattr(commands[command], "commands", None)
        if subcommands is not None and sub:
            assert sub in subcommands, f"{doc.name}: crm-health {command} {sub}"
