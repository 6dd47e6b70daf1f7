"""The CRMs this service speaks to: the one place that lists them. Adding a CRM is a package
under connector/ with a `spec` module, and a line here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from connector.crm import CRMSpec
from connector.dynamics.spec import SPEC as DYNAMICS
from connector.hubspot.spec import SPEC as HUBSPOT
from connector.salesforce.spec import SPEC as SALESFORCE

CRMS: Final[Mapping[str, CRMSpec]] = {spec.name: spec for spec in (HUBSPOT, SALESFORCE, DYNAMICS)}
