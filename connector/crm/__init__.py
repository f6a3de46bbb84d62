"""CRM adapters: one folder per CRM, each satisfying :class:`connector.ports.CrmAdapter`."""
