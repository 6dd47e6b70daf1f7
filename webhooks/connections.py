"""The CRM connections this service serves, with their connectors.

Connections come from three places, merged into one registry:
- the CRM_HEALTH_HUBSPOT_* settings: one connection named CRM_HEALTH_CONNECTION_NAME;
- the connections file (CRM_HEALTH_CONNECTIONS_FILE, YAML): any number of named connections,
  e.g. one private app per HubSpot portal;
- OAuth installs (stored encrypted in the database): one connection per installed portal,
  named `hubspot-<portalId>`, loaded at start and picked up by every process when added.

Inbound HubSpot events route to their connection by `portalId`, among the connections whose
secret signed them: a private app's secret owns only its own connections' portals (a connection
without a portal id takes every portal its secret signs), the OAuth app's secret owns the
installed portals. Events of a portal their secret does not own are refused at intake.
Segment-compatible product events route by their write key (a `segment` block per connection, or the
CRM_HEALTH_SEGMENT_* settings for the settings connection).
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import httpx
import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connector.base import CRMConnector
from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.hubspot.api import DEFAULT_API_BASE, HubSpotConnector
from connector.hubspot.backfill import CompanyPropertyMap
from connector.hubspot.oauth import OAuthApp, OAuthBearer, OAuthTokenSource, TokenSet
from connector.mapping import DEFAULT_EXECUTIVE_TITLE
from connector.model import CollaborationKind
from connector.segment import DEFAULT_COLLABORATION_EVENTS, AccountMatch, SegmentOptions
from webhooks import connections_dynamics, connections_salesforce
from webhooks.alerts.channels.config import ChannelsFileError, check_channels
from webhooks.connections_dynamics import DynamicsConfigError, DynamicsInbound, FileDynamics
from webhooks.connections_salesforce import FileSalesforce, SalesforceConfigError, SalesforceInbound
from webhooks.secrets import SecretKeyError, TokenCipher
from webhooks.settings import Settings
from webhooks.store import installs
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)

OAUTH_CALLBACK_PATH = "/oauth/hubspot/callback"
HUBSPOT_RECORD_URL = "https://app.hubspot.com/contacts/{portal}/record/0-2/{record}"


class ConnectionsFileError(ValueError):
    """The connections file is missing, unreadable or invalid; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class Connection:
    name: str
    crm: str
    # Verifies inbound webhooks; None means this connection cannot accept them yet.
    webhook_secret: str | None
    # Writes health back and reads records; None means no CRM credentials are configured.
    connector: CRMConnector | None
    # The HubSpot portal whose events this connection takes; None takes any unclaimed portal.
    portal_id: int | None = None
    origin: Literal["settings", "file", "installed"] = "settings"
    # Salesforce only: what its Outbound Messages are checked against, and how records map.
    salesforce: SalesforceInbound | None = None
    # Dynamics 365 only: the credential its webhooks carry, and how records map.
    dynamics: DynamicsInbound | None = None
    # HubSpot only: v1/v2 signatures (no timestamp, no URL in v1) are accepted for this
    # connection's events; off unless the operator opts in, so v3 is all that counts.
    accept_legacy_signatures: bool = False

    def record_url(self, record_id: str) -> str | None:
        """A link to the record in the CRM, when the CRM's address for it is known."""
        if self.crm == "hubspot" and self.portal_id is not None:
            return HUBSPOT_RECORD_URL.format(portal=self.portal_id, record=record_id)
        if self.salesforce is not None:
            return self.salesforce.record_url(record_id)
        if self.dynamics is not None:
            return self.dynamics.record_url(record_id)
        return None


@dataclass(frozen=True, kw_only=True)
class SegmentSource:
    """A Segment-compatible source: calls sent with `write_key` feed `connection`."""

    connection: str
    write_key: str
    options: SegmentOptions


