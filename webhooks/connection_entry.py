"""What a CRM connection entry of the connections file shares with the same CRM's settings:
one model for both, whose errors name what the user actually set (an environment setting or a
file key)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError


class EntryConfigError(ValueError):
    """A CRM connection's settings or file entry that cannot work; names the setting or key."""


class CRMEntry(BaseModel):
    """Base of the `crm: salesforce|dynamics` entries; subclasses add their fields and say
    how those map to settings (`SETTING_PREFIX`, `NESTED_SUFFIX`, `RENAMED_SETTINGS`)."""

    model_config = ConfigDict(extra="forbid")

    # e.g. "CRM_HEALTH_SALESFORCE_": field `client_id` is CRM_HEALTH_SALESFORCE_CLIENT_ID.
    SETTING_PREFIX: ClassVar[str]
    # A nested block's keys as settings: {"fields": "_field"} makes fields.seats ..._SEATS_FIELD.
    NESTED_SUFFIX: ClassVar[dict[str, str]] = {}
    # Fields whose setting has another name.
    RENAMED_SETTINGS: ClassVar[dict[str, str]] = {"executive_title": "executive_title_pattern"}

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # Errors name environment settings rather than file keys (see `read_settings`).
    _from_settings: bool = PrivateAttr(default=False)

    @classmethod
    def setting(cls, field: str) -> str:
        return f"{cls.SETTING_PREFIX}{cls.RENAMED_SETTINGS.get(field, field).upper()}"

    @classmethod
    def read_settings(cls, values: dict[str, Any], *, error: type[EntryConfigError]) -> Self:
        """The settings connection as an entry; a value the entry refuses raises `error`
        naming the setting."""
        try:
            entry = cls(**values)
        except ValidationError as exc:
            raise error(
                "; ".join(f"{cls._setting_at(e['loc'])}: {e['msg']}" for e in exc.errors())
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
