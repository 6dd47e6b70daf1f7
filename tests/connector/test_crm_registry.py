"""The CRM registry: every CRM package is listed once, and its spec's parts agree on its name."""

from __future__ import annotations

import functools
from pathlib import Path

import grimp
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


@pytest.mark.parametrize(
    ("importer", "imported"),
    [(a, b) for a in CRMS for b in CRMS if a != b],
)
def test_registered_crm_packages_never_import_each_other(importer: str, imported: str) -> None:
    # The import-linter `independence` contract names the CRMs it knows; this covers every CRM
    # the registry lists, so a new one is kept apart without an edit to the contract.
    graph = _connector_graph()
    chain = graph.find_shortest_chain(
        importer=f"connector.{importer}", imported=f"connector.{imported}", as_packages=True
    )
    assert chain is None, f"connector.{importer} imports connector.{imported}: {' -> '.join(chain)}"


@functools.cache
def _connector_graph() -> grimp.ImportGraph:
    return grimp.build_graph("connector", cache_dir=None)
