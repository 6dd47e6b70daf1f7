"""The signals' health fields in every CRM come from the signal registry: names, labels and
descriptions, the ones already provisioned word for word, a new signal's from its declaration."""

from __future__ import annotations

import pytest

from connector.dynamics import fields as dynamics
from connector.hubspot import fields as hubspot
from connector.salesforce import fields as salesforce
from signals.model import IndicatorSpec, SignalSpec, Unit
from signals.registry import SIGNALS

NPS = SignalSpec(
    name="net_promoter",
    label="NPS trend",
    description="promoters minus detractors, and its change",
    question="would they recommend us?",
    evidence="survey answers",
    weight=0.05,
    indicators=(
        IndicatorSpec(
            "nps", "NPS", Unit.NUMBER, explanation="NPS; higher is better.", at_risk=0, healthy=30
        ),
    ),
    measure=lambda facts: (None,),
)


def dynamics_column(neutral: str) -> dynamics.ColumnSpec:
    return next(spec for spec in dynamics.COLUMNS if spec.neutral == neutral)


def test_every_signal_has_a_field_in_every_crm_in_registry_order() -> None:
    neutral = [f"health_{signal.name}" for signal in SIGNALS]
    assert [spec.name for spec in hubspot.PROPERTIES][3:-2] == neutral
    assert [spec.neutral for spec in salesforce.FIELDS][3:-2] == neutral
    assert [spec.neutral for spec in dynamics.COLUMNS][3:-2] == neutral


@pytest.mark.parametrize(
    ("signal", "hubspot_description", "dynamics_description"),
    [
        (
            "active_use",
            "Seat use, usage trend and recency.",
            "Customer health: active use signal, 0 to 100: do people actually use what was sold "
            "(seat use, usage trend, stickiness, recency)? Written by crm-health.",
        ),
        (
            "mutual_value",
            "Support load and escalations.",
            "Customer health: mutual value signal, 0 to 100: support load and escalations per "
            "seat. Written by crm-health.",
        ),
    ],
)
def test_the_provisioned_texts_stay_word_for_word(
    signal, hubspot_description, dynamics_description
) -> None:
    # Provisioning rewrites a field whose label or description differs from these.
    label = f"Health: {signal.replace('_', ' ')}"
    hubspot_property = hubspot.PROPERTY_BY_FIELD[f"health_{signal}"].definition()
    assert (hubspot_property["label"], hubspot_property["description"]) == (
        label,
        hubspot_description,
    )
    column = dynamics_column(f"health_{signal}")
    assert (column.display_name, column.description) == (label, dynamics_description)


def test_salesforce_texts_are_made_of_the_declared_description_and_question() -> None:
    metadata = salesforce.FIELD_BY_NEUTRAL["health_mutual_value"].metadata()
    assert metadata["label"] == "Health: mutual value"
    assert metadata["description"] == (
        "Customer health: mutual value signal, 0 to 100 (support load and escalations per seat)."
    )
    assert metadata["inlineHelpText"] == (
        "Customer health signal: is the account worth its effort on both sides? 0 to 100."
    )


def test_a_new_signal_gets_a_field_in_every_crm_from_its_declaration() -> None:
    prop = hubspot._signal_property(NPS).definition()
    assert (prop["name"], prop["label"], prop["description"], prop["type"]) == (
        "health_net_promoter",
        "Health: NPS trend",
        "Promoters minus detractors, and its change.",
        "number",
    )
    field = salesforce._signal_field(NPS)
    assert (field.api_name, field.label, field.type, field.scale) == (
        "Health_Net_Promoter__c",
        "Health: NPS trend",
        "Number",
        0,
    )
    assert field.description == (
        "Customer health: NPS trend signal, 0 to 100 (promoters minus detractors, and its change)."
    )
    assert field.help_text == "Customer health signal: would they recommend us? 0 to 100."
    column = dynamics._signal_column(NPS)
    assert (column.suffix, column.schema_suffix, column.type, column.max_value) == (
        "healthnetpromoter",
        "HealthNetPromoter",
        "Integer",
        100,
    )
    assert column.description == (
        "Customer health: NPS trend signal, 0 to 100: promoters minus detractors, and its change. "
        "Written by crm-health."
    )
