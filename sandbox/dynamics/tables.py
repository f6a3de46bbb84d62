"""The default tables of the simulated environment (crm-apis §C1) and the partner's columns.

``opportunity`` has the out-of-box columns the sync uses, plus the ones a partner adds for
Referral Sync with publisher prefix ``rs_`` (:data:`PARTNER_COLUMNS`), and the alternate key
``rs_partnercenterreferralid_key`` on ``rs_partnercenterreferralid`` (opportunity has no
out-of-box key). ``rs_declinereason`` is a **choice** (local option set, values from the
publisher's option prefix 100000000 up): a partner reports on decline reasons, and a choice
keeps them to a known list, as the Salesforce org's restricted picklist does.

Required columns: Dataverse only *enforces* SystemRequired columns; ApplicationRequired
("business required") is enforced by the apps. The simulator is stricter for the primary name
columns (opportunity ``name``, account ``name``, contact ``lastname``): a client must send them.
The metadata still says ApplicationRequired, as the real metadata does.
"""

from __future__ import annotations

from sandbox.dynamics.schema import (
    BIGINT,
    BOOLEAN,
    CUSTOMER,
    DATETIME,
    DECIMAL,
    INTEGER,
    LOOKUP,
    MEMO,
    MONEY,
    PICKLIST,
    STATE,
    STATUS,
    STRING,
    UNIQUEIDENTIFIER,
    AttributeDef,
    EntityDef,
    KeyDef,
    OptionDef,
)

__all__ = [
    "ALTERNATE_KEY",
    "ALTERNATE_KEY_COLUMN",
    "CURRENCIES",
    "DECLINE_REASONS",
    "DEFAULT_TABLES",
    "PARTNER_COLUMNS",
]

ALTERNATE_KEY = "rs_partnercenterreferralid_key"
ALTERNATE_KEY_COLUMN = "rs_partnercenterreferralid"
CURRENCIES = (
    ("USD", "US Dollar", "$", 1.0),
    ("EUR", "Euro", "€", 0.92),
    ("BRL", "Brazilian Real", "R$", 5.0),
    ("GBP", "Pound Sterling", "£", 0.79),
    ("JPY", "Japanese Yen", "¥", 150.0),
    ("AUD", "Australian Dollar", "$", 1.52),
    ("CAD", "Canadian Dollar", "$", 1.36),
    ("INR", "Indian Rupee", "₹", 83.0),
)
DECLINE_REASONS = (
    OptionDef(100000000, "Not a fit"),
    OptionDef(100000001, "No capacity"),
    OptionDef(100000002, "Duplicate"),
    OptionDef(100000003, "Customer not interested"),
    OptionDef(100000004, "Other"),
)


def _id(name: str, label: str) -> AttributeDef:
    return AttributeDef(
        name, UNIQUEIDENTIFIER, label, required="SystemRequired", valid_for_update=False
    )


def _system() -> tuple[AttributeDef, ...]:
    return (
        AttributeDef(
            "createdon", DATETIME, "Created On", valid_for_create=False, valid_for_update=False
        ),
        AttributeDef(
            "modifiedon", DATETIME, "Modified On", valid_for_create=False, valid_for_update=False
        ),
        AttributeDef(
            "versionnumber",
            BIGINT,
            "Version Number",
            valid_for_create=False,
            valid_for_update=False,
        ),
        AttributeDef(
            "modifiedby",
            LOOKUP,
            "Modified By",
            targets=("systemuser",),
            valid_for_create=False,
            valid_for_update=False,
        ),
    )


def _active_states() -> tuple[AttributeDef, AttributeDef]:
    return (
        AttributeDef(
            "statecode",
            STATE,
            "Status",
            required="SystemRequired",
            valid_for_create=False,
            options=(
                OptionDef(0, "Active", default_status=1, invariant="Active"),
                OptionDef(1, "Inactive", default_status=2, invariant="Inactive"),
            ),
        ),
        AttributeDef(
            "statuscode",
            STATUS,
            "Status Reason",
            options=(OptionDef(1, "Active", state=0), OptionDef(2, "Inactive", state=1)),
        ),
    )