class ConnectionRegistry:
    def __init__(
        self,
        connections: list[Connection],
        *,
        hubspot_app_secret: str | None = None,
        hubspot_app_accepts_legacy: bool = False,
        installer: Installer | None = None,
        segment_sources: list[SegmentSource] | None = None,
    ) -> None:
        names = [connection.name for connection in connections]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConnectionsFileError(f"connection names must be unique: {duplicates}")
        self._by_name = {connection.name: connection for connection in connections}
        self._hubspot_app_secret = hubspot_app_secret
        self._hubspot_app_accepts_legacy = hubspot_app_accepts_legacy
        self.installer = installer
        self._installed_fingerprint: tuple[int, datetime | None] | None = None
        # When each loaded install was made: only new or re-made installs are rebuilt, so the
        # others keep their token, rate-limit bucket and any daily pause.
        self._installed_at: dict[str, datetime] = {}
        sources = segment_sources or []
        self._segment = {source.connection: source for source in sources}
        if len(self._segment) != len(sources):
            raise ConnectionsFileError(
                "a connection has two Segment sources (settings and connections file)"
            )
        if len({source.write_key for source in sources}) != len(sources):
            raise ConnectionsFileError("each connection needs its own Segment write key")

    def get(self, name: str) -> Connection | None:
        return self._by_name.get(name)

    def all(self) -> list[Connection]:
        return list(self._by_name.values())

    def writers(self) -> Mapping[str, CRMConnector]:
        return {c.name: c.connector for c in self._by_name.values() if c.connector is not None}

    # -- HubSpot routing ------------------------------------------------------------------------

    def hubspot_secrets(self) -> list[str]:
        """Every secret a HubSpot webhook may be signed with (one per app), each once."""
        secrets = [
            c.webhook_secret
            for c in self._by_name.values()
            if c.crm == "hubspot" and c.webhook_secret is not None
        ]
        if self._hubspot_app_secret is not None:
            secrets.append(self._hubspot_app_secret)
        return list(dict.fromkeys(secrets))

    def for_hubspot_portal(self, portal_id: int, *, secret: str) -> Connection | None:
        """The connection that owns `portal_id`'s events signed with `secret`: the one pinned to
        that portal, else the one connection without a portal id."""
        candidates = [
            c for c in self._by_name.values() if c.crm == "hubspot" and c.webhook_secret == secret
        ]
        pinned = [c for c in candidates if c.portal_id == portal_id]
        if pinned:
            return pinned[0]
        unpinned = [c for c in candidates if c.portal_id is None]
        return unpinned[0] if len(unpinned) == 1 else None

    def is_hubspot_app_secret(self, secret: str) -> bool:
        """Whether `secret` is the OAuth app's: the one secret that owns installed portals."""
        return self._hubspot_app_secret is not None and secret == self._hubspot_app_secret

    def hubspot_portals_owned(self, secret: str) -> list[int | None]:
        """The portal ids of the connections `secret` verifies (None: any portal), for logs."""
        return sorted(
            (
                c.portal_id
                for c in self._by_name.values()
                if c.crm == "hubspot" and c.webhook_secret == secret
            ),
            key=lambda portal: -1 if portal is None else portal,
        )

    def hubspot_accepts_legacy(self, secret: str) -> bool:
        """Whether a v1/v2 signature made with `secret` may be checked at all: some connection
        of that secret (or the OAuth app, for its installs) opted in."""
        if self.is_hubspot_app_secret(secret) and self._hubspot_app_accepts_legacy:
            return True
        return any(
            c.accept_legacy_signatures
            for c in self._by_name.values()
            if c.crm == "hubspot" and c.webhook_secret == secret
        )

    @property
    def hubspot_app_accepts_legacy(self) -> bool:
        return self._hubspot_app_accepts_legacy

    # -- Segment-compatible sources --------------------------------------------------------------

    def has_segment_sources(self) -> bool:
        return bool(self._segment)

    def segment_for_write_key(self, write_key: str) -> SegmentSource | None:
        """The source a write key belongs to; every key is compared in constant time."""
        found: SegmentSource | None = None
        for source in self._segment.values():
            if hmac.compare_digest(source.write_key.encode(), write_key.encode()):
                found = source
        return found

    def segment_options(self, connection: str) -> SegmentOptions:
        """How `connection` reads its Segment calls; the defaults when it has no source any
        more (its calls were accepted earlier and are still worth reading)."""
        source = self._segment.get(connection)
        return SegmentOptions() if source is None else source.options

    # -- installs made at run time -------------------------------------------------------------

    async def add_installed(self, connection: Connection, *, installed_at: datetime) -> None:
        """Register (or replace) a connection an install created."""
        previous = self._by_name.get(connection.name)
        self._by_name[connection.name] = connection
        self._installed_at[connection.name] = installed_at
        if previous is not None and previous.connector is not None:
            await previous.connector.aclose()

    async def sync_installed(self, sessions: SessionFactory) -> bool:
        """Load installs saved by any process since the last look; True when something changed.

        One small query when nothing changed, so every worker pass can afford it."""
        if self.installer is None:
            return False
        async with sessions() as session:
            fingerprint = await installs.fingerprint(session)
            if fingerprint == self._installed_fingerprint:
                return False
            stored = await installs.active(session)
        self._installed_fingerprint = fingerprint
        changed = False
        for row in stored:
            current = self._by_name.get(row.name)
            if current is not None and current.origin != "installed":
                log.warning("installed_connection_shadowed", connection=row.name)
                continue
            if self._installed_at.get(row.name) == row.installed_at:
                continue
            try:
                connection = self.installer.connection(row, sessions=sessions)
            except SecretKeyError as exc:
                log.error("installed_connection_unreadable", connection=row.name, error=str(exc))
                continue
            await self.add_installed(connection, installed_at=row.installed_at)
            changed = True
        return changed

    async def aclose(self) -> None:
        for connector in self.writers().values():
            await connector.aclose()


