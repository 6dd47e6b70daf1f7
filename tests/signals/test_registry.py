"""The signal registry: each signal declared once, and the configuration made from the list."""

from __future__ import annotations

import pytest

from signals import config as config_module
from signals.config import HealthConfig
from signals.model import AccountFacts, IndicatorSpec, SignalSpec, Unit
from signals.registry import SIGNAL_BY_NAME, SIGNAL_NAMES, SIGNALS


def nothing(facts: AccountFacts) -> tuple[float | None, ...]:
    return (None,)


CONTACT_SHARE = IndicatorSpec(
    "contact_share",
    "Contacts per seat",
    Unit.PERCENT,
    explanation="Contacts per paid seat; higher is better.",
    at_risk=0.02,
    healthy=0.1,
)


def declare(name: str = "reach", *indicators: IndicatorSpec, label: str = "Reach") -> SignalSpec:
    return SignalSpec(
        name=name,
        label=label,
        description="contacts engaged per seat",
        question="do we talk to the people who use it?",
        evidence="contacts with seats",
        weight=0.05,
        indicators=indicators or (CONTACT_SHARE,),
        measure=nothing,
    )


def test_the_registry_lists_the_four_signals_in_order() -> None:
    assert SIGNAL_NAMES == ("active_use", "collaboration", "mutual_value", "momentum")
    assert list(SIGNAL_BY_NAME) == list(SIGNAL_NAMES)


def test_the_configuration_holds_every_signal_with_its_declared_defaults() -> None:
    configured = HealthConfig().signals.items()
    assert list(configured) == list(SIGNAL_NAMES)
    for signal in SIGNALS:
        assert configured[signal.name].weight == signal.weight
        indicators = configured[signal.name].indicators.items()
        assert list(indicators) == [spec.name for spec in signal.indicators]
        for spec in signal.indicators:
            assert (indicators[spec.name].at_risk, indicators[spec.name].healthy) == (
                spec.at_risk,
                spec.healthy,
            )
            assert indicators[spec.name].weight == spec.weight


def test_the_made_configuration_classes_keep_their_schema_names() -> None:
    names = set(HealthConfig.model_json_schema()["$defs"])
    for title in ("ActiveUse", "Collaboration", "MutualValue", "Momentum"):
        assert {f"{title}Config", f"{title}Indicators"} <= names


def test_a_new_signal_gets_its_configuration_from_its_declaration(monkeypatch) -> None:
    monkeypatch.setattr(config_module, "SIGNALS", (*SIGNALS, declare()))
    signals = config_module._signal_models()()
    assert list(signals.items()) == [*SIGNAL_NAMES, "reach"]
    assert signals.model_dump()["reach"] == {
        "weight": 0.05,
        "indicators": {"contact_share": {"at_risk": 0.02, "healthy": 0.1, "weight": 1.0}},
    }
    assert type(signals.items()["reach"]).__name__ == "ReachConfig"


@pytest.mark.parametrize("name", ["Reach", "net-promoter", "2fa", "reach_", ""])
def test_a_signal_name_must_be_lowercase_words_joined_by_underscores(name) -> None:
    with pytest.raises(ValueError, match="lowercase words"):
        declare(name)


def test_the_indicators_of_a_signal_need_distinct_names() -> None:
    twice = IndicatorSpec(
        "share", "Share", Unit.PERCENT, explanation="A share.", at_risk=0, healthy=1
    )
    with pytest.raises(ValueError, match="distinct names"):
        declare("reach", twice, twice)


@pytest.mark.parametrize(
    ("label", "in_sentence"),
    [("Active use", "active use"), ("Momentum", "momentum"), ("NPS trend", "NPS trend")],
)
def test_a_label_reads_inside_a_sentence(label, in_sentence) -> None:
    assert declare(label=label).label_in_sentence == in_sentence
