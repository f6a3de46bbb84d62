"""The simulated org's metadata: sObjects, their fields, the OpportunityStage table, currencies.

Describe answers come from here (:meth:`OrgSchema.describe`), and so do the data rules the
store enforces: types, lengths, required and read-only fields, restricted picklists, external
id / unique flags. Field names are looked up case-insensitively, as Salesforce does.

The org is **multi-currency** (every sObject but OpportunityContactRole has
``CurrencyIsoCode``, a restricted picklist of the active currencies; the corporate currency is
the first). The default Opportunity custom fields are the ones a partner adds to a real org
for Referral Sync (see :data:`PARTNER_FIELDS`).

Tests change the metadata as an admin would: :meth:`OrgSchema.remove_field`,
:meth:`OrgSchema.remove_picklist_value`, :meth:`OrgSchema.set_unique`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "DECLINE_REASONS",
    "DEFAULT_CURRENCIES",
    "DEFAULT_STAGES",
    "EXTERNAL_ID_FIELD",
    "LOSS_REASONS",
    "PARTNER_FIELDS",
    "FieldDef",
    "OrgSchema",
    "SObjectDef",
    "Stage",
]

EXTERNAL_ID_FIELD = "Partner_Center_Referral_Id__c"
DEFAULT_CURRENCIES = ("USD", "EUR", "BRL", "GBP", "JPY", "AUD", "CAD", "INR")
DECLINE_REASONS = ("Not a fit", "No capacity", "Duplicate", "Customer not interested", "Other")
LOSS_REASONS = ("Price", "Competitor", "No budget", "No decision", "Timing", "Other")

# Field types (describe "type") and their SOAP types.
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
TEXT_TYPES = frozenset(
    {"id", "reference", "string", "textarea", "picklist", "email", "phone", "url"}
)
NUMBER_TYPES = frozenset({"currency", "double", "percent"})


@dataclass(frozen=True, slots=True)
class Stage:
    """One OpportunityStage row."""

    name: str
    is_closed: bool
    is_won: bool
    probability: int
    forecast_category: str


DEFAULT_STAGES = (
    Stage("Prospecting", False, False, 10, "Pipeline"),
    Stage("Qualification", False, False, 10, "Pipeline"),
    Stage("Needs Analysis", False, False, 20, "Pipeline"),
    Stage("Value Proposition", False, False, 50, "Pipeline"),
    Stage("Id. Decision Makers", False, False, 60, "Pipeline"),
    Stage("Perception Analysis", False, False, 70, "Pipeline"),
    Stage("Proposal/Price Quote", False, False, 75, "Pipeline"),
    Stage("Negotiation/Review", False, False, 90, "Pipeline"),
    Stage("Closed Won", True, True, 100, "Closed"),
    Stage("Closed Lost", True, False, 0, "Omitted"),
)


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field as describe shows it. ``length`` is for text types, ``precision``/``scale``
    for numbers. ``required`` = not nillable, createable and not defaulted on create."""

    name: str
    type: str
    label: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    defaulted_on_create: bool = False
    precision: int = 0
    scale: int = 0
    custom: bool = False
    calculated: bool = False

    @property
    def required(self) -> bool:
        return not self.nillable and self.createable and not self.defaulted_on_create

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": _SOAP_TYPES[self.type],
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": self.precision,
            "scale": self.scale,
            "digits": 0,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "idLookup": self.type == "id" or self.external_id,
            "custom": self.custom,
            "calculated": self.calculated,
            "defaultedOnCreate": self.defaulted_on_create,
            "filterable": self.type != "textarea" or self.length <= 255,
            "sortable": self.type != "textarea" or self.length <= 255,
            "restrictedPicklist": self.restricted,
            "dependentPicklist": False,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": False,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "defaultValue": False if self.type == "boolean" else None,
        }