OPPORTUNITY_STATES = (
    OptionDef(0, "Open", default_status=1, invariant="Open"),
    OptionDef(1, "Won", default_status=3, invariant="Won"),
    OptionDef(2, "Lost", default_status=4, invariant="Lost"),
)
OPPORTUNITY_STATUSES = (
    OptionDef(1, "In Progress", state=0),
    OptionDef(2, "On Hold", state=0),
    OptionDef(3, "Won", state=1),
    OptionDef(4, "Canceled", state=2),
    OptionDef(5, "Out-Sold", state=2),
)

PARTNER_COLUMNS = (
    AttributeDef(
        ALTERNATE_KEY_COLUMN, STRING, "Partner Center Referral Id", max_length=100, custom=True
    ),
    AttributeDef(
        "rs_engagementid", STRING, "Partner Center Engagement Id", max_length=100, custom=True
    ),
    AttributeDef(
        "rs_partnercenterstatus", STRING, "Partner Center Status", max_length=100, custom=True
    ),
    AttributeDef(
        "rs_referrallink", STRING, "Referral Link", max_length=2000, custom=True, format_name="Url"
    ),
    AttributeDef("rs_hot", BOOLEAN, "Hot", custom=True),
    AttributeDef("rs_expires", DATETIME, "Referral Expires", custom=True),
    AttributeDef("rs_microsoftnotes", MEMO, "Microsoft Notes", max_length=100000, custom=True),
    AttributeDef(
        "rs_declinereason", PICKLIST, "Decline Reason", options=DECLINE_REASONS, custom=True
    ),
)

OPPORTUNITY = EntityDef(
    logical_name="opportunity",
    entity_set="opportunities",
    primary_id="opportunityid",
    primary_name="name",
    display_name="Opportunity",
    object_type_code=3,
    metadata_id="3882f8e5-0000-4000-8000-000000000003",
    enforced_required=("name",),
    keys=(
        KeyDef(
            ALTERNATE_KEY,
            "rs_PartnerCenterReferralId_Key",
            (ALTERNATE_KEY_COLUMN,),
            "Partner Center Referral Id",
        ),
    ),
    attributes=(
        _id("opportunityid", "Opportunity"),
        AttributeDef("name", STRING, "Topic", required="ApplicationRequired", max_length=300),
        AttributeDef("description", MEMO, "Description", max_length=2000),
        AttributeDef("estimatedvalue", MONEY, "Est. Revenue"),
        AttributeDef("estimatedclosedate", DATETIME, "Est. Close Date", date_only=True),
        AttributeDef("actualvalue", MONEY, "Actual Revenue"),
        AttributeDef("actualclosedate", DATETIME, "Actual Close Date", date_only=True),
        AttributeDef("isrevenuesystemcalculated", BOOLEAN, "Revenue"),
        AttributeDef("closeprobability", INTEGER, "Probability"),
        AttributeDef(
            "statecode",
            STATE,
            "Status",
            required="SystemRequired",
            valid_for_create=False,
            options=OPPORTUNITY_STATES,
        ),
        AttributeDef("statuscode", STATUS, "Status Reason", options=OPPORTUNITY_STATUSES),
        AttributeDef(
            "customerid",
            CUSTOMER,
            "Potential Customer",
            required="ApplicationRequired",
            targets=("account", "contact"),
        ),
        AttributeDef("parentaccountid", LOOKUP, "Account", targets=("account",)),
        AttributeDef("parentcontactid", LOOKUP, "Contact", targets=("contact",)),
        AttributeDef("transactioncurrencyid", LOOKUP, "Currency", targets=("transactioncurrency",)),
        AttributeDef(
            "exchangerate", DECIMAL, "Exchange Rate", valid_for_create=False, valid_for_update=False
        ),
        *PARTNER_COLUMNS,
        *_system(),
    ),
)

ACCOUNT = EntityDef(
    logical_name="account",
    entity_set="accounts",
    primary_id="accountid",
    primary_name="name",
    display_name="Account",
    object_type_code=1,
    metadata_id="70816501-0000-4000-8000-000000000001",
    enforced_required=("name",),
    attributes=(
        _id("accountid", "Account"),
        AttributeDef(
            "name", STRING, "Account Name", required="ApplicationRequired", max_length=160
        ),
        AttributeDef("accountnumber", STRING, "Account Number", max_length=20),
        AttributeDef("websiteurl", STRING, "Website", max_length=200, format_name="Url"),
        AttributeDef("telephone1", STRING, "Main Phone", max_length=50),
        AttributeDef("emailaddress1", STRING, "Email", max_length=100),
        AttributeDef("address1_line1", STRING, "Address 1: Street 1", max_length=250),
        AttributeDef("address1_city", STRING, "Address 1: City", max_length=80),
        AttributeDef(
            "address1_stateorprovince", STRING, "Address 1: State/Province", max_length=50
        ),
        AttributeDef("address1_postalcode", STRING, "Address 1: ZIP/Postal Code", max_length=20),
        AttributeDef("address1_country", STRING, "Address 1: Country/Region", max_length=80),
        AttributeDef("transactioncurrencyid", LOOKUP, "Currency", targets=("transactioncurrency",)),
        *_active_states(),
        *_system(),
    ),
)

