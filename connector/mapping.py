"""What every CRM's record mapping shares: which record field carries each account attribute,
the executive-title pattern and reading a website as a domain. CRM packages import it instead of
each other."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

# Job titles that put a contact in the executive suite (matched case-insensitively, anywhere in
# the title). "Product Owner" is a delivery role, not an owner of the business.
DEFAULT_EXECUTIVE_TITLE = (
    r"\b(?:chief|c[eftoimr]o|[se]?vp|vice[\s-]*president|president|founder"
    r"|(?<!product )owner|head\s+of|director)\b"
)


def compile_title_pattern(executive_title: str) -> re.Pattern[str]:
    """The executive-title pattern, compiled; ValueError naming it when it is not a regex."""
    try:
        return re.compile(executive_title, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"executive_title is not a valid regular expression: {exc}") from None


ACCOUNT_ATTRIBUTES: Final = (
    "name", "domain", "seats", "arr", "renewal_date", "segment", "owner", "lifecycle", "created",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class AccountMapping:
    """The account attributes a CRM's record mapping reads (the field or column carrying each;
    None leaves it unmapped) and which contact titles are executives. Each CRM subclasses it,
    with its standard fields as defaults and its own name rules checked before this runs."""

    name: str | None = None
    domain: str | None = None
    # Seats, ARR, renewal date and segment live in custom fields of each customer's own
    # naming, so they are unmapped unless an admin maps them.
    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None
    owner: str | None = None
    lifecycle: str | None = None
    created: str | None = None
    executive_title: str = DEFAULT_EXECUTIVE_TITLE
    title_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "title_pattern", compile_title_pattern(self.executive_title))

    def mapped_attributes(self) -> dict[str, str]:
        """Account attribute -> the record field carrying it, for the mapped attributes only."""
        return {
            attribute: source
            for attribute in ACCOUNT_ATTRIBUTES
            if (source := getattr(self, attribute)) is not None
        }


def website_domain(website: str | None) -> str | None:
    """The bare host of an account's website ("https://www.acme.com/x" -> "acme.com")."""
    text = (website or "").strip()
    if not text:
        return None
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    return (host or "").removeprefix("www.") or None
