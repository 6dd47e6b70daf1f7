"""Salesforce as the service uses it: the one spec object connector.registry lists."""

from __future__ import annotations

from connector.crm import CRMSpec, Hints
from connector.salesforce.connection import FileSalesforce
from connector.salesforce.decode import decode
from connector.salesforce.intake import INBOUND

SPEC = CRMSpec(
    name="salesforce",
    label="Salesforce",
    entry=FileSalesforce,
    inbound=INBOUND,
    decode=decode,
    hints=Hints(
        credentials="the CRM_HEALTH_SALESFORCE_* credentials (client id, username, private key "
        "or client secret) and that the connected app is approved for the user",
        api_base_setting="CRM_HEALTH_SALESFORCE_LOGIN_URL",
        auth_base_setting="CRM_HEALTH_SALESFORCE_LOGIN_URL",
        auth_error_prefixes=("Salesforce token",),
        attribute_settings={
            "seats": "CRM_HEALTH_SALESFORCE_SEATS_FIELD (file: fields.seats)",
            "arr": "CRM_HEALTH_SALESFORCE_ARR_FIELD (file: fields.arr)",
            "renewal_date": "CRM_HEALTH_SALESFORCE_RENEWAL_DATE_FIELD (file: fields.renewal_date)",
        },
        connect="add it to the connections file",
        webhook_setup="Salesforce: the Outbound Messages and flows of docs/salesforce.md, endpoint "
        "<public URL>/webhooks/salesforce/<connection>",
    ),
)
