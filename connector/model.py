"""The normalised events every source is translated into, independent of the CRM."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class AccountActivity:
    """Something happened on the account's CRM record (created, edited, merged...)."""

    account: str
    at: datetime
    kind: str


@dataclass(frozen=True, kw_only=True)
class AccountAttributes:
    """Attribute values as of `at`; for each attribute the latest `at` wins."""

    account: str
    at: datetime
    attributes: Mapping[str, str | None]


@dataclass(frozen=True, kw_only=True)
class AccountDeleted:
    account: str
    at: datetime


NormalisedEvent = AccountActivity | AccountAttributes | AccountDeleted
