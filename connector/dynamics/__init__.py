"""Microsoft Dynamics 365 (Dataverse): webhook verification and parsing, Web API records and
Entra ID client-credentials tokens."""
