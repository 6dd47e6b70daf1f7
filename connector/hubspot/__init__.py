"""HubSpot: webhook verification and parsing, CRM v3 API calls, company property specs."""
