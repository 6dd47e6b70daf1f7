"""The CRM registry: every CRM package is listed once, and its spec's parts agree on its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.crm import CRMSpec
from connector.registry import CRMS

CONNECTOR = Path(__file__).resolve().parents[2] / "connector"


def test_every_crm_package_with_a_spec_is_registered() -> None:
    packages = {path.parent.name for path in CONNECTOR.glob("*/spec.py")}
    assert packages == set(CRMS)


@pytest.mark.parametrize("spec", CRMS.values(), ids=list(CRMS))
def test_a_spec_names_its_crm_everywhere(spec: CRMSpec) -> None:
    assert spec.entry.crm_tag() == spec.name
    assert f"CRM_HEALTH_{spec.name.upper()}_" == spec.entry.SETTING_PREFIX
    assert spec.hints.credentials
    assert set(spec.hints.attribute_settings) <= {"seats", "arr", "renewal_date"}
    for endpoint in spec.inbound.endpoints:
        assert endpoint.path.startswith(f"/webhooks/{spec.name}")
