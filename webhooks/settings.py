"""Service settings from the environment (prefix CRM_HEALTH_); read once, by the entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.hubspot.backfill import DEFAULT_EXECUTIVE_TITLE
from connector.hubspot.oauth import DEFAULT_AUTHORIZE_URL, DEFAULT_SCOPES
from connector.model import CollaborationKind
from connector.segment import DEFAULT_COLLABORATION_EVENTS, AccountMatch

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./crm_health.db"


def normalise_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://, sqlite://) with async drivers."""
    for prefix, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return driver + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_HEALTH_", env_file=None, extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL; a SQLite file in the working directory by default. "
        "postgresql:// URLs use asyncpg.",
    )
    public_url: str | None = Field(
        default=None,
        description="Externally visible base URL (e.g. https://health.example.com); HubSpot v3 "
        "signatures cover the full URL, so set it when running behind a proxy.",
    )
    connection_name: str = Field(
        default="default", description="Name of the connection configured from these settings."
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bootstrap admin API key for the CRM_HEALTH_CONNECTION_NAME connection; "
        "create real keys with `crm-health keys create`.",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs admin page session cookies; set it (32+ random characters) when "
        "several replicas serve the page. Unset, each process makes its own, so sessions end "
        "on restart.",
    )
    session_hours: float = Field(
        default=8, gt=0, le=720, description="How long an admin page session lasts."
    )

    hubspot_client_secret: SecretStr | None = Field(
        default=None, description="HubSpot app client secret: verifies webhook signatures."
    )
    hubspot_access_token: SecretStr | None = Field(
        default=None, description="HubSpot private-app access token: writes health fields."
    )
    hubspot_api_base: str = Field(
        default="https://api.hubapi.com",
        description="HubSpot API base URL; point it at the sandbox for demos and tests.",
    )
    hubspot_portal_id: int | None = Field(
        default=None,
        gt=0,
        description="Portal (hub) id of the private-app connection; unset, it takes the events of "
        "every portal no other connection claims.",
    )
    hubspot_client_id: str | None = Field(
        default=None,
        description="HubSpot app client id: enables OAuth installs at /oauth/hubspot/install "
        "(needs CRM_HEALTH_PUBLIC_URL and CRM_HEALTH_ENCRYPTION_KEY).",
    )
    hubspot_oauth_scopes: str = Field(
        default=" ".join(DEFAULT_SCOPES),
        description="Space-separated scopes requested by an OAuth install.",
    )
    hubspot_oauth_authorize_url: str = Field(
        default=DEFAULT_AUTHORIZE_URL,
        description="HubSpot's consent page; the sandbox serves its own at /oauth/authorize.",
    )
    hubspot_token_refresh_margin_seconds: float = Field(
        default=300, ge=0, description="Refresh an OAuth access token this long before it expires."
    )
    hubspot_seats_property: str | None = Field(
        default=None, description="Company property holding the seats purchased."
    )
    hubspot_arr_property: str | None = Field(
        default=None, description="Company property holding the annual recurring revenue."
    )
    hubspot_renewal_date_property: str | None = Field(
        default=None, description="Company property holding the renewal date."
    )
    hubspot_segment_property: str | None = Field(
        default=None, description="Company property holding the segment or tier."
    )
    hubspot_executive_title_pattern: str = Field(
        default=DEFAULT_EXECUTIVE_TITLE,
        description="Regular expression (case-insensitive) of job titles that count as the "
        "executive suite.",
    )
    hubspot_accept_legacy_signatures: bool = Field(
        default=True,
        description="Accept v1/v2 signatures (no timestamp) when a request has no v3 signature.",
    )

    segment_write_key: SecretStr | None = Field(
        default=None,
        description="Write key of the Segment-compatible source (/ingest/segment/v1/*, sent as "
        "the HTTP Basic user) feeding the CRM_HEALTH_CONNECTION_NAME connection.",
    )
    segment_account_match: AccountMatch = Field(
        default="trait",
        description="How a Segment groupId finds its CRM account: `trait` (a group trait holds "
        "the CRM record id), `domain` (a group trait holds the company website or domain) or "
        "`group_id` (the groupId is the CRM record id).",
    )
    segment_account_trait: str = Field(
        default="crm_id",
        min_length=1,
        description="The group trait read for `trait` and `domain` matching (case-insensitive, "
        "e.g. crm_id, hubspot_company_id, website).",
    )
    segment_collaboration_events: dict[str, CollaborationKind] = Field(
        default=DEFAULT_COLLABORATION_EVENTS,
        description="Track event names that count as collaboration, with their kind (JSON "
        "object; names match without case).",
    )

    connections_file: Path | None = Field(
        default=None,
        description="YAML file listing further connections (several portals); ${VAR} in it is "
        "read from the environment.",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="Key(s) encrypting stored OAuth tokens: a Fernet key or a passphrase of 32+ "
        "characters; comma-separated for rotation (the first encrypts).",
    )
    provision_on_start: bool = Field(
        default=True,
        description="Create or update the health fields in every connected CRM when the service "
        "starts (idempotent).",
    )

    crm_retry_max_attempts: int = Field(
        default=5, gt=0, description="Tries of one CRM call (429, 5xx, network errors)."
    )
    hubspot_requests_per_second: float = Field(
        default=10,
        gt=0,
        description="Client-side rate limit of HubSpot calls (100 per 10 s on the smallest plans).",
    )
    crm_retry_max_seconds: float = Field(
        default=60, gt=0, description="Time budget of one CRM call across its retries."
    )

    webhook_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest webhook body accepted (413 above)."
    )
    webhook_timestamp_tolerance_seconds: int = Field(
        default=300, gt=0, description="Oldest accepted signature timestamp."
    )

    alert_channels_file: Path | None = Field(
        default=None,
        description="YAML file of the alert channels (slack, teams, email, webhook, crm_task) "
        "that alert rules name; ${VAR} in it is read from the environment.",
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server of `email` alert channels."
    )
    smtp_port: int | None = Field(
        default=None,
        gt=0,
        le=65535,
        description="SMTP port; unset, the usual one of CRM_HEALTH_SMTP_SECURITY (587 starttls, "
        "465 ssl, 25 none).",
    )
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="`starttls` (upgrade a plain connection), `ssl` (TLS from the start) or "
        "`none` (a local relay only).",
    )
    smtp_username: str | None = Field(
        default=None, description="SMTP login user; unset, no login is attempted."
    )
    smtp_password: SecretStr | None = Field(default=None, description="SMTP login password.")
    smtp_from_address: str | None = Field(
        default=None,
        description="From address of alert e-mails, e.g. `Customer health <health@example.com>`.",
    )
    smtp_timeout_seconds: float = Field(
        default=30, gt=0, description="Timeout of each SMTP connection and command."
    )

    run_worker: bool = Field(default=True, description="Run the pipeline worker inside `serve`.")
    worker_batch_size: int = Field(
        default=5000,
        gt=0,
        description="Inbox events (and write-backs) claimed at once; larger batches coalesce "
        "more, smaller ones hold SQLite's single writer for less time.",
    )
    worker_recompute_chunk: int = Field(
        default=1000, gt=0, description="Accounts rescored per step after a config change."
    )
    worker_poll_seconds: float = Field(default=0.5, gt=0, description="Idle wait between polls.")
    worker_lease_seconds: float = Field(
        default=120, gt=0, description="A claimed batch not finished within this is re-claimed."
    )
    worker_max_attempts: int = Field(
        default=8,
        gt=0,
        description="Tries before an event goes to the dead letters or a write-back is failed.",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log level written."
    )
    log_format: Literal["json", "console"] = Field(
        default="json", description="JSON lines for log shippers, or console for people."
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value)


def settings_table() -> str:
    """The README's configuration reference, generated from this model so it cannot drift
    (`make settings-table` writes it; a test checks the README holds exactly this)."""
    lines = ["| Variable | Default | What it does |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if default is None:
            shown = "(unset)"
        elif isinstance(default, dict):
            shown = f"`{json.dumps(default)}`"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        else:
            shown = f"`{default}`" if str(default) else '`""`'
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `CRM_HEALTH_{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines)


def write_settings_table(readme: Path) -> None:
    """Replace the table between the settings-table markers of `readme`."""
    text = readme.read_text()
    head, _, rest = text.partition("<!-- settings-table:start -->")
    _, _, tail = rest.partition("<!-- settings-table:end -->")
    table = f"<!-- settings-table:start -->\n{settings_table()}\n<!-- settings-table:end -->"
    readme.write_text(head + table + tail)
