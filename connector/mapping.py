"""What every CRM's record mapping shares: the executive-title pattern and reading a website as
a domain. CRM packages import it instead of each other."""

from __future__ import annotations

import re
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
