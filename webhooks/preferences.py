"""Personal preferences of whoever signed in (the owner whose accounts are "my accounts"),
kept by connection and key name between visits."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from connector import bounds
from webhooks.store import preferences as stored
from webhooks.store.db import SessionFactory


class Preferences(BaseModel):
    """A user's preferences; a PUT replaces them all (a key left out is null)."""

    model_config = ConfigDict(extra="forbid")

    owner: bounds.ShortText | None = Field(
        default=None,
        description="The owner id (the accounts' owner attribute) whose accounts are \"my "
        'accounts"; null: none chosen. At most 255 characters.',
    )


def _known(document: dict[str, object]) -> Preferences:
    # Stored by an older or newer version: only the keys this one knows, and a value that no
    # longer validates reads as unset.
    try:
        return Preferences.model_validate(
            {key: value for key, value in document.items() if key in Preferences.model_fields}
        )
    except ValueError:
        return Preferences()


async def read_preferences(
    sessions: SessionFactory, *, connection: str, user_name: str
) -> Preferences:
    """The user's preferences (all unset before they store any)."""
    async with sessions() as session:
        document = await stored.read_preferences(
            session, connection=connection, user_name=user_name
        )
    return _known(document)


async def save_preferences(
    sessions: SessionFactory,
    *,
    connection: str,
    user_name: str,
    preferences: Preferences,
    now: datetime,
) -> Preferences:
    """Replace the user's preferences; what is now stored."""
    async with sessions() as session, session.begin():
        await stored.save_preferences(
            session,
            connection=connection,
            user_name=user_name,
            preferences=preferences.model_dump(mode="json"),
            now=now,
        )
    return preferences
