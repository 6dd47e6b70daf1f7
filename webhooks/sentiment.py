"""The CSM's voice, set through the admin API: checked against the configuration in force (its
reasons, how long a sentiment lasts), stored in the inbox as an admin document, then folded
and scored by the worker like any fact of the account. The stored rows are the audit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from connector.model import CsmSentiment
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
            reason = next(
                (known for known in config.reasons if known.casefold() == change.reason.casefold()),
                None,
            )
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
