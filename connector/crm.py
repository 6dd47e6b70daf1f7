"""What the service knows of a CRM: its connection entry (one model for the settings and the
connections file), the per-connection settings a built connection carries, and the spec that
ties them to the CRM's words. Each CRM's package fills these in; connector.registry lists them."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from connector.base import CRMConnector
from connector.bounds import validation_message
from connector.http import RetryPolicy

if TYPE_CHECKING:
    from connector.decoding import Decoder
    from connector.inbound import InboundSpec


class EntryConfigError(ValueError):
    """A CRM connection's settings or file entry that cannot work; names the setting or key."""


class AttributeSources(Protocol):
    """Where a connection's mapping reads seats, ARR and the renewal date (None: unmapped)."""

    @property
    def seats(self) -> str | None: ...
    @property
    def arr(self) -> str | None: ...
    @property
    def renewal_date(self) -> str | None: ...


@dataclass(frozen=True, kw_only=True)
class CRMInbound:
    """A built connection's own CRM settings: what its webhooks are checked against and how
    its records map. Each CRM subclasses it; `crm` is the tag."""

    crm: ClassVar[str]

    def record_url(self, record_id: str) -> str | None:
        """A link to the record in the CRM, when the CRM's address for it is known."""
        return None

    def attribute_sources(self) -> AttributeSources | None:
        """The mapping in use for seats, ARR and the renewal date; None without one."""
        return None

    def accepts_webhooks(self, webhook_secret: str | None) -> bool:
        """Whether a webhook could be accepted: the credential it is checked against is set."""
        return webhook_secret is not None


