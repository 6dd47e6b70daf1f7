"""Columns and limits agree: every limit of connector.bounds fits the column its values are
stored in, so changing either alone cannot let the edge acknowledge what the store refuses."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, String

from connector import bounds
from webhooks.store.models import Base

# limit -> every column values under that limit are stored in ("table.column").
STORED_IN: dict[str, tuple[int, tuple[str, ...]]] = {
    "ACCOUNT_ID": (
        bounds.ACCOUNT_ID,
        ("accounts.crm_id", "product_groups.crm_id", "crm_writeback.record_id"),
    ),
    "RECORD_ID": (
        bounds.RECORD_ID,
        (
            "contacts.contact",
            "usage_months.user",
            "tickets.ticket",
            "interactions.contact",
            "interactions.source_id",
            "product_groups.group_id",
            "product_users.user_id",
            "product_users.group_id",
            "survey_responses.respondent",
        ),
    ),
    "EVENT_ID": (bounds.EVENT_ID, ("inbox_events.dedup_key", "interactions.source_id")),
    "NAME": (bounds.NAME, ("accounts.name", "product_groups.name")),
    "SHORT_TEXT": (
        bounds.SHORT_TEXT,
        ("accounts.domain", "accounts.segment", "accounts.owner", "attribute_history.value"),
    ),
    "TEXT": (bounds.TEXT, ("contacts.title", "attribute_history.value")),
    "EVENT_KIND": (bounds.EVENT_KIND, ("inbox_events.kind",)),
    "DEDUP_KEY": (bounds.DEDUP_KEY, ("inbox_events.dedup_key",)),
    "COMMENT": (bounds.COMMENT, ("survey_responses.comment",)),
}


def column(name: str) -> Column[str]:
    table, _, field = name.partition(".")
    found: Column[str] = Base.metadata.tables[table].c[field]
    return found


def length(name: str) -> int:
    kind = column(name).type
    assert isinstance(kind, String), f"{name} is not a string column"
    assert kind.length is not None, f"{name} has no length"
    return kind.length


@pytest.mark.parametrize("limit", sorted(STORED_IN))
def test_each_limit_fits_every_column_it_is_stored_in(limit: str) -> None:
    value, columns = STORED_IN[limit]
    too_small = {name: length(name) for name in columns if length(name) < value}
    assert not too_small, f"bounds.{limit} = {value} exceeds {too_small}"


def test_every_length_limit_is_checked_against_a_column() -> None:
    """A new limit gets its column here, or is one only payloads hold (stated below)."""
    payload_only = {"FEATURE", "PROPERTY_VALUE", "DYNAMICS_ENTITY", "DYNAMICS_MESSAGE"}
    limits = {
        name
        for name, value in vars(bounds).items()
        if name.isupper() and isinstance(value, int) and not name.startswith(("INT", "MAX"))
    }
    assert limits - payload_only == set(STORED_IN)


def test_a_dynamics_kind_of_the_longest_entity_and_message_fits_the_kind_column() -> None:
    kind = f"{'e' * bounds.DYNAMICS_ENTITY}:{'m' * bounds.DYNAMICS_MESSAGE}"
    assert len(kind) <= length("inbox_events.kind")


def test_the_longest_dynamics_dedup_key_fits_the_column() -> None:
    guid = "0" * 36
    key = ":".join(
        (
            guid,
            guid,
            "e" * bounds.DYNAMICS_ENTITY,
            guid,
            str(bounds.INT32_MAX),
            "m" * bounds.DYNAMICS_MESSAGE,
        )
    )
    assert len(key) <= length("inbox_events.dedup_key")


def test_the_longest_hubspot_dedup_key_and_record_id_fit_their_columns() -> None:
    assert len(f"{bounds.INT64_MAX}:{bounds.INT64_MAX}") <= length("inbox_events.dedup_key")
    assert len(str(bounds.INT64_MAX)) <= length("accounts.crm_id")


def test_a_product_event_match_key_of_the_longest_id_fits_the_column() -> None:
    assert len(f"group:{'g' * bounds.RECORD_ID}") <= length("inbox_events.match_key")


def test_a_salesforce_engagement_source_id_of_the_longest_id_fits_the_column() -> None:
    assert len(f"Event:{'0' * bounds.ACCOUNT_ID}") <= length("interactions.source_id")
