"""A service with every intake configured (HubSpot, Segment, native, Salesforce, Dynamics), for
tests that send the same hostile input to each: the credentials they sign or authenticate
with, and the settings that turn each intake on."""

from __future__ import annotations

ADMIN_TOKEN = "admin-token-for-every-intake-123"
SEGMENT_KEY = "segment-key-for-every-intake"
SF_CONNECTION = "acme-sf"
SF_ORG = "00D5e000000abcdEAA"
SF_SECRET = "sf-shared-secret-for-every-intake"
DYN_CONNECTION = "contoso"
DYN_KEY = "dynamics-key-for-every-intake"

EVERY_INTAKE: dict[str, object] = {
    "admin_token": ADMIN_TOKEN,
    "segment_write_key": SEGMENT_KEY,
    "salesforce_connection_name": SF_CONNECTION,
    "salesforce_organization_id": SF_ORG,
    "salesforce_login_url": "https://acme.my.salesforce.test",
    "salesforce_client_id": "3MVG9-consumer-key",
    "salesforce_client_secret": "sf-consumer-secret-for-every-intake",
    "salesforce_webhook_secret": SF_SECRET,
    "dynamics_connection_name": DYN_CONNECTION,
    "dynamics_org_url": "https://contoso.crm.dynamics.test",
    "dynamics_tenant_id": "7f3c1b2a-52f0-4a8e-9d59-1f2e3d4c5b6a",
    "dynamics_client_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "dynamics_client_secret": "dynamics-client-secret-for-every-intake",
    "dynamics_publisher_prefix": "crmh",
    "dynamics_webhook_auth_value": DYN_KEY,
}