class CRMEntry(BaseModel):
    """Base of a `crm: <name>` entry of the connections file, and of the same CRM's settings
    read into that shape; subclasses add their fields and say how those map to settings
    (`SETTING_PREFIX`, `NESTED_SUFFIX`, `RENAMED_SETTINGS`)."""

    model_config = ConfigDict(extra="forbid")

    # e.g. "CRM_HEALTH_SALESFORCE_": field `client_id` is CRM_HEALTH_SALESFORCE_CLIENT_ID.
    SETTING_PREFIX: ClassVar[str]
    # A nested block's keys as settings: {"fields": "_field"} makes fields.seats ..._SEATS_FIELD.
    NESTED_SUFFIX: ClassVar[dict[str, str]] = {}
    # Fields whose setting has another name.
    RENAMED_SETTINGS: ClassVar[dict[str, str]] = {"executive_title": "executive_title_pattern"}
    # Settings (without the prefix) any of which, set, makes a settings connection.
    CONFIGURING_SETTINGS: ClassVar[tuple[str, ...]] = ()
    # The error this CRM's entries raise (a subclass naming the CRM).
    ERROR: ClassVar[type[EntryConfigError]] = EntryConfigError

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # The CRM's registry name; each subclass narrows it to its Literal (the file's tag).
    crm: str
    # Errors name environment settings rather than file keys (see `read_settings`).
    _from_settings: bool = PrivateAttr(default=False)

    @classmethod
    def setting(cls, field: str) -> str:
        return f"{cls.SETTING_PREFIX}{cls.RENAMED_SETTINGS.get(field, field).upper()}"

    @classmethod
    def configured_in_settings(cls, values: Mapping[str, Any]) -> bool:
        """Whether the settings (`values`: this CRM's settings without their prefix, plus
        `default_connection_name` and `public_url`) configure a connection of this CRM."""
        return any(values.get(name) is not None for name in cls.CONFIGURING_SETTINGS)

    @classmethod
    def settings_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entry's fields as the settings give them (a setting per field, nested blocks
        as one setting per key), without `name` and `crm`."""
        fields: dict[str, Any] = {}
        for field, info in cls.model_fields.items():
            if field in {"name", "crm"}:
                continue
            suffix = cls.NESTED_SUFFIX.get(field)
            if suffix is not None:
                block = info.annotation
                assert isinstance(block, type)
                assert issubclass(block, BaseModel)
                fields[field] = block(
                    **{key: values.get(f"{key}{suffix}") for key in block.model_fields}
                )
                continue
            setting = cls.RENAMED_SETTINGS.get(field, field)
            if setting in values:
                fields[field] = values[setting]
        return fields

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> Self:
        """The settings connection, named <PREFIX>CONNECTION_NAME or else
        CRM_HEALTH_CONNECTION_NAME (`values` as in `configured_in_settings`)."""
        name = values.get("connection_name") or values["default_connection_name"]
        return cls.read_settings(
            {"name": name, "crm": cls.crm_tag(), **cls.settings_fields(values)}
        )

    @classmethod
    def crm_tag(cls) -> str:
        """The `crm:` value of this entry (its Literal)."""
        annotation = cls.model_fields["crm"].annotation
        tag = getattr(annotation, "__args__", (None,))[0]
        assert isinstance(tag, str)
        return tag

    @classmethod
    def read_settings(cls, values: dict[str, Any]) -> Self:
        """The settings connection as an entry; a value the entry refuses raises the CRM's
        error naming the setting."""
        try:
            entry = cls(**values)
        except ValidationError as exc:
            raise cls.ERROR(
                "; ".join(
                    f"{cls._setting_at(e['loc'])}: {validation_message(e['msg'])}"
                    for e in exc.errors()
                )
            ) from None
        entry._from_settings = True
        return entry

    @classmethod
    def _setting_at(cls, location: tuple[int | str, ...]) -> str:
        head = str(location[0])
        if head == "name":
            return f"{cls.SETTING_PREFIX}CONNECTION_NAME (or CRM_HEALTH_CONNECTION_NAME)"
        suffix = cls.NESTED_SUFFIX.get(head)
        if suffix is not None and len(location) > 1:
            return cls.setting(f"{location[1]}{suffix}")
        return cls.setting(head)

    def named(self, field: str) -> str:
        """How the user set `field`: a setting, or a key of this connection's file entry."""
        if self._from_settings:
            return self.setting(field)
        return f"connections file, connection {self.name!r}: {field}"

    def mapping_source(self, block: str) -> str:
        """Where the mapping options were set, for mapping errors."""
        return f"{self.SETTING_PREFIX}*" if self._from_settings else self.named(block)

    def check(self) -> None:
        """Raise the CRM's EntryConfigError for what `build` would refuse, building nothing."""

    @abstractmethod
    def build(
        self, *, policy: RetryPolicy, transport: httpx.AsyncBaseTransport | None
    ) -> tuple[CRMInbound, CRMConnector | None]:
        """The connection's CRM settings and its connector (None without credentials)."""

    def signing_secret(self) -> str | None:
        """The secret webhooks are signed with app-wide (HubSpot's app secret), kept as the
        connection's `webhook_secret`; the other CRMs keep their webhook credential in their
        CRMInbound."""
        return None


@dataclass(frozen=True, kw_only=True)
class Hints:
    """The CRM's settings as the service names them in error hints and the doctor."""

    # Where the credentials are set, for "the CRM refused the credentials".
    credentials: str
    # The setting holding the CRM's API address, and its token endpoint's (clients named
    # "<crm>:<connection>:oauth").
    api_base_setting: str
    auth_base_setting: str
    # How errors of the CRM's identity provider begin ("Salesforce token"): its token endpoint
    # names the provider, not the CRM.
    auth_error_prefixes: tuple[str, ...] = ()
    # Settings naming the account properties for seats, arr and renewal_date.
    attribute_settings: Mapping[str, str]
    # Where its webhook subscriptions are set up.
    webhook_setup: str
    # How a connection its stored events name is made (they wait in the dead letters).
    connect: str


@dataclass(frozen=True, kw_only=True)
class CRMSpec:
    """One CRM as the service uses it; registered in connector.registry.CRMS."""

    name: str
    label: str
    entry: type[CRMEntry]
    hints: Hints
    # Its webhook endpoints and the check that turns a delivery into inbox rows.
    inbound: InboundSpec
    # Decodes a connection's claimed inbox rows into normalised events.
    decode: Decoder