# --- building connectors ----------------------------------------------------------------------


def _policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.crm_retry_max_attempts,
        max_elapsed_seconds=settings.crm_retry_max_seconds,
    )


def _rate_limit(requests_per_second: float) -> RateLimit:
    return RateLimit(
        requests_per_second=requests_per_second, burst=max(1, int(requests_per_second))
    )


def settings_property_map(settings: Settings) -> CompanyPropertyMap:
    return CompanyPropertyMap(
        seats=settings.hubspot_seats_property,
        arr=settings.hubspot_arr_property,
        renewal_date=settings.hubspot_renewal_date_property,
        segment=settings.hubspot_segment_property,
    )


def oauth_app(settings: Settings) -> OAuthApp | None:
    """The HubSpot app for OAuth installs, when client id, secret and public URL are set."""
    client_id = settings.hubspot_client_id
    secret = settings.hubspot_client_secret
    if client_id is None or secret is None or settings.public_url is None:
        return None
    return OAuthApp(
        client_id=client_id,
        client_secret=secret.get_secret_value(),
        redirect_uri=settings.public_url.rstrip("/") + OAUTH_CALLBACK_PATH,
        scopes=tuple(settings.hubspot_oauth_scopes.split()),
        authorize_url=settings.hubspot_oauth_authorize_url,
    )


