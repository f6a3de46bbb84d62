"""Salesforce simulator: the REST API and OAuth token endpoint of crm-apis §A over an
in-process org.

:class:`SalesforceSimulator` is the WSGI app (routes, sessions, API quota, paging);
:class:`~sandbox.salesforce.schema.OrgSchema` the org's metadata (describe, stages,
currencies, the partner's custom fields); :class:`RecordStore` the records and the data rules;
:mod:`~sandbox.salesforce.soql` the query language; :class:`SalespersonSimulator` a user
working the opportunities.
"""

from sandbox.salesforce.errors import ApiError, RecordError, RecordRejected, salesforce_responder
from sandbox.salesforce.oauth import ConnectedApp, SessionStore, generate_key_and_certificate
from sandbox.salesforce.salesperson import Action, SalespersonSimulator
from sandbox.salesforce.schema import (
    DEFAULT_STAGES,
    EXTERNAL_ID_FIELD,
    PARTNER_FIELDS,
    FieldDef,
    OrgSchema,
    Stage,
)
from sandbox.salesforce.simulator import ROUTE_NAMES, ROUTES, SalesforceSimulator
from sandbox.salesforce.soql import SoqlError
from sandbox.salesforce.store import API_USER_ID, SALES_USER_ID, MultipleMatches, RecordStore

__all__ = [
    "API_USER_ID",
    "DEFAULT_STAGES",
    "EXTERNAL_ID_FIELD",
    "PARTNER_FIELDS",
    "ROUTES",
    "ROUTE_NAMES",
    "SALES_USER_ID",
    "Action",
    "ApiError",
    "ConnectedApp",
    "FieldDef",
    "MultipleMatches",
    "OrgSchema",
    "RecordError",
    "RecordRejected",
    "RecordStore",
    "SalesforceSimulator",
    "SalespersonSimulator",
    "SessionStore",
    "SoqlError",
    "Stage",
    "generate_key_and_certificate",
    "salesforce_responder",
]
