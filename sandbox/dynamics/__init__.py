"""Dataverse (Dynamics 365) simulator: the Web API v9.2 of crm-apis §C over an in-process
environment.

:class:`DataverseSimulator` is the WSGI app (routes, tokens, service protection);
:class:`~sandbox.dynamics.schema.OrgSchema` the metadata (:mod:`~sandbox.dynamics.tables` the
default tables and the partner's ``rs_`` columns); :class:`RowStore` the rows and the data
rules; :mod:`~sandbox.dynamics.odata` and :mod:`~sandbox.dynamics.query` the query language,
paging and change tracking; :mod:`~sandbox.dynamics.batch` ``$batch``;
:mod:`~sandbox.dynamics.actions` WinOpportunity / LoseOpportunity;
:mod:`~sandbox.dynamics.customize` the metadata writes (new columns, alternate keys);
:class:`SalespersonSimulator` a user working the opportunities.
"""

from sandbox.dynamics.errors import DataverseError, dataverse_responder
from sandbox.dynamics.protection import Limits, ServiceProtection
from sandbox.dynamics.salesperson import Action, SalespersonSimulator
from sandbox.dynamics.schema import AttributeDef, EntityDef, KeyDef, OptionDef, OrgSchema
from sandbox.dynamics.simulator import ROUTE_NAMES, DataverseSimulator
from sandbox.dynamics.store import API_USER_ID, SALES_USER_ID, Lookup, RowStore
from sandbox.dynamics.tables import (
    ALTERNATE_KEY,
    ALTERNATE_KEY_COLUMN,
    DECLINE_REASONS,
    PARTNER_COLUMNS,
)

__all__ = [
    "ALTERNATE_KEY",
    "ALTERNATE_KEY_COLUMN",
    "API_USER_ID",
    "DECLINE_REASONS",
    "PARTNER_COLUMNS",
    "ROUTE_NAMES",
    "SALES_USER_ID",
    "Action",
    "AttributeDef",
    "DataverseError",
    "DataverseSimulator",
    "EntityDef",
    "KeyDef",
    "Limits",
    "Lookup",
    "OptionDef",
    "OrgSchema",
    "RowStore",
    "SalespersonSimulator",
    "ServiceProtection",
    "dataverse_responder",
]
