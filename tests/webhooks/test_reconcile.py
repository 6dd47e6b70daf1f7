"""The reconcile's comparison: equal values are equal across the types CRMs answer in (HubSpot
strings, JSON numbers, CRLF text), real differences are not, and volatile fields never count."""

from __future__ import annotations

from typing import Any

import pytest

from connector.base import FieldValue
from connector.http import RetryingClient
from connector.hubspot.api import HubSpotConnector
from webhooks.reconcile import differing_fields, same_value


@pytest.mark.parametrize(
    ("owed", "held"),
    [
        (42, "42"),
        (42, "42.0"),
        (42.0, 42),
        (-3, "-3"),
        (None, None),
        (None, ""),
        ("", None),
        ("healthy", "healthy"),
        ("Seats used\nNo recent contact", "Seats used\r\nNo recent contact"),
        ("Seats used\nNo recent contact", "Seats used \nNo recent contact\n"),
    ],
)
def test_equal_values_are_the_same_across_types(owed: FieldValue, held: FieldValue) -> None:
    assert same_value(owed, held)


@pytest.mark.parametrize(
    ("owed", "held"),
    [
        (42, "43"),
        (42, 42.5),
        (0, None),
        (0, ""),
        ("healthy", "at_risk"),
        ("healthy", "Healthy"),
        ("Seats used\nNo recent contact", "Seats used No recent contact"),
        ("Seats used", ""),
        ("nan", "NaN"),
    ],
)
def test_different_values_differ(owed: FieldValue, held: FieldValue) -> None:
    assert not same_value(owed, held)


@pytest.fixture
async def hubspot():
    connector = HubSpotConnector(
        client=RetryingClient(base_url="https://hubspot.api.test", name="hubspot:test")
    )
    yield connector
    await connector.aclose()


def test_volatile_and_unknown_fields_never_count(hubspot) -> None:
    owed: dict[str, Any] = {
        "health_score": 80,
        "health_updated_at": "2026-12-04T10:00:00.000+00:00",
        "not_a_health_field": "x",
    }
    held: dict[str, FieldValue] = {"health_score": "80", "health_updated_at": "2020-01-01"}
    assert differing_fields(hubspot, owed, held) == []


def test_differing_fields_are_named(hubspot) -> None:
    owed: dict[str, Any] = {"health_score": 80, "health_band": "healthy", "health_drivers": "a\nb"}
    held: dict[str, FieldValue] = {
        "health_score": "80",
        "health_band": "at_risk",
        "health_drivers": None,
    }
    assert differing_fields(hubspot, owed, held) == ["health_band", "health_drivers"]
