"""Salesforce: tokens (auth), simple-salesforce calls (client), wire shapes, the CRM adapter."""
