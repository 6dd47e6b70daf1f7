"""Salesforce: Outbound Message parsing and acknowledgement, sObjects as normalised events."""
