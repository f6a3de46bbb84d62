"""Salesforce's JSON shapes, with Salesforce's own field names: the only place they appear
(besides the adapter's mapping of them). Read-side shapes are ``total=False``: a response is
checked where it is used, never trusted to be complete.
"""

from __future__ import annotations

from typing import Any, TypedDict


class TokenResponse(TypedDict, total=False):
    """``POST /services/oauth2/token`` on success (JWT bearer or client credentials)."""

    access_token: str
    instance_url: str
    id: str
    token_type: str
    issued_at: str
    signature: str
    scope: str


class TokenError(TypedDict, total=False):
    """``POST /services/oauth2/token`` on failure."""

    error: str
    error_description: str


class RestError(TypedDict, total=False):
    """One item of the JSON array a failed REST call answers with."""

    message: str
    errorCode: str
    fields: list[str]


DUPLICATE_VALUE = "DUPLICATE_VALUE"
"""A save's ``statusCode`` when a unique field's value is taken (the external id, on create)."""


class SaveError(TypedDict, total=False):
    """One error of one record in a Collections result (``statusCode``, not ``errorCode``)."""

    statusCode: str
    message: str
    fields: list[str]


class UpsertResult(TypedDict, total=False):
    """One record's result of ``PATCH composite/sobjects/<type>/<external id field>``."""

    id: str | None
    success: bool
    errors: list[SaveError]
    created: bool


class SaveResult(TypedDict, total=False):
    """``POST sobjects/<type>``: the new record's id."""

    id: str
    success: bool
    errors: list[SaveError]


class RecordAttributes(TypedDict, total=False):
    type: str
    url: str


class QueryEnvelope(TypedDict, total=False):
    """``GET query?q=…`` / ``queryAll`` and each ``nextRecordsUrl`` page."""

    totalSize: int
    done: bool
    nextRecordsUrl: str
    records: list[dict[str, Any]]


class PicklistEntry(TypedDict, total=False):
    value: str
    label: str
    active: bool
    defaultValue: bool


class DescribeField(TypedDict, total=False):
    """One field of ``GET sobjects/<type>/describe``."""

    name: str
    label: str
    type: str
    createable: bool
    updateable: bool
    nillable: bool
    externalId: bool
    unique: bool
    picklistValues: list[PicklistEntry]


class DescribeSObject(TypedDict, total=False):
    """``GET sobjects/<type>/describe`` (only what the adapter reads)."""

    name: str
    label: str
    fields: list[DescribeField]


# Opportunity, Account, Contact and OpportunityContactRole fields the adapter itself uses.
ID = "Id"
SYSTEM_MODSTAMP = "SystemModstamp"
IS_DELETED = "IsDeleted"
ACCOUNT_ID = "AccountId"
ACCOUNT_FIELDS = {
    "name": "Name",
    "postal_code": "BillingPostalCode",
    "street": "BillingStreet",
    "city": "BillingCity",
    "state": "BillingState",
    "country": "BillingCountry",
}
CONTACT_FIELDS = {
    "last_name": "LastName",
    "first_name": "FirstName",
    "email": "Email",
    "phone": "Phone",
    "title": "Title",
}
CONTACT_ROLE_OPPORTUNITY = "OpportunityId"
CONTACT_ROLE_CONTACT = "ContactId"
