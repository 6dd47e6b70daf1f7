"""connector.bounds: what text the database can store, where in a document it is not, and how
a CRM's free text is made to fit its column."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from connector import bounds
from connector.model import AccountAttributes, ContactUpsert

NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Acme GmbH", None),
        ("Zoë 中文 😀", None),
        ("a\x00b", "NUL"),
        ("a\ud800b", "lone surrogate"),
        ("\udfff", "lone surrogate"),
    ],
)
def test_text_problem_names_nul_and_lone_surrogates_only(text: str, problem: str | None) -> None:
    found = bounds.text_problem(text)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_the_first_unstorable_string_of_a_document_is_named_by_its_path() -> None:
    document = {"batch": [{"ok": "x"}, {"traits": {"name": "a\x00"}}]}
    body = json.dumps(document)
    assert bounds.unstorable_text(body, document) == "batch[1].traits.name: " + (
        bounds.text_problem("\x00") or ""
    )


def test_a_key_is_checked_like_a_value() -> None:
    document = {"a\ud800": 1}
    assert "a key contains a lone surrogate" in (
        bounds.unstorable_text(json.dumps(document), document) or ""
    )


def test_a_body_without_unicode_escapes_is_not_walked() -> None:
    # The document disagrees with the body on purpose: only the body decides the walk.
    assert bounds.unstorable_text(b'{"a": "b"}', {"a": "\x00"}) is None


def test_clipped_text_fits_and_is_storable() -> None:
    assert bounds.clipped("n" * 600, bounds.NAME) == "n" * bounds.NAME
    assert bounds.clipped("Ac\x00me \ud800", 100) == "Acme ?"
    assert bounds.clipped(None, 10) is None


def test_crm_text_in_normalised_events_fits_its_column() -> None:
    event = AccountAttributes(account="1", at=NOW, attributes={"name": "n" * 600, "owner": None})
    assert event.attributes == {"name": "n" * bounds.NAME, "owner": None}
    contact = ContactUpsert(account="1", at=NOW, contact="c", title="t\x00" * 400)
    assert contact.title == "t" * 400


EVENT_TIME: TypeAdapter[datetime] = TypeAdapter(bounds.EventTime)


def test_a_time_more_than_a_day_ahead_is_refused_where_the_event_arrives() -> None:
    soon = datetime.now(UTC) + timedelta(hours=23)
    assert EVENT_TIME.validate_python(soon, context=bounds.edge_context()) == soon
    with pytest.raises(ValidationError, match="more than 1 day in the future"):
        EVENT_TIME.validate_python(datetime(2099, 1, 1, tzinfo=UTC), context=bounds.edge_context())


def test_a_stored_event_is_never_refused_later_for_its_time() -> None:
    # The worker decodes what the edge accepted without the edge's context: whatever its clock
    # says by then (a test's virtual clock, a backlog), an acknowledged event is not refused.
    accepted = datetime.now(UTC) + timedelta(hours=23)
    assert EVENT_TIME.validate_python(accepted) == accepted
    assert EVENT_TIME.validate_python(datetime(2099, 1, 1, tzinfo=UTC)).year == 2099
