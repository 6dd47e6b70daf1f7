"""HubSpot as the service uses it: the one spec object connector.registry lists."""

from __future__ import annotations

from connector.crm import CRMSpec, Hints
from connector.hubspot.connection import FileHubSpot
from connector.hubspot.decode import decode
from connector.hubspot.intake import INBOUND

SPEC = CRMSpec(
    name="hubspot",
    label="HubSpot",
    entry=FileHubSpot,
    inbound=INBOUND,
    decode=decode,
    hints=Hints(
        credentials="CRM_HEALTH_HUBSPOT_ACCESS_TOKEN (a private app token with the crm.objects and "
        "crm.schemas scopes)",
        api_base_setting="CRM_HEALTH_HUBSPOT_API_BASE",
        auth_base_setting="CRM_HEALTH_HUBSPOT_API_BASE",
        auth_error_prefixes=(),
        attribute_settings={
            "seats": "CRM_HEALTH_HUBSPOT_SEATS_PROPERTY (file: properties.seats)",
            "arr": "CRM_HEALTH_HUBSPOT_ARR_PROPERTY (file: properties.arr)",
            "renewal_date": "CRM_HEALTH_HUBSPOT_RENEWAL_DATE_PROPERTY (file: "
            "properties.renewal_date)",
        },
        connect="connect it (OAuth install or the connections file)",
        webhook_setup="HubSpot app > Webhooks: subscribe to the events of docs/hubspot.md, target "
        "URL <public URL>/webhooks/hubspot",
    ),
)