class Installer:
    """Turns stored OAuth installs into live connections whose refreshed tokens are saved back,
    encrypted, so a restart or another worker continues with them."""

    def __init__(
        self,
        *,
        settings: Settings,
        app: OAuthApp,
        keys: str,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.settings = settings
        self.app = app
        # The encryption key setting: encrypts tokens and signs the OAuth state.
        self.cipher_keys = keys
        self.cipher = TokenCipher(keys)
        self.transport = transport

    def token_client(self) -> RetryingClient:
        """A client for HubSpot's token endpoints (no bearer: the form carries the secret)."""
        return RetryingClient(
            base_url=self.settings.hubspot_api_base,
            name="hubspot:oauth",
            policy=_policy(self.settings),
            transport=self.transport,
        )

    def connection(self, row: installs.Installed, *, sessions: SessionFactory) -> Connection:
        tokens = TokenSet.from_json(self.cipher.decrypt(row.credentials))
        return self.connection_for(row.name, tokens, sessions=sessions)

    def connection_for(
        self, name: str, tokens: TokenSet, *, sessions: SessionFactory
    ) -> Connection:
        async def save_refreshed(fresh: TokenSet) -> None:
            async with sessions() as session, session.begin():
                await installs.update_credentials(
                    session,
                    name=name,
                    credentials=self.cipher.encrypt(fresh.to_json()),
                    now=datetime.now(UTC),
                )

        source = OAuthTokenSource(
            client=self.token_client(),
            app=self.app,
            tokens=tokens,
            on_refresh=save_refreshed,
            refresh_margin_seconds=self.settings.hubspot_token_refresh_margin_seconds,
        )
        connector = HubSpotConnector.create(
            connection=name,
            auth=OAuthBearer(source),
            closing=source.aclose,
            api_base=self.settings.hubspot_api_base,
            policy=_policy(self.settings),
            rate_limit=_rate_limit(self.settings.hubspot_requests_per_second),
            transport=self.transport,
            properties=settings_property_map(self.settings),
            executive_title=self.settings.hubspot_executive_title_pattern,
        )
        return Connection(
            name=name,
            crm="hubspot",
            webhook_secret=self.app.client_secret,
            connector=connector,
            portal_id=tokens.portal_id,
            origin="installed",
            accept_legacy_signatures=self.settings.hubspot_accept_legacy_signatures,
        )


# --- the connections file ---------------------------------------------------------------------

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _HubSpotProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None


class _FileSegment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    write_key: SecretStr = Field(min_length=8)
    account_match: AccountMatch = "trait"
    account_trait: str = Field(default="crm_id", min_length=1)
    collaboration_events: dict[str, CollaborationKind] = Field(
        default_factory=lambda: dict(DEFAULT_COLLABORATION_EVENTS)
    )

    def source(self, connection: str) -> SegmentSource:
        return SegmentSource(
            connection=connection,
            write_key=self.write_key.get_secret_value(),
            options=SegmentOptions(
                account_match=self.account_match,
                account_trait=self.account_trait,
                collaboration_events=self.collaboration_events,
            ),
        )


class _FileHubSpot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    crm: Literal["hubspot"]
    portal_id: int | None = Field(default=None, gt=0)
    access_token: SecretStr | None = None
    client_secret: SecretStr | None = None
    accept_legacy_signatures: bool = False
    api_base: str = DEFAULT_API_BASE
    requests_per_second: float = Field(default=10, gt=0)
    properties: _HubSpotProperties = _HubSpotProperties()
    executive_title: str = DEFAULT_EXECUTIVE_TITLE
    segment: _FileSegment | None = None


class _FileSalesforce(FileSalesforce):
    segment: _FileSegment | None = None


class _FileDynamics(FileDynamics):
    segment: _FileSegment | None = None


_FileConnection = Annotated[
    _FileHubSpot | _FileSalesforce | _FileDynamics, Field(discriminator="crm")
]


class _ConnectionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connections: list[_FileConnection]


def _expand(text: str, path: Path) -> str:
    """Replace ${VAR} with the environment's value, so secrets stay out of the file."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConnectionsFileError(f"{path}: ${{{name}}} is not set in the environment")
        return os.environ[name]

    return _ENV_REFERENCE.sub(value, text)


def read_connections_file(path: Path) -> list[_FileConnection]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectionsFileError(f"cannot read connections file {path}: {exc}") from exc
    try:
        document = yaml.safe_load(_expand(raw, path))
    except yaml.YAMLError as exc:
        raise ConnectionsFileError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return _ConnectionsFile.model_validate(document).connections
    except ValidationError as exc:
        problems = "; ".join(
            f"{_field_path(error['loc'], error['type'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConnectionsFileError(f"{path}: {problems}") from None


_CRM_TAGS = frozenset({"hubspot", "salesforce", "dynamics"})


def _field_path(location: tuple[int | str, ...], error_type: str) -> str:
    """`connections.0.portal_id`: pydantic puts the entry's `crm` value into the location of a
    tagged entry (`connections.0.hubspot.portal_id`), which is no key of the file."""
    parts = [
        str(part)
        for index, part in enumerate(location)
        if not (index == 2 and location[0] == "connections" and part in _CRM_TAGS)
    ]
    if error_type in {"union_tag_invalid", "union_tag_not_found"}:
        parts.append("crm")
    return ".".join(parts)


def _file_connection(
    entry: _FileConnection, settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> Connection:
    if isinstance(entry, _FileSalesforce | _FileDynamics):
        return _crm_entry_connection(entry, settings, transport, origin="file")
    connector: CRMConnector | None = None
    if entry.access_token is not None:
        connector = HubSpotConnector.create(
            connection=entry.name,
            access_token=entry.access_token.get_secret_value(),
            api_base=entry.api_base,
            policy=_policy(settings),
            rate_limit=_rate_limit(entry.requests_per_second),
            transport=transport,
            properties=CompanyPropertyMap(**entry.properties.model_dump()),
            executive_title=entry.executive_title,
        )
    return Connection(
        name=entry.name,
        crm=entry.crm,
        webhook_secret=None
        if entry.client_secret is None
        else entry.client_secret.get_secret_value(),
        connector=connector,
        portal_id=entry.portal_id,
        origin="file",
        accept_legacy_signatures=entry.accept_legacy_signatures,
    )


def _crm_entry_connection(
    entry: FileSalesforce | FileDynamics,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    *,
    origin: Literal["settings", "file"],
) -> Connection:
    """The connection a Salesforce or Dynamics entry (of the settings or the file) makes."""
    if isinstance(entry, FileSalesforce):
        salesforce, connector = entry.build(policy=_policy(settings), transport=transport)
        return Connection(
            name=entry.name,
            crm="salesforce",
            webhook_secret=None,
            connector=connector,
            origin=origin,
            salesforce=salesforce,
        )
    dynamics, connector = entry.build(policy=_policy(settings), transport=transport)
    return Connection(
        name=entry.name,
        crm="dynamics",
        webhook_secret=None,
        connector=connector,
        origin=origin,
        dynamics=dynamics,
    )


def _settings_entries(settings: Settings) -> Iterator[tuple[FileSalesforce | FileDynamics, str]]:
    """The Salesforce and Dynamics connections the settings configure, each with the setting
    that names it; read one at a time, so a caller's work on the first comes before the
    second is read."""
    if connections_salesforce.configured_in_settings(settings):
        yield FileSalesforce.from_settings(settings), "CRM_HEALTH_SALESFORCE_CONNECTION_NAME"
    if connections_dynamics.configured_in_settings(settings):
        yield FileDynamics.from_settings(settings), "CRM_HEALTH_DYNAMICS_CONNECTION_NAME"


def _refuse_taken_name(connections: list[Connection], name: str, setting: str) -> None:
    taken = next((c for c in connections if c.name == name), None)
    if taken is not None:
        raise ConnectionsFileError(
            f"the {taken.crm} settings already configure connection {name!r}: set {setting} to "
            "another name"
        )


def connections_from_settings(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> ConnectionRegistry:
    """The connections of the settings and the connections file; installs are loaded later
    (`sync_installed`), as they live in the database."""
    connections: list[Connection] = []
    secret = settings.hubspot_client_secret
    token = settings.hubspot_access_token
    app = oauth_app(settings)
    # With an OAuth app the client secret belongs to the app, not to a connection of its own:
    # a settings connection exists only for a private-app token (or webhooks without OAuth).
    if token is not None or (secret is not None and app is None):
        connector: CRMConnector | None = None
        if token is not None:
            connector = HubSpotConnector.create(
                connection=settings.connection_name,
                access_token=token.get_secret_value(),
                api_base=settings.hubspot_api_base,
                policy=_policy(settings),
                rate_limit=_rate_limit(settings.hubspot_requests_per_second),
                transport=transport,
                properties=settings_property_map(settings),
                executive_title=settings.hubspot_executive_title_pattern,
            )
        connections.append(
            Connection(
                name=settings.connection_name,
                crm="hubspot",
                webhook_secret=None if secret is None else secret.get_secret_value(),
                connector=connector,
                portal_id=settings.hubspot_portal_id,
                accept_legacy_signatures=settings.hubspot_accept_legacy_signatures,
            )
        )
    try:
        for entry, name_setting in _settings_entries(settings):
            connection = _crm_entry_connection(entry, settings, transport, origin="settings")
            _refuse_taken_name(connections, connection.name, name_setting)
            connections.append(connection)
    except (SalesforceConfigError, DynamicsConfigError) as exc:
        raise ConnectionsFileError(str(exc)) from None
    segment_sources: list[SegmentSource] = []
    if settings.segment_write_key is not None:
        segment_sources.append(
            SegmentSource(
                connection=settings.connection_name,
                write_key=settings.segment_write_key.get_secret_value(),
                options=SegmentOptions(
                    account_match=settings.segment_account_match,
                    account_trait=settings.segment_account_trait,
                    collaboration_events=settings.segment_collaboration_events,
                ),
            )
        )
    if settings.connections_file is not None:
        entries = read_connections_file(settings.connections_file)
        try:
            connections.extend(_file_connection(entry, settings, transport) for entry in entries)
        except (SalesforceConfigError, DynamicsConfigError) as exc:
            raise ConnectionsFileError(f"{settings.connections_file}: {exc}") from None
        segment_sources.extend(
            entry.segment.source(entry.name) for entry in entries if entry.segment is not None
        )
    installer = None
    if app is not None:
        if settings.encryption_key is None:
            raise SecretKeyError(
                "CRM_HEALTH_ENCRYPTION_KEY is required with CRM_HEALTH_HUBSPOT_CLIENT_ID: OAuth "
                "tokens are stored encrypted"
            )
        installer = Installer(
            settings=settings,
            app=app,
            keys=settings.encryption_key.get_secret_value(),
            transport=transport,
        )
    return ConnectionRegistry(
        connections,
        hubspot_app_secret=None if app is None else app.client_secret,
        hubspot_app_accepts_legacy=settings.hubspot_accept_legacy_signatures,
        installer=installer,
        segment_sources=segment_sources,
    )


def check_configuration(settings: Settings) -> None:
    """Fail early, with the setting named, on configuration that cannot work: an unreadable
    connections or alert channels file, Salesforce credentials that do not make one OAuth flow,
    or OAuth without a usable encryption key."""
    try:
        for configured, _ in _settings_entries(settings):
            configured.check()
        if settings.connections_file is not None:
            for entry in read_connections_file(settings.connections_file):
                if isinstance(entry, _FileSalesforce | _FileDynamics):
                    entry.check()
    except (SalesforceConfigError, DynamicsConfigError) as exc:
        raise ConnectionsFileError(str(exc)) from None
    try:
        check_channels(settings)
    except ChannelsFileError as exc:
        raise channels_setting_named(exc) from None
    if settings.encryption_key is not None:
        TokenCipher(settings.encryption_key.get_secret_value())
    elif oauth_app(settings) is not None:
        raise SecretKeyError(
            "CRM_HEALTH_ENCRYPTION_KEY is required with CRM_HEALTH_HUBSPOT_CLIENT_ID: OAuth "
            "tokens are stored encrypted"
        )


def channels_setting_named(exc: ChannelsFileError) -> ChannelsFileError:
    """The error with the setting it is about in front, unless it names one already (the
    SMTP settings an e-mail channel needs)."""
    message = str(exc)
    if message.startswith("CRM_HEALTH_"):
        return exc
    return ChannelsFileError(f"CRM_HEALTH_ALERT_CHANNELS_FILE: {message}")
