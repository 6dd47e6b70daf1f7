"""The error answers route modules declare for OpenAPI: an ErrorBody per status, with the
texts several routes give alike."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel


class ErrorBody(BaseModel):
    detail: str


UNAUTHENTICATED = "API key missing or unknown (Authorization: Bearer <key>)."


def error_responses(texts: Mapping[int, str]) -> dict[int | str, dict[str, object]]:
    """`responses=` for a route: each status answered with an ErrorBody, described by its text."""
    return {status: {"model": ErrorBody, "description": text} for status, text in texts.items()}
