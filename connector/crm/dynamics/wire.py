"""The Dataverse Web API's JSON shapes and names: the only place they appear (besides the
adapter's mapping of them). Read-side shapes are ``total=False``: a response is checked where
it is used, never trusted to be complete.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorBody(TypedDict, total=False):
    """``error`` of the envelope every failed call answers with (crm-apis §C7)."""

    code: str
    message: str


class ErrorEnvelope(TypedDict, total=False):
    error: ErrorBody


class Page(TypedDict, total=False):
    """``GET <entity set>``: one page of rows (and where the next page or the delta is)."""

    value: list[dict[str, Any]]


class LocalizedLabel(TypedDict, total=False):
    Label: str
    LanguageCode: int


class Label(TypedDict, total=False):
    UserLocalizedLabel: LocalizedLabel | None
    LocalizedLabels: list[LocalizedLabel]


class OptionMetadata(TypedDict, total=False):
    Value: int
    Label: Label
    State: int


class OptionSetMetadata(TypedDict, total=False):
    Options: list[OptionMetadata]


class AttributeMetadata(TypedDict, total=False):
    """One column of ``EntityDefinitions(...)/Attributes`` (only what the adapter reads)."""

    LogicalName: str
    AttributeType: str
    IsValidForCreate: bool
    IsValidForUpdate: bool
    Format: str
    DateTimeBehavior: dict[str, str]
    OptionSet: OptionSetMetadata


class KeyMetadata(TypedDict, total=False):
    LogicalName: str
    KeyAttributes: list[str]
    EntityKeyIndexStatus: str


class EntityMetadata(TypedDict, total=False):
    LogicalName: str
    EntitySetName: str
    ChangeTrackingEnabled: bool
    Attributes: list[AttributeMetadata]
    Keys: list[KeyMetadata]


# Annotations and link names of OData JSON.
NEXT_LINK = "@odata.nextLink"
DELTA_LINK = "@odata.deltaLink"
CONTEXT = "@odata.context"
ETAG = "@odata.etag"
BIND = "@odata.bind"
DELETED_ENTITY = "$deletedEntity"

# Tables (logical name, entity set) and the columns the adapter itself uses.
OPPORTUNITY = "opportunity"
OPPORTUNITIES = "opportunities"
OPPORTUNITY_ID = "opportunityid"
ACCOUNTS = "accounts"
ACCOUNT_ID = "accountid"
CONTACTS = "contacts"
CONTACT_ID = "contactid"
CURRENCIES = "transactioncurrencies"
CURRENCY_ID = "transactioncurrencyid"
ISO_CODE = "isocurrencycode"
MODIFIED_ON = "modifiedon"
CREATED_ON = "createdon"
STATECODE = "statecode"
STATUSCODE = "statuscode"
ACCOUNT_FIELDS = {
    "name": "name",
    "postal_code": "address1_postalcode",
    "street": "address1_line1",
    "city": "address1_city",
    "state": "address1_stateorprovince",
    "country": "address1_country",
}
CONTACT_FIELDS = {
    "last_name": "lastname",
    "first_name": "firstname",
    "email": "emailaddress1",
    "phone": "telephone1",
    "title": "jobtitle",
}
CONTACT_ACCOUNT_BIND = "parentcustomerid_account"  # the contact's company
CUSTOMER_BIND = "customerid_account"  # the opportunity's potential customer (Customer lookup)
PARENT_ACCOUNT_BIND = "parentaccountid"
PARENT_CONTACT_BIND = "parentcontactid"
WIN = "WinOpportunity"
LOSE = "LoseOpportunity"

# Attribute types (``AttributeType``) the adapter treats specially.
CHOICE = "Picklist"
STATUS = "Status"
STATE = "State"
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
MONEY_TYPES = frozenset({"Money", "Decimal", "Double"})
INTEGER_TYPES = frozenset({"Integer", "BigInt"})

# Error codes (``error.code``) that change what the adapter does.
EXPIRED_VERSION_STAMP = "0x80044352"  # the delta token is too old: full sync
READ_ONLY = "0x8004022e"  # a closed opportunity cannot be updated
INVALID_ARGUMENT = "0x80040203"  # e.g. an open status reason for a closed opportunity
SERVICE_PROTECTION = ("0x80072322", "0x80072321", "0x80072326")  # §C6
