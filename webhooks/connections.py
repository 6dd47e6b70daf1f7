"""The CRM connections this service serves, with their connectors.

Connections come from three places, merged into one registry, each built by its CRM's entry
(connector.registry):
- the settings: per CRM, one connection (CRM_HEALTH_<CRM>_* , named CRM_HEALTH_CONNECTION_NAME
  unless the CRM's own CONNECTION_NAME setting says otherwise);
- the connections file (CRM_HEALTH_CONNECTIONS_FILE, YAML): any number of named connections,
  e.g. one private app per HubSpot portal;
- HubSpot OAuth installs (stored encrypted in the database): one connection per installed
  portal, named `hubspot-<portalId>`, loaded at start and picked up by every process when added.

Each CRM's intake routes its webhooks among these (connector/<crm>/intake.py).
Segment-compatible product events route by their write key (a `segment` block per connection, or
the CRM_HEALTH_SEGMENT_* settings for the settings connection).
"""

from __future__ import annotations

import functools
import hmac
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model

from connector.base import CRMConnector
from connector.bounds import validation_message
from connector.crm import CRMEntry, CRMInbound, EntryConfigError
from connector.http import RetryingClient
from connector.hubspot.connection import FileHubSpot, HubSpotInbound
from connector.hubspot.oauth import OAuthApp, OAuthBearer, OAuthTokenSource, TokenSet
from connector.model import CollaborationKind
from connector.registry import CRMS
from connector.segment import DEFAULT_COLLABORATION_EVENTS, AccountMatch, SegmentOptions
from webhooks import envref
from webhooks.secrets import SecretKeyError, TokenCipher
from webhooks.settings import Settings
from webhooks.store import installs
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)

OAUTH_CALLBACK_PATH = "/oauth/hubspot/callback"
_KEY_REQUIRED = (
    "CRM_HEALTH_ENCRYPTION_KEY is required with CRM_HEALTH_HUBSPOT_CLIENT_ID: OAuth tokens are "
    "stored encrypted"
)
# The OAuth app as intake sees it: no connection of its own, the secret of every install.
OAUTH_APP_NAME = "hubspot-oauth-app"


class ConnectionsFileError(ValueError):
    """The connections file is missing, unreadable or invalid; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class Connection:
    name: str
    # The CRM's registry name (connector.registry.CRMS), the tag of `crm_settings`.
    crm: str
    # Verifies webhooks signed app-wide (HubSpot's app secret); the other CRMs keep their
    # webhook credential in `crm_settings`.
    webhook_secret: str | None
    # Writes health back and reads records; None means no CRM credentials are configured.
    connector: CRMConnector | None
    origin: Literal["settings", "file", "installed"] = "settings"
    # The CRM's own settings of this connection (HubSpotInbound, SalesforceInbound, ...). None
    # only for connections made by hand, which then act with their CRM's defaults.
    crm_settings: CRMInbound | None = None

    def record_url(self, record_id: str) -> str | None:
        """A link to the record in the CRM, when the CRM's address for it is known."""
        return None if self.crm_settings is None else self.crm_settings.record_url(record_id)

    def webhooks_accepted(self) -> bool:
        """Whether the credential inbound webhooks are checked against is set."""
        if self.crm_settings is None:
            return self.webhook_secret is not None
        return self.crm_settings.accepts_webhooks(self.webhook_secret)


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

    def of_crm(self, crm: str) -> list[Connection]:
        return [c for c in self._by_name.values() if c.crm == crm]

    def app(self, crm: str) -> Connection | None:
        """The CRM's OAuth app, whose secret signs every install's webhooks (HubSpot's only)."""
        if crm != "hubspot" or self._hubspot_app_secret is None:
            return None
        return Connection(
            name=OAUTH_APP_NAME,
            crm=crm,
            webhook_secret=self._hubspot_app_secret,
            connector=None,
            origin="installed",
            crm_settings=HubSpotInbound(accept_legacy_signatures=self._hubspot_app_accepts_legacy),
        )

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


# --- building connections ---------------------------------------------------------------------


def settings_values(settings: Settings, crm: str) -> dict[str, Any]:
    """The settings a CRM's entry reads, as a plain mapping: its own (`<crm>_*`, without the
    prefix) with the default connection name and the public URL."""
    prefix = f"{crm}_"
    return {
        "default_connection_name": settings.connection_name,
        "public_url": settings.public_url,
        **{
            name.removeprefix(prefix): value
            for name, value in settings.model_dump().items()
            if name.startswith(prefix)
        },
    }


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
            policy=self.settings.retry_policy(),
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
        # The settings' HubSpot options, for the installed portal, signed by the app's secret.
        entry = FileHubSpot.from_settings(settings_values(self.settings, "hubspot")).model_copy(
            update={
                "name": name,
                "portal_id": tokens.portal_id,
                "client_secret": SecretStr(self.app.client_secret),
            }
        )
        inbound, connector = entry.build(
            policy=self.settings.retry_policy(),
            transport=self.transport,
            auth=OAuthBearer(source),
            closing=source.aclose,
        )
        return Connection(
            name=name,
            crm="hubspot",
            webhook_secret=self.app.client_secret,
            connector=connector,
            origin="installed",
            crm_settings=inbound,
        )


