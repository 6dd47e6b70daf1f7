"""CRM connectors: webhook verification and parsing, API calls, field specs, one folder per CRM."""
