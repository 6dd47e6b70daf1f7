"""The CSM's voice, set through the admin API (checked against the configuration in force: its
reasons, how long a sentiment lasts; stored in the inbox as an admin document) or on the CRM
record's sentiment picklists (read with the record); folded and scored by the worker like any
fact of the account. The stored rows are the audit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from connector.base import (
    SENTIMENT_AUTHOR_ATTRIBUTE,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
)
from connector.model import AccountAttributes, CsmSentiment, NormalisedEvent
from signals.config import SentimentConfig
from webhooks.errors import InvalidFields, NotFound
from webhooks.inbox_kinds import ADMIN_SOURCE, SENTIMENT_KIND
from webhooks.store import account_views, configs, inbox
from webhooks.store.db import SessionFactory

RatingName = Literal["red", "amber", "green"]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]


class SentimentIn(BaseModel):
    """A CSM's judgement of one account."""

    model_config = ConfigDict(extra="forbid")

    rating: RatingName = Field(description="red, amber or green.")
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)
    ] = Field(description="One of the configuration's sentiment.reasons (any case).")
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = None
    days: int | None = Field(
        default=None,
        ge=1,
        le=365,
        description="How long it holds; default the configuration's sentiment.default_days.",
    )


class SentimentOut(BaseModel):
    rating: RatingName | None = Field(description="null: the sentiment in force is cleared.")
    reason: str | None
    note: str | None
    author: str
    at: datetime
    until: datetime | None
    status: Literal["queued"] = Field(
        default="queued",
        description="Stored; the worker scores the account with it within its next passes.",
    )


class SentimentDocument(BaseModel):
    """A sentiment as the inbox holds it (source admin, kind sentiment)."""

    model_config = ConfigDict(extra="forbid")

    account: str
    at: datetime
    rating: RatingName | None
    reason: str | None = None
    note: str | None = None
    author: str
    until: datetime | None = None

    def normalised(self) -> CsmSentiment:
        return CsmSentiment(
            account=self.account,
            at=self.at,
            rating=self.rating,
            reason=self.reason,
            note=self.note,
            author=self.author,
            until=self.until,
        )


async def set_sentiment(
    sessions: SessionFactory,
    *,
    connection: str,
    record_id: str,
    change: SentimentIn | None,
    author: str,
    now: datetime,
) -> SentimentOut:
    """Store `change` (None clears) for the account; NotFound for a record id the connection
    does not have, InvalidFields for a reason the configuration does not list."""
    async with sessions() as session, session.begin():
        if await account_views.find(session, connection=connection, crm_id=record_id) is None:
            raise NotFound(f"no account {record_id!r}")
        config = (await configs.current(session))[1].sentiment
        document = SentimentDocument(account=record_id, at=now, rating=None, author=author)
        if change is not None:
            reason = known_reason(config, change.reason)
            if reason is None:
                raise InvalidFields(
                    f"reason: {change.reason!r} is not one of {', '.join(config.reasons)} "
                    "(the configuration's sentiment.reasons)"
                )
            days = change.days if change.days is not None else config.default_days
            document = SentimentDocument(
                account=record_id,
                at=now,
                rating=change.rating,
                reason=reason,
                note=change.note or None,
                author=author,
                until=now + timedelta(days=days),
            )
        await inbox.insert_events(
            session,
            source=ADMIN_SOURCE,
            connection=connection,
            events=[
                inbox.NewEvent(
                    dedup_key=f"sentiment-{uuid.uuid4()}",
                    kind=SENTIMENT_KIND,
                    payload=document.model_dump(mode="json"),
                )
            ],
            received_at=now,
        )
    return SentimentOut(
        rating=document.rating,
        reason=document.reason,
        note=document.note,
        author=author,
        at=now,
        until=document.until,
    )


_PICKLISTS = (SENTIMENT_FIELD, SENTIMENT_REASON_FIELD)


def known_reason(config: SentimentConfig, reason: str) -> str | None:
    """The configuration's spelling of `reason` (matched in any case); None if not listed."""
    folded = reason.strip().casefold()
    return next((known for known in config.reasons if known.casefold() == folded), None)


def record_sentiments(
    events: Sequence[NormalisedEvent], *, held: Mapping[str, Any] | None, config: SentimentConfig
) -> list[CsmSentiment]:
    """The sentiments CSMs set on one account's CRM record (its sentiment picklists, read into
    attributes by the connectors) among `events`: one per change of the rating or the reason
    against what the account holds (`held`: its stored attributes) and the batch's earlier
    events, each lasting `config.default_days`. A read of the record that finds the values
    held is no change, so reading a record again never renews a sentiment; a delivery older
    than the value held is stale, and an empty rating clears the sentiment in force."""
    current: dict[str, str | None] = {}
    since: dict[str, datetime] = {}
    for name in _PICKLISTS:
        entry = (held or {}).get(name)
        current[name] = entry.get("value") if isinstance(entry, Mapping) else None
        if isinstance(entry, Mapping) and isinstance(entry.get("at"), str):
            since[name] = datetime.fromisoformat(entry["at"])
    changes = sorted(
        (
            event
            for event in events
            if isinstance(event, AccountAttributes)
            and any(name in event.attributes for name in _PICKLISTS)
        ),
        key=lambda event: event.at,
    )
    found: list[CsmSentiment] = []
    for event in changes:
        changed = False
        was_rated = current[SENTIMENT_FIELD] is not None
        for name in _PICKLISTS:
            if name not in event.attributes or (name in since and event.at < since[name]):
                continue
            value = (event.attributes[name] or "").strip() or None
            changed = changed or value != current[name]
            current[name], since[name] = value, event.at
        rating = (current[SENTIMENT_FIELD] or "").casefold() or None
        if (
            not changed
            # A reason picked while no rating is set clears nothing that is not cleared.
            or (rating is None and not was_rated)
            or (rating is not None and rating not in SENTIMENT_RATINGS)
        ):
            continue
        reason_text = current[SENTIMENT_REASON_FIELD]
        author = event.attributes.get(SENTIMENT_AUTHOR_ATTRIBUTE) or "the CRM record"
        found.append(
            CsmSentiment(
                account=event.account,
                at=event.at,
                rating=None if rating is None else _RATING_NAMES[rating],
                author=author,
                reason=None
                if reason_text is None
                else known_reason(config, reason_text) or reason_text,
                until=None if rating is None else event.at + timedelta(days=config.default_days),
            )
        )
    return found


_RATING_NAMES: Mapping[str, RatingName] = {"red": "red", "amber": "amber", "green": "green"}