def _entry_connection(
    entry: CRMEntry,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    *,
    origin: Literal["settings", "file"],
) -> Connection:
    """The connection an entry (of the settings or the file) makes, whatever its CRM."""
    inbound, connector = entry.build(policy=settings.retry_policy(), transport=transport)
    return Connection(
        name=entry.name,
        crm=inbound.crm,
        webhook_secret=entry.signing_secret(),
        connector=connector,
        origin=origin,
        crm_settings=inbound,
    )


def _settings_entries(settings: Settings) -> Iterator[CRMEntry]:
    """The connections the settings configure, one per CRM at most, in the registry's order;
    read one at a time, so a caller's work on the first comes before the second is read."""
    for spec in CRMS.values():
        values = settings_values(settings, spec.name)
        if spec.entry.configured_in_settings(values):
            yield spec.entry.from_settings(values)


# --- the connections file ---------------------------------------------------------------------


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


# Each CRM's entry, with the `segment` block any connection of the file may have.
_FILE_ENTRIES: tuple[type[CRMEntry], ...] = tuple(
    create_model(
        f"{spec.entry.__name__}WithSegment",
        __base__=spec.entry,
        segment=(_FileSegment | None, None),
    )
    for spec in CRMS.values()
)
_FileConnection: Any = Annotated[
    functools.reduce(operator.or_, _FILE_ENTRIES), Field(discriminator="crm")
]
_ConnectionsFile = create_model(
    "_ConnectionsFile",
    __config__=ConfigDict(extra="forbid"),
    connections=(list[_FileConnection], ...),
)


def _segment_of(entry: CRMEntry) -> _FileSegment | None:
    segment = getattr(entry, "segment", None)
    return segment if isinstance(segment, _FileSegment) else None


def read_connections_file(path: Path) -> list[CRMEntry]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectionsFileError(f"cannot read connections file {path}: {exc}") from exc
    expanded = envref.expand(
        raw,
        missing=lambda name: ConnectionsFileError(
            f"{path}: ${{{name}}} is not set in the environment"
        ),
    )
    try:
        document = yaml.safe_load(expanded)
    except yaml.YAMLError as exc:
        raise ConnectionsFileError(f"{path} is not valid YAML: {exc}") from exc
    try:
        parsed: Any = _ConnectionsFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_field_path(error['loc'], error['type'])}: {validation_message(error['msg'])}"
            for error in exc.errors()
        )
        raise ConnectionsFileError(f"{path}: {problems}") from None
    entries: list[CRMEntry] = parsed.connections
    return entries


def _field_path(location: tuple[int | str, ...], error_type: str) -> str:
    """`connections.0.portal_id`: pydantic puts the entry's `crm` value into the location of a
    tagged entry (`connections.0.hubspot.portal_id`), which is no key of the file."""
    parts = [
        str(part)
        for index, part in enumerate(location)
        if not (index == 2 and location[0] == "connections" and part in CRMS)
    ]
    if error_type in {"union_tag_invalid", "union_tag_not_found"}:
        parts.append("crm")
    return ".".join(parts)


def _refuse_taken_name(connections: list[Connection], entry: CRMEntry) -> None:
    taken = next((c for c in connections if c.name == entry.name), None)
    if taken is not None:
        raise ConnectionsFileError(
            f"the {taken.crm} settings already configure connection {entry.name!r}: set "
            f"{entry.setting('connection_name')} to another name"
        )


def connections_from_settings(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> ConnectionRegistry:
    """The connections of the settings and the connections file; installs are loaded later
    (`sync_installed`), as they live in the database."""
    connections: list[Connection] = []
    app = oauth_app(settings)
    try:
        for entry in _settings_entries(settings):
            _refuse_taken_name(connections, entry)
            connections.append(_entry_connection(entry, settings, transport, origin="settings"))
    except EntryConfigError as exc:
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
            connections.extend(
                _entry_connection(entry, settings, transport, origin="file") for entry in entries
            )
        except EntryConfigError as exc:
            raise ConnectionsFileError(f"{settings.connections_file}: {exc}") from None
        for entry in entries:
            segment = _segment_of(entry)
            if segment is not None:
                segment_sources.append(segment.source(entry.name))
    installer = None
    if app is not None:
        if settings.encryption_key is None:
            raise SecretKeyError(_KEY_REQUIRED)
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


def check_connections(settings: Settings) -> None:
    """Fail early, with the setting named, on connections that cannot work: an unreadable
    connections file, or CRM credentials that do not make one flow."""
    try:
        for configured in _settings_entries(settings):
            configured.check()
        if settings.connections_file is not None:
            for entry in read_connections_file(settings.connections_file):
                entry.check()
    except EntryConfigError as exc:
        raise ConnectionsFileError(str(exc)) from None


def check_encryption_key(settings: Settings) -> None:
    """Fail early on OAuth installs without a usable key to store their tokens with."""
    if settings.encryption_key is not None:
        TokenCipher(settings.encryption_key.get_secret_value())
    elif oauth_app(settings) is not None:
        raise SecretKeyError(_KEY_REQUIRED)