CONTACT = EntityDef(
    logical_name="contact",
    entity_set="contacts",
    primary_id="contactid",
    primary_name="fullname",
    display_name="Contact",
    object_type_code=2,
    metadata_id="608861bc-0000-4000-8000-000000000002",
    enforced_required=("lastname",),
    attributes=(
        _id("contactid", "Contact"),
        AttributeDef("firstname", STRING, "First Name", max_length=50),
        AttributeDef(
            "lastname", STRING, "Last Name", required="ApplicationRequired", max_length=50
        ),
        AttributeDef(
            "fullname",
            STRING,
            "Full Name",
            max_length=160,
            valid_for_create=False,
            valid_for_update=False,
        ),
        AttributeDef("emailaddress1", STRING, "Email", max_length=100),
        AttributeDef("telephone1", STRING, "Business Phone", max_length=50),
        AttributeDef("jobtitle", STRING, "Job Title", max_length=100),
        AttributeDef("parentcustomerid", CUSTOMER, "Company Name", targets=("account",)),
        *_active_states(),
        *_system(),
    ),
)

TRANSACTION_CURRENCY = EntityDef(
    logical_name="transactioncurrency",
    entity_set="transactioncurrencies",
    primary_id="transactioncurrencyid",
    primary_name="currencyname",
    display_name="Currency",
    object_type_code=9105,
    metadata_id="a8a5a9a9-0000-4000-8000-000000009105",
    change_tracking=False,
    enforced_required=("isocurrencycode", "currencyname"),
    attributes=(
        _id("transactioncurrencyid", "Currency"),
        AttributeDef(
            "isocurrencycode", STRING, "Currency Code", required="SystemRequired", max_length=5
        ),
        AttributeDef(
            "currencyname", STRING, "Currency Name", required="SystemRequired", max_length=100
        ),
        AttributeDef("currencysymbol", STRING, "Currency Symbol", max_length=10),
        AttributeDef("exchangerate", DECIMAL, "Exchange Rate"),
        AttributeDef("currencyprecision", INTEGER, "Currency Precision"),
        *_active_states(),
        *_system(),
    ),
)

OPPORTUNITY_CLOSE = EntityDef(
    logical_name="opportunityclose",
    entity_set="opportunitycloses",
    primary_id="activityid",
    primary_name="subject",
    display_name="Opportunity Close",
    object_type_code=4208,
    metadata_id="b1a1c2d3-0000-4000-8000-000000004208",
    change_tracking=False,
    attributes=(
        _id("activityid", "Opportunity Close"),
        AttributeDef("subject", STRING, "Subject", max_length=200),
        AttributeDef("description", MEMO, "Description", max_length=2000),
        AttributeDef("actualrevenue", MONEY, "Actual Revenue"),
        AttributeDef("actualend", DATETIME, "Close Date", date_only=True),
        AttributeDef("opportunityid", LOOKUP, "Opportunity", targets=("opportunity",)),
        AttributeDef(
            "statecode",
            STATE,
            "Activity Status",
            required="SystemRequired",
            valid_for_create=False,
            options=(
                OptionDef(0, "Open", default_status=1, invariant="Open"),
                OptionDef(1, "Completed", default_status=2, invariant="Completed"),
                OptionDef(2, "Canceled", default_status=3, invariant="Canceled"),
            ),
        ),
        AttributeDef(
            "statuscode",
            STATUS,
            "Status Reason",
            options=(
                OptionDef(1, "Open", state=0),
                OptionDef(2, "Completed", state=1),
                OptionDef(3, "Canceled", state=2),
            ),
        ),
        *_system(),
    ),
)

DEFAULT_TABLES = (OPPORTUNITY, ACCOUNT, CONTACT, TRANSACTION_CURRENCY, OPPORTUNITY_CLOSE)
