"""Service settings from the environment (prefix CRM_HEALTH_); read once, by the entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.http import RetryPolicy
from connector.hubspot.oauth import DEFAULT_AUTHORIZE_URL, DEFAULT_SCOPES
from connector.mapping import DEFAULT_EXECUTIVE_TITLE
from connector.model import CollaborationKind
from connector.salesforce.api import DEFAULT_API_VERSION
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
    # An empty variable (`CRM_HEALTH_HUBSPOT_CLIENT_SECRET=` from a template) means unset, never
    # an empty secret that anyone could sign with.
    model_config = SettingsConfigDict(
        env_prefix="CRM_HEALTH_", env_file=None, extra="ignore", env_ignore_empty=True
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL; a SQLite file in the working directory by default. "
        "postgresql:// URLs use asyncpg. A command's --database outranks it.",
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
        default=False,
        description="Accept v1/v2 signatures (no timestamp) when a request has no v3 signature, "
        "for the settings connection and OAuth installs (connections-file entries opt in with "
        "`accept_legacy_signatures`); off: v3 only, so a stale request cannot be replayed "
        "with its v3 headers stripped.",
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
    salesforce_connection_name: str | None = Field(
        default=None,
        description="Name of the Salesforce connection configured from these settings; unset, "
        "CRM_HEALTH_CONNECTION_NAME (set it when HubSpot settings use that name already).",
    )
    salesforce_login_url: str = Field(
        default="https://login.salesforce.com",
        description="Where tokens are requested: https://login.salesforce.com, "
        "https://test.salesforce.com for a sandbox, or the org's My Domain URL (required for "
        "the client-credentials flow).",
    )
    salesforce_client_id: str | None = Field(
        default=None, description="Consumer key of the Salesforce connected app."
    )
    salesforce_username: str | None = Field(
        default=None,
        description="Integration user for the JWT bearer flow (with "
        "CRM_HEALTH_SALESFORCE_PRIVATE_KEY or _PRIVATE_KEY_FILE).",
    )
    salesforce_private_key: SecretStr | None = Field(
        default=None,
        description="PEM RSA private key whose certificate is uploaded to the connected app "
        "(JWT bearer flow).",
    )
    salesforce_private_key_file: Path | None = Field(
        default=None, description="File holding that PEM key, instead of the key itself."
    )
    salesforce_client_secret: SecretStr | None = Field(
        default=None,
        description="Consumer secret for the client-credentials flow (instead of a username "
        "and key); the connected app names the user it runs as.",
    )
    salesforce_organization_id: str | None = Field(
        default=None,
        pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$",
        description="The org's id (00D...): Outbound Messages from any other org are refused; "
        "required to accept them.",
    )
    salesforce_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret Outbound Messages must carry, as the last path segment "
        "(/webhooks/salesforce/{connection}/{secret}) or an X-CRM-Health-Secret header. "
        "Required: without it messages are refused unless CRM_HEALTH_SALESFORCE_ALLOW_UNSIGNED.",
    )
    salesforce_allow_unsigned: bool = Field(
        default=False,
        description="Accept Outbound Messages without a shared secret (only the org id is "
        "checked, and anyone who knows it can post as the org); start-up logs a warning.",
    )
    salesforce_api_version: str = Field(
        default=DEFAULT_API_VERSION,
        pattern=r"^v\d{2}\.0$",
        description="Salesforce REST API version used for every call.",
    )
    salesforce_requests_per_second: float = Field(
        default=5, gt=0, description="Client-side rate limit of Salesforce calls."
    )
    salesforce_session_seconds: float = Field(
        default=7200,
        gt=60,
        description="The org's session timeout: tokens are renewed shortly before it ends "
        "(and whenever Salesforce answers INVALID_SESSION_ID).",
    )
    salesforce_daily_limit_pause_seconds: float = Field(
        default=1800,
        gt=0,
        description="How long write-back and reads pause after REQUEST_LIMIT_EXCEEDED (the "
        "org's rolling 24-hour API allocation is used up).",
    )
    salesforce_permission_set: str = Field(
        default="Customer_Health",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$",
        description="Permission set `crm-health provision` creates to grant the health fields "
        "(assigned to the integration user).",
    )
    salesforce_seats_field: str | None = Field(
        default=None, description="Account field holding licensed seats, e.g. Seats__c."
    )
    salesforce_arr_field: str | None = Field(
        default=None, description="Account field holding what the customer pays a year."
    )
    salesforce_renewal_date_field: str | None = Field(
        default=None, description="Account field holding the next renewal date."
    )
    salesforce_segment_field: str | None = Field(
        default=None, description="Account field naming the segment (config overrides by it)."
    )
    salesforce_executive_title_pattern: str = Field(
        default=DEFAULT_EXECUTIVE_TITLE,
        description="Case-insensitive regex on Contact.Title marking executives.",
    )

    dynamics_connection_name: str | None = Field(
        default=None,
        description="Name of the Dynamics 365 connection configured from these settings; unset, "
        "CRM_HEALTH_CONNECTION_NAME (set it when another CRM's settings use that name).",
    )
    dynamics_org_url: str | None = Field(
        default=None,
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/?$",
        description="The Dataverse environment, e.g. https://contoso.crm.dynamics.com.",
    )
    dynamics_tenant_id: str | None = Field(
        default=None, description="Microsoft Entra tenant (directory) id of the app registration."
    )
    dynamics_client_id: str | None = Field(
        default=None,
        description="Application (client) id of the Entra app registration that is an "
        "application user in the environment.",
    )
    dynamics_client_secret: SecretStr | None = Field(
        default=None, description="Client secret of that app registration."
    )
    dynamics_authority: str = Field(
        default="https://login.microsoftonline.com",
        description="Entra authority host (another cloud's, e.g. https://login.microsoftonline.us).",
    )
    dynamics_webhook_auth: Literal["webhook_key", "header", "query_string"] = Field(
        default="webhook_key",
        description="How the registered webhook authenticates: `webhook_key` (?code=), `header` "
        "(HttpHeader) or `query_string` (HttpQueryString).",
    )
    dynamics_webhook_auth_name: str = Field(
        default="x-crm-health-key",
        min_length=1,
        description="Header or query-string key carrying the value (not used by webhook_key).",
    )
    dynamics_webhook_auth_value: SecretStr | None = Field(
        default=None,
        description="The value the webhook registration sends; required to accept webhooks.",
    )
    dynamics_publisher_prefix: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9]{1,7}$",
        description="Customization prefix of the solution's publisher: columns are created as "
        "<prefix>_healthscore etc. Required with credentials.",
    )
    dynamics_option_value_prefix: int = Field(
        default=10000,
        ge=10000,
        le=99999,
        description="Option value prefix of that publisher (choice values of the band column).",
    )
    dynamics_solution: str = Field(
        default="CustomerHealth",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Unique name of the unmanaged solution the columns are created in.",
    )
    dynamics_requests_per_second: float = Field(
        default=10, gt=0, description="Client-side rate limit of Dataverse calls."
    )
    dynamics_max_concurrency: int = Field(
        default=8,
        ge=1,
        le=52,
        description="Dataverse requests in flight at once (service protection allows 52 per user).",
    )
    dynamics_seats_column: str | None = Field(
        default=None, description="account column holding licensed seats, e.g. new_seats."
    )
    dynamics_arr_column: str | None = Field(
        default=None, description="account column holding what the customer pays a year."
    )
    dynamics_renewal_date_column: str | None = Field(
        default=None, description="account column holding the next renewal date."
    )
    dynamics_segment_column: str | None = Field(
        default=None, description="account column naming the segment (config overrides by it)."
    )
    dynamics_executive_title_pattern: str = Field(
        default=DEFAULT_EXECUTIVE_TITLE,
        description="Case-insensitive regex on contact job titles marking executives.",
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

    # The HTTP server's own defences against slow or too many clients (docs/operations.md).
    http_header_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="A request's line and headers must arrive within this time of its first "
        "byte (or of the connection opening); else 408 and the connection is closed.",
    )
    http_body_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="A request's whole body must arrive within this time of its headers; else "
        "408 and the connection is closed.",
    )
    http_keepalive_timeout_seconds: int = Field(
        default=5, gt=0, description="An idle keep-alive connection is closed after this time."
    )
    http_max_concurrency: int = Field(
        default=1000,
        gt=0,
        description="Requests handled at once; more are answered 503 with Retry-After at once.",
    )
    http_max_connections: int | None = Field(
        default=None,
        gt=0,
        description="Open connections; more are closed as soon as accepted. Unset: the "
        "process's open-files limit less a reserve for the database and CRM calls, so the "
        "server never runs out of file descriptors.",
    )

    alert_channels_file: Path | None = Field(
        default=None,
        description="YAML file of the alert channels (slack, teams, email, webhook, crm_task, "
        "owner) that alert rules name; ${VAR} in it is read from the environment.",
    )
    alert_daily_limit: int = Field(
        default=50,
        ge=1,
        description="Messages an alert channel sends per UTC day when its `daily_limit` in the "
        "channels file is unset or 0 (a digest counts as one); notices over it are held for "
        "the channel's overflow digest at the next UTC midnight, never dropped. "
        "`daily_limit: none` gives a channel no limit.",
    )
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server of `email` alert channels (and `owner` ones via email).",
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
        description="Tries of an event that fails to process before it goes to the dead "
        "letters. Waiting for a CRM costs no tries: outages never dead-letter events, and "
        "write-backs are retried until the CRM takes them or refuses the record.",
    )
    worker_retry_base_seconds: float = Field(
        default=5,
        gt=0,
        description="First wait before an event, write-back or alert is tried again; each "
        "failure in a row doubles it, up to CRM_HEALTH_WORKER_RETRY_MAX_SECONDS.",
    )
    worker_retry_max_seconds: float = Field(
        default=900,
        gt=0,
        description="Longest wait between tries: during a CRM outage of any length the worker "
        "tries again at least this often, so health lands soon after the CRM is back.",
    )
    attribute_precedence: Literal["crm", "latest"] = Field(
        default="crm",
        description="Where the CRM and a native source (ingest API, CSV) both give an account "
        "attribute (owner, segment, seats...): `crm`, the CRM's value wins whenever it has one "
        "and a native value only fills what the CRM leaves empty; `latest`, the later one wins. "
        "Either way a source that does not carry a value never erases it (docs/ingestion.md).",
    )
    alert_max_event_age_hours: float = Field(
        default=24,
        gt=0,
        description="Alerts tell people only about changes caused by events newer than this "
        "many hours. Older events (backfills, replays, CSV imports of history), an account's "
        "first scoring and rescores after a configuration change record alerts without "
        "notifying anyone, and the alert says why (docs/alerts.md).",
    )
    reconcile_interval_hours: float = Field(
        default=24,
        ge=0,
        description="Hours between the worker's reconciles, which read the health fields back "
        "from the CRM and re-send values that differ (0: only `crm-health reconcile`).",
    )

    rescore_interval_hours: float = Field(
        default=24,
        ge=0,
        description="Hours between the worker's rescores of every account from its stored "
        "facts, so an account that sends nothing still ages: its days since last use, its "
        "windows, its onboarding period and a CSM sentiment's expiry move on, and the alerts "
        "they raise tell people (0: only events and configuration changes rescore).",
    )

    retention_enabled: bool = Field(
        default=True,
        description="Whether the worker prunes old rows every "
        "CRM_HEALTH_RETENTION_INTERVAL_SECONDS (docs/operations.md, Retention). `crm-health "
        "prune` works either way.",
    )
    retention_interval_seconds: float = Field(
        default=3600, gt=0, description="Seconds between the worker's retention runs."
    )
    retention_batch: int = Field(
        default=5000,
        ge=1,
        # Each batch is deleted by its keys, two bound parameters a row at most: within both
        # backends' 32,766.
        le=10_000,
        description="Rows deleted per statement (each its own short transaction) by retention.",
    )
    inbox_retention_days: float = Field(
        default=14,
        gt=0,
        description="Processed inbox events (done, ignored) are deleted this many days after "
        "processing; dead letters, unmatched and waiting events never are.",
    )
    fact_retention_days: float = Field(
        default=730,
        ge=365,
        description="Interactions, collaboration events, tickets and usage days older than "
        "this are deleted, attribute history a year later (momentum reads ARR a year back; "
        "the value in force then is kept), health history too, except each account's last "
        "row before it. Outcomes are kept. Backtests stay exact for moments up to this many "
        "days minus 180 ago.",
    )
    health_history_full_days: float = Field(
        default=90,
        gt=0,
        description="Health history older than this is thinned to each account's last row of "
        "a UTC day (one per configuration version in force that day).",
    )
    alert_retention_days: float = Field(
        default=180,
        gt=0,
        description="Resolved alerts (with their reasons and deliveries) are deleted this many "
        "days after resolution, and sent or failed deliveries of open alerts this many days "
        "after creation; never less than the longest alert rule cooldown.",
    )
    housekeeping_retention_days: float = Field(
        default=30,
        gt=0,
        description="Expired admin sessions and install links, finished recompute jobs, alert "
        "channel daily counts and cached CRM owners are deleted after this many days.",
    )

    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code (three capital letters) of the currency ARR is kept in: "
        "shown beside the amounts of the portfolio and the accounts export (amounts are never "
        "converted).",
    )

    preview_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Config previews computed at once; others wait up to 30 s for a turn, "
        "then get 503 with Retry-After. They share the event loop with webhook intake: more "
        "at once finish no sooner and slow acknowledgements down. (Backtest and suggestion "
        "jobs run one at a time per process, queued.)",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log level written."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="auto: readable console lines on a terminal, JSON lines otherwise (a pipe, "
        "a file, a service manager); json or console: always that.",
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value)

    def retry_policy(self) -> RetryPolicy:
        """How often and how long one call to a CRM or an alert channel is retried."""
        return RetryPolicy(
            max_attempts=self.crm_retry_max_attempts,
            max_elapsed_seconds=self.crm_retry_max_seconds,
        )


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
