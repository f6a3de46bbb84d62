"""Dynamics 365 (Dataverse Web API v9.2) CRM adapter."""
