"""CRM_HEALTH_CURRENCY: the ISO 4217 code ARR is kept in (USD unless set); anything but three
capital letters is a configuration error naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from webhooks.cli_errors import explain
from webhooks.settings import Settings


def test_the_currency_is_usd_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_HEALTH_CURRENCY", raising=False)
    assert Settings().currency == "USD"
    monkeypatch.setenv("CRM_HEALTH_CURRENCY", "EUR")
    assert Settings().currency == "EUR"


@pytest.mark.parametrize("value", ["eur", "EURO", "US", "U$D", "EUR ", "12€", "GBP\n"])
def test_anything_but_three_capital_letters_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CRM_HEALTH_CURRENCY", value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    failure = explain(refused.value)
    assert failure is not None
    assert "CRM_HEALTH_CURRENCY" in str(failure.message)
