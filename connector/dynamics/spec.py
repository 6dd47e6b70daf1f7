"""Dynamics 365 as the service uses it: the one spec object connector.registry lists."""

from __future__ import annotations

from connector.crm import CRMSpec, Hints
from connector.dynamics.connection import FileDynamics
from connector.dynamics.decode import decode
from connector.dynamics.intake import INBOUND

SPEC = CRMSpec(
    name="dynamics",
    label="Dynamics 365",
    entry=FileDynamics,
    inbound=INBOUND,
    decode=decode,
    hints=Hints(
        credentials="CRM_HEALTH_DYNAMICS_TENANT_ID, _CLIENT_ID and _CLIENT_SECRET, and that the "
        "application user exists in the environment",
        api_base_setting="CRM_HEALTH_DYNAMICS_ORG_URL",
        auth_base_setting="CRM_HEALTH_DYNAMICS_AUTHORITY",
        auth_error_prefixes=("Entra ID token",),
        attribute_settings={
            "seats": "CRM_HEALTH_DYNAMICS_SEATS_COLUMN (file: fields.seats)",
            "arr": "CRM_HEALTH_DYNAMICS_ARR_COLUMN (file: fields.arr)",
            "renewal_date": "CRM_HEALTH_DYNAMICS_RENEWAL_DATE_COLUMN (file: fields.renewal_date)",
        },
        connect="add it to the connections file",
        webhook_setup="Dynamics 365: register the webhook and steps of docs/dynamics.md, endpoint "
        "<public URL>/webhooks/dynamics/<connection>",
    ),
)
