"""The field plan a configuration gives each CRM connection (webhooks.fieldplans): a field per
custom signal, the sentiment picklists when CSMs set it on the record, and the CRM's own
fields custom indicators read; and the configuration's checks of the names involved."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connector.base import NO_FIELD_PLAN, SENTIMENT_FIELD, SENTIMENT_REASON_FIELD
from signals.config import HealthConfig
from webhooks.fieldplans import field_plan

ADOPTION = {"name": "adoption", "label": "Adoption", "weight": 0.1}


def indicator(name: str, source: dict[str, object], signal: str = "adoption") -> dict[str, object]:
    return {
        "name": name, "label": name, "signal": signal, "source": source,
        "at_risk": 0, "healthy": 50, "weight": 1,
    }  # fmt: skip


def config(**document: object) -> HealthConfig:
    return HealthConfig.model_validate(document)


def test_the_defaults_add_nothing() -> None:
    assert field_plan(HealthConfig(), "hubspot") is NO_FIELD_PLAN


def test_a_custom_signal_gets_a_score_field_and_crm_fields_are_read_per_crm() -> None:
    plan_config = config(
        custom_signals=[ADOPTION],
        custom_indicators=[
            indicator(
                "nps", {"kind": "crm_property", "hubspot": "nps_score", "salesforce": "NPS__c"}
            ),
            indicator(
                "nps_again", {"kind": "crm_property", "hubspot": "nps_score", "value": "number"}
            ),
            indicator(
                "qbr", {"kind": "crm_property", "dynamics": "new_lastqbr", "value": "days_since"}
            ),
        ],
    )
    hubspot = field_plan(plan_config, "hubspot")
    assert [(f.neutral, f.label, f.options) for f in hubspot.scores] == [
        ("health_adoption", "Health: Adoption", ())
    ]
    assert hubspot.inputs == ()
    assert hubspot.reads == ("nps_score",)
    assert field_plan(plan_config, "salesforce").reads == ("NPS__c",)
    assert field_plan(plan_config, "dynamics").reads == ("new_lastqbr",)
    assert hubspot.written[-1] == "health_adoption"


def test_sentiment_picklists_follow_the_configured_reasons() -> None:
    plan = field_plan(
        config(sentiment={"crm_field": True, "reasons": ["champion left", "budget cut"]}),
        "salesforce",
    )
    assert [(f.neutral, f.options) for f in plan.inputs] == [
        (SENTIMENT_FIELD, ("red", "amber", "green")),
        (SENTIMENT_REASON_FIELD, ("champion left", "budget cut")),
    ]
    # Read, never written.
    assert SENTIMENT_FIELD not in plan.written


@pytest.mark.parametrize("name", ["score", "band", "drivers", "updated_at", "csm_sentiment"])
def test_a_custom_signal_cannot_take_a_fixed_fields_name(name: str) -> None:
    with pytest.raises(ValidationError, match=f"custom_signals.0.name: '{name}' is reserved"):
        config(custom_signals=[{"name": name, "label": "x", "weight": 0}])


def test_a_custom_signal_name_fits_every_crms_field_names() -> None:
    with pytest.raises(ValidationError, match="at most 24 characters"):
        config(custom_signals=[{"name": "a" * 25, "label": "x", "weight": 0}])


def test_a_crm_property_source_names_a_field_somewhere() -> None:
    with pytest.raises(ValidationError, match="name the field in at least one CRM"):
        config(
            custom_signals=[ADOPTION],
            custom_indicators=[indicator("nps", {"kind": "crm_property"})],
        )
    with pytest.raises(ValidationError, match="String should match pattern"):
        config(
            custom_signals=[ADOPTION],
            custom_indicators=[indicator("nps", {"kind": "crm_property", "hubspot": "nps score"})],
        )


def test_custom_signals_equal_but_for_underscores_would_share_a_dynamics_column() -> None:
    with pytest.raises(ValidationError, match="'mutualvalue' would have the CRM field of"):
        config(custom_signals=[{"name": "mutualvalue", "label": "x", "weight": 0}])
    with pytest.raises(ValidationError, match=r"custom_signals\.1\.name: 'ab' would have the CRM"):
        config(
            custom_signals=[
                {"name": "a_b", "label": "x", "weight": 0},
                {"name": "ab", "label": "y", "weight": 0},
            ]
        )