@dataclass(frozen=True, slots=True)
class SObjectDef:
    name: str
    label: str
    key_prefix: str
    fields: tuple[FieldDef, ...]

    def field(self, name: str) -> FieldDef | None:
        lowered = name.lower()
        for f in self.fields:
            if f.name.lower() == lowered:
                return f
        return None

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationship name is ``name`` (e.g. ``Account``)."""
        lowered = name.lower()
        for f in self.fields:
            if f.relationship_name and f.relationship_name.lower() == lowered:
                return f
        return None


def _text(name: str, label: str, length: int, **kw: Any) -> FieldDef:  # noqa: ANN401 - FieldDef keywords
    return FieldDef(name, kw.pop("type", "string"), label, length=length, **kw)


def _readonly(name: str, type_: str, label: str, **kw: Any) -> FieldDef:  # noqa: ANN401 - FieldDef keywords
    return FieldDef(name, type_, label, createable=False, updateable=False, **kw)


def _system_fields() -> tuple[FieldDef, ...]:
    return (
        _readonly("IsDeleted", "boolean", "Deleted", nillable=False, defaulted_on_create=True),
        _readonly("CreatedDate", "datetime", "Created Date", nillable=False),
        _readonly(
            "CreatedById",
            "reference",
            "Created By ID",
            length=18,
            nillable=False,
            reference_to=("User",),
            relationship_name="CreatedBy",
        ),
        _readonly("LastModifiedDate", "datetime", "Last Modified Date", nillable=False),
        _readonly(
            "LastModifiedById",
            "reference",
            "Last Modified By ID",
            length=18,
            nillable=False,
            reference_to=("User",),
            relationship_name="LastModifiedBy",
        ),
        _readonly("SystemModstamp", "datetime", "System Modstamp", nillable=False),
    )


def _id_field(label: str) -> FieldDef:
    return _readonly("Id", "id", label, length=18, nillable=False, defaulted_on_create=True)


def _currency_field(label: str, currencies: tuple[str, ...]) -> FieldDef:
    return FieldDef(
        "CurrencyIsoCode",
        "picklist",
        f"{label} Currency",
        length=3,
        picklist=currencies,
        restricted=True,
        defaulted_on_create=True,
    )


PARTNER_FIELDS = (
    _text(
        EXTERNAL_ID_FIELD,
        "Partner Center Referral Id",
        100,
        external_id=True,
        unique=True,
        custom=True,
    ),
    _text("Partner_Center_Engagement_Id__c", "Partner Center Engagement Id", 100, custom=True),
    _text("Partner_Center_Status__c", "Partner Center Status", 40, custom=True),
    _text("Partner_Center_Link__c", "Partner Center Link", 255, type="url", custom=True),
    FieldDef(
        "Partner_Center_Hot__c",
        "boolean",
        "Partner Center Hot",
        nillable=False,
        defaulted_on_create=True,
        custom=True,
    ),
    FieldDef("Partner_Center_Expires__c", "datetime", "Partner Center Expires", custom=True),
    _text("Microsoft_Notes__c", "Microsoft Notes", 32768, type="textarea", custom=True),
    FieldDef(
        "Decline_Reason__c",
        "picklist",
        "Decline Reason",
        length=255,
        picklist=DECLINE_REASONS,
        restricted=True,
        custom=True,
    ),
    FieldDef(
        "Loss_Reason__c",
        "picklist",
        "Loss Reason",
        length=255,
        picklist=LOSS_REASONS,
        restricted=True,
        custom=True,
    ),
)
"""The Opportunity custom fields a partner adds to a real org for Referral Sync (Setup →
Object Manager → Opportunity → Fields & Relationships): ``Partner_Center_Referral_Id__c``
Text(100), External ID, Unique (case-insensitive); ``Partner_Center_Engagement_Id__c``
Text(100); ``Partner_Center_Status__c`` Text(40); ``Partner_Center_Link__c`` URL;
``Partner_Center_Hot__c`` Checkbox; ``Partner_Center_Expires__c`` Date/Time;
``Microsoft_Notes__c`` Long Text Area(32768); ``Decline_Reason__c`` and ``Loss_Reason__c``
Picklists restricted to :data:`DECLINE_REASONS` / :data:`LOSS_REASONS`."""


def _opportunity(stages: tuple[Stage, ...], currencies: tuple[str, ...]) -> SObjectDef:
    fields = (
        _id_field("Opportunity ID"),
        FieldDef(
            "AccountId",
            "reference",
            "Account ID",
            length=18,
            reference_to=("Account",),
            relationship_name="Account",
        ),
        _text("Name", "Name", 120, nillable=False),
        _text("Description", "Description", 32000, type="textarea"),
        FieldDef(
            "StageName",
            "picklist",
            "Stage",
            length=255,
            nillable=False,
            picklist=tuple(s.name for s in stages),
            restricted=True,
        ),
        FieldDef("Amount", "currency", "Amount", precision=18, scale=2),
        FieldDef("Probability", "percent", "Probability (%)", precision=3, scale=0),
        FieldDef("CloseDate", "date", "Close Date", nillable=False),
        FieldDef(
            "Type",
            "picklist",
            "Opportunity Type",
            length=255,
            picklist=("Existing Business", "New Business"),
        ),
        _text("NextStep", "Next Step", 255),
        FieldDef(
            "LeadSource",
            "picklist",
            "Lead Source",
            length=255,
            picklist=("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
        ),
        _readonly("IsClosed", "boolean", "Closed", nillable=False, defaulted_on_create=True),
        _readonly("IsWon", "boolean", "Won", nillable=False, defaulted_on_create=True),
        FieldDef(
            "ForecastCategoryName",
            "picklist",
            "Forecast Category",
            length=255,
            picklist=("Omitted", "Pipeline", "Best Case", "Commit", "Closed"),
            restricted=True,
            defaulted_on_create=True,
        ),
        _currency_field("Opportunity", currencies),
        *_system_fields(),
        *PARTNER_FIELDS,
    )
    return SObjectDef("Opportunity", "Opportunity", "006", fields)


def _account(currencies: tuple[str, ...]) -> SObjectDef:
    fields = (
        _id_field("Account ID"),
        _text("Name", "Account Name", 255, nillable=False),
        _text("Website", "Website", 255, type="url"),
        _text("Phone", "Account Phone", 40, type="phone"),
        _text("BillingStreet", "Billing Street", 255, type="textarea"),
        _text("BillingCity", "Billing City", 40),
        _text("BillingState", "Billing State/Province", 80),
        _text("BillingPostalCode", "Billing Zip/Postal Code", 20),
        _text("BillingCountry", "Billing Country", 80),
        FieldDef(
            "Industry",
            "picklist",
            "Industry",
            length=255,
            picklist=("Technology", "Finance", "Healthcare", "Manufacturing", "Retail", "Other"),
        ),
        _currency_field("Account", currencies),
        *_system_fields(),
    )
    return SObjectDef("Account", "Account", "001", fields)


def _contact(currencies: tuple[str, ...]) -> SObjectDef:
    fields = (
        _id_field("Contact ID"),
        FieldDef(
            "AccountId",
            "reference",
            "Account ID",
            length=18,
            reference_to=("Account",),
            relationship_name="Account",
        ),
        _text("FirstName", "First Name", 40),
        _text("LastName", "Last Name", 80, nillable=False),
        _text("Email", "Email", 80, type="email"),
        _text("Phone", "Business Phone", 40, type="phone"),
        _text("Title", "Title", 128),
        _currency_field("Contact", currencies),
        *_system_fields(),
    )
    return SObjectDef("Contact", "Contact", "003", fields)


def _contact_role() -> SObjectDef:
    fields = (
        _id_field("Opportunity Contact Role ID"),
        FieldDef(
            "OpportunityId",
            "reference",
            "Opportunity ID",
            length=18,
            nillable=False,
            updateable=False,
            reference_to=("Opportunity",),
            relationship_name="Opportunity",
        ),
        FieldDef(
            "ContactId",
            "reference",
            "Contact ID",
            length=18,
            nillable=False,
            reference_to=("Contact",),
            relationship_name="Contact",
        ),
        FieldDef(
            "Role",
            "picklist",
            "Role",
            length=40,
            picklist=(
                "Business User",
                "Decision Maker",
                "Economic Buyer",
                "Economic Decision Maker",
                "Evaluator",
                "Executive Sponsor",
                "Influencer",
                "Technical Buyer",
                "Other",
            ),
        ),
        FieldDef("IsPrimary", "boolean", "Primary", nillable=False, defaulted_on_create=True),
        *_system_fields(),
    )
    return SObjectDef("OpportunityContactRole", "Opportunity Contact Role", "00K", fields)


@dataclass(slots=True)
class OrgSchema:
    """The org's metadata. Thread-safe; every change replaces immutable definitions."""

    currencies: tuple[str, ...] = DEFAULT_CURRENCIES
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    org_id: str = "00D000000000001AAA"
    _objects: dict[str, SObjectDef] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.currencies:
            raise ValueError("an org needs at least one active currency")
        if not self._objects:
            self.reset()

    def reset(self) -> None:
        """Back to the default metadata (undoes every admin change)."""
        objects = (
            _opportunity(self.stages, self.currencies),
            _account(self.currencies),
            _contact(self.currencies),
            _contact_role(),
        )
        with self._lock:
            self._objects = {obj.name: obj for obj in objects}

    @property
    def corporate_currency(self) -> str:
        return self.currencies[0]

    def sobject(self, name: str) -> SObjectDef | None:
        """The sObject called ``name`` (any case), or ``None``."""
        with self._lock:
            for key, obj in self._objects.items():
                if key.lower() == name.lower():
                    return obj
        return None

    def sobject_by_prefix(self, prefix: str) -> SObjectDef | None:
        with self._lock:
            return next((o for o in self._objects.values() if o.key_prefix == prefix), None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._objects)

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def describe(self, name: str, version: str) -> dict[str, Any] | None:
        obj = self.sobject(name)
        if obj is None:
            return None
        base = f"/services/data/v{version}/sobjects/{obj.name}"
        return {
            "name": obj.name,
            "label": obj.label,
            "labelPlural": f"{obj.label}s",
            "keyPrefix": obj.key_prefix,
            "custom": False,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "fields": [f.describe() for f in obj.fields],
            "childRelationships": [],
            "recordTypeInfos": [],
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }

    # -- admin changes (for tests of the adapter's metadata check) ------------------------

    def remove_field(self, sobject: str, name: str) -> None:
        """Delete a field, as an admin would (stored values become invisible)."""
        self._change(sobject, name, None)

    def remove_picklist_value(self, sobject: str, field_name: str, value: str) -> None:
        """Deactivate one picklist value (existing records keep it; new writes fail)."""
        fdef = self._field(sobject, field_name)
        values = tuple(v for v in fdef.picklist if v != value)
        if values == fdef.picklist:
            raise KeyError(f"{sobject}.{field_name} has no picklist value {value!r}")
        self._change(sobject, field_name, replace(fdef, picklist=values))

    def set_unique(self, sobject: str, field_name: str, unique: bool) -> None:
        """Tick or untick "Unique" on a field (an external id that is not unique can match
        several records: upsert answers 300)."""
        fdef = self._field(sobject, field_name)
        self._change(sobject, field_name, replace(fdef, unique=unique))

    def _field(self, sobject: str, name: str) -> FieldDef:
        obj = self.sobject(sobject)
        fdef = obj.field(name) if obj else None
        if fdef is None:
            raise KeyError(f"no field {sobject}.{name}")
        return fdef

    def _change(self, sobject: str, name: str, new: FieldDef | None) -> None:
        obj = self.sobject(sobject)
        if obj is None or obj.field(name) is None:
            raise KeyError(f"no field {sobject}.{name}")
        lowered = name.lower()
        if new is None:
            fields = tuple(f for f in obj.fields if f.name.lower() != lowered)
        else:
            fields = tuple(new if f.name.lower() == lowered else f for f in obj.fields)
        with self._lock:
            self._objects[obj.name] = replace(obj, fields=fields)
