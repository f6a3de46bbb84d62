"""What the CRM adapter contract suite needs from each implementation, behind one interface.

The suite (``test_crm_adapter_contract.py``) is written once against :class:`CrmHarness`; each
implementation (the fake, Salesforce against its simulator, later Dynamics) supplies a harness
that builds its adapter and reaches behind it: reads what the CRM holds, makes a salesperson's
edit, spends the org's request limit, expires the token, removes a field from the org.

Everything vendor-shaped the suite writes (field names, picklist values, the metadata it
requires) comes from the harness's :class:`Vocabulary`, so the suite itself names no CRM field.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from fakes import FakeClock, FakeCrm, TickingClock

from connector.crm.dynamics.build import build_dynamics_from_info
from connector.crm.salesforce.build import build_salesforce_from_info
from connector.crm.salesforce.client import DEFAULT_QUOTA_WAIT_S
from connector.ports import AccountRef, ContactRef, CrmAdapter, FieldRequirement
from connector.settings import RetrySettings
from sandbox.app import Sandbox
from sandbox.dynamics import SALES_USER_ID, Limits, Lookup


@dataclass(frozen=True, slots=True, kw_only=True)
class Vocabulary:
    """The CRM's own names for what the suite writes and checks."""

    sobject: str  # the opportunity object
    name: str  # required text field
    name_max: int  # its maximum length
    stage: str  # required restricted picklist
    stages: tuple[str, str]  # two of its values
    close_date: str  # required date field
    amount: str  # number field
    plain_text: str  # a text field that is not an external id
    picklist: str  # a restricted picklist field the suite may lose a value of
    picklist_value: str  # that value

    def fields(
        self, name: str, *, stage: int = 0, amount: Decimal = Decimal(1000)
    ) -> dict[str, object]:
        """A valid set of opportunity fields, typed as the adapter reads them back."""
        return {
            self.name: name,
            self.stage: self.stages[stage],
            self.close_date: date(2026, 6, 30),
            self.amount: amount,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """One opportunity as the CRM holds it, read behind the adapter's back."""

    crm_id: str
    key: str
    fields: dict[str, Any]
    account_id: str | None
    account: AccountRef | None
    contacts: tuple[ContactRef, ...]  # sorted by e-mail


class CrmHarness(Protocol):
    """One CRM implementation, as the contract suite drives and inspects it."""

    adapter: CrmAdapter
    vocabulary: Vocabulary

    def opportunities(self) -> dict[str, Stored]:
        """Every opportunity the CRM holds now, by key."""
        ...

    def account_count(self) -> int: ...

    def edit(self, crm_id: str, **fields: object) -> None:
        """A salesperson changes an opportunity in the CRM (it gets a new modification stamp)."""
        ...

    def same_instant(self) -> AbstractContextManager[None]:
        """Every change inside the block gets the same modification stamp."""
        ...

    def rate_limit(self) -> None:
        """From now on the CRM refuses every request for rate, until :meth:`lift_rate_limit`."""
        ...

    def lift_rate_limit(self) -> None:
        """The limit is over, and the time the CRM asked the adapter to wait has passed."""
        ...

    def expire_token(self) -> None:
        """The adapter's current access token stops working."""
        ...

    def auth_count(self) -> int:
        """How many times the adapter has authenticated so far."""
        ...

    def requirements(self) -> list[FieldRequirement]:
        """What a complete org satisfies: fields, writability, the external id, picklists."""
        ...

    def remove_field(self, name: str) -> None:
        """An admin deletes this field of the opportunity object."""
        ...

    def remove_picklist_value(self, field: str, value: str) -> None: ...


SALESFORCE_VOCABULARY = Vocabulary(
    sobject="Opportunity",
    name="Name",
    name_max=120,
    stage="StageName",
    stages=("Prospecting", "Qualification"),
    close_date="CloseDate",
    amount="Amount",
    plain_text="Partner_Center_Engagement_Id__c",
    picklist="Decline_Reason__c",
    picklist_value="Not a fit",
)


def salesforce_requirements() -> list[FieldRequirement]:
    """What the Salesforce mapping needs of a default org (simulator and fake alike)."""

    def need(name: str, **options: Any) -> FieldRequirement:
        return FieldRequirement(sobject="Opportunity", name=name, **options)

    return [
        need("Name"),
        need("StageName", picklist_values=("Prospecting", "Closed Won", "Closed Lost")),
        need("CloseDate"),
        need("Amount"),
        need("Description"),
        need("IsWon", writable=False),
        need("Partner_Center_Referral_Id__c", external_id=True),
        need("Partner_Center_Engagement_Id__c"),
        need("Partner_Center_Status__c"),
        need("Microsoft_Notes__c"),
        need("Decline_Reason__c", picklist_values=("Not a fit", "Other")),
    ]


class FakeCrmHarness:
    """The in-memory :class:`~fakes.FakeCrm`, which is its own adapter."""

    vocabulary = SALESFORCE_VOCABULARY

    def __init__(self) -> None:
        self.clock = TickingClock()
        self.fake = FakeCrm(clock=self.clock)
        self.adapter: CrmAdapter = self.fake

    def opportunities(self) -> dict[str, Stored]:
        accounts = {a["Id"]: a for a in self.fake.records("Account")}
        contacts = {c["Id"]: c for c in self.fake.records("Contact")}
        roles = self.fake.records("OpportunityContactRole")
        stored = {}
        for record in self.fake.records("Opportunity"):
            account = accounts.get(record.get("AccountId"))
            attached = [
                contacts[r["ContactId"]] for r in roles if r["OpportunityId"] == record["Id"]
            ]
            key = record["Partner_Center_Referral_Id__c"]
            stored[key] = Stored(
                crm_id=record["Id"],
                key=key,
                fields=record,
                account_id=record.get("AccountId"),
                account=None if account is None else salesforce_account(account),
                contacts=tuple(sorted(map(salesforce_contact, attached), key=_by_email)),
            )
        return stored

    def account_count(self) -> int:
        return len(self.fake.records("Account"))

    def edit(self, crm_id: str, **fields: object) -> None:
        self.fake.edit("Opportunity", crm_id, **fields)

    def same_instant(self) -> AbstractContextManager[None]:
        return self.clock.freeze()

    def rate_limit(self) -> None:
        self.fake.rate_limit_next(calls=1_000_000)

    def lift_rate_limit(self) -> None:
        self.fake.rate_limit_next(calls=0)

    def expire_token(self) -> None:
        self.fake.expire_token()

    def auth_count(self) -> int:
        return self.fake.auth_count

    def requirements(self) -> list[FieldRequirement]:
        return salesforce_requirements()

    def remove_field(self, name: str) -> None:
        self.fake.remove_field("Opportunity", name)

    def remove_picklist_value(self, field: str, value: str) -> None:
        self.fake.remove_picklist_value("Opportunity", field, value)


class SalesforceHarness:
    """The Salesforce adapter against the sandbox's simulated org, over real TLS.

    The org is emptied and its metadata, quota and sessions restored first. Retries wait on a
    fake clock, never for real; change queries come 200 rows a page, so paging is exercised.
    """

    vocabulary = SALESFORCE_VOCABULARY

    def __init__(self, sandbox: Sandbox) -> None:
        sandbox.reset()
        sandbox.salesforce.store.clear()
        self.sandbox = sandbox
        self.sim = sandbox.salesforce
        self.clock = FakeClock()
        self.connection = build_salesforce_from_info(
            sandbox.info["salesforce"],
            sandbox.info["ca_bundle"],
            retry=RetrySettings(max_attempts=4, max_seconds=120, base_seconds=1, cap_seconds=8),
            query_batch_size=200,
            sleep=self.clock.sleep,
            clock=self.clock,
        )
        self.adapter: CrmAdapter = self.connection.adapter

    def close(self) -> None:
        self.sandbox.reset()
        self.sim.store.clear()

    def opportunities(self) -> dict[str, Stored]:
        store = self.sim.store
        accounts = {a["Id"]: a for a in store.records("Account")}
        contacts = {c["Id"]: c for c in store.records("Contact")}
        roles = store.records("OpportunityContactRole")
        described = self.sim.org.sobject("Opportunity")
        types = {f.name: f.type for f in described.fields} if described else {}
        stored = {}
        for record in store.records("Opportunity"):
            account = accounts.get(record.get("AccountId"))
            attached = [
                contacts[r["ContactId"]] for r in roles if r["OpportunityId"] == record["Id"]
            ]
            key = record["Partner_Center_Referral_Id__c"]
            stored[key] = Stored(
                crm_id=record["Id"],
                key=key,
                fields={name: _salesforce_typed(types.get(name), v) for name, v in record.items()},
                account_id=record.get("AccountId"),
                account=None if account is None else salesforce_account(account),
                contacts=tuple(sorted(map(salesforce_contact, attached), key=_by_email)),
            )
        return stored

    def account_count(self) -> int:
        return len(self.sim.store.records("Account"))

    def edit(self, crm_id: str, **fields: object) -> None:
        self.sim.store.edit("Opportunity", crm_id, **{k: _wire(v) for k, v in fields.items()})

    @contextmanager
    def same_instant(self) -> Iterator[None]:
        """Stop the org's clock on the next whole second: a SOQL datetime literal has whole
        seconds, so ties there are the ones a ``>`` instead of ``>=`` would lose."""
        store = self.sim.store
        running = store.clock
        now = running.now()
        whole = now.replace(microsecond=0) + timedelta(seconds=1)
        self.sandbox.clock.advance(whole - now)  # sandbox time never goes backwards
        store.clock = _StoppedClock(whole)
        try:
            yield
        finally:
            store.clock = running

    def rate_limit(self) -> None:
        _, quota = self.sim.api_usage
        self.sim.set_api_usage(quota)  # the org's 24-hour API quota is spent: 403

    def lift_rate_limit(self) -> None:
        self.sim.set_api_usage(0)
        self.clock.sleep(DEFAULT_QUOTA_WAIT_S)  # and the quiet time the adapter keeps after it

    def expire_token(self) -> None:
        self.sim.expire_tokens()

    def auth_count(self) -> int:
        return self.sandbox.log.count(service="salesforce", route="token")

    def requirements(self) -> list[FieldRequirement]:
        return salesforce_requirements()

    def remove_field(self, name: str) -> None:
        self.sim.org.remove_field("Opportunity", name)

    def remove_picklist_value(self, field: str, value: str) -> None:
        self.sim.org.remove_picklist_value("Opportunity", field, value)


class _StoppedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def _salesforce_typed(field_type: str | None, value: object) -> object:
    """A stored wire value as the adapter reads it: dates as ``date``, numbers as ``Decimal``."""
    if value is None:
        return None
    if field_type == "date":
        return date.fromisoformat(str(value))
    if field_type in ("currency", "double", "percent"):
        return Decimal(str(value))
    return value


def _wire(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def salesforce_account(record: dict[str, Any]) -> AccountRef:
    return AccountRef(
        name=record["Name"],
        postal_code=record.get("BillingPostalCode"),
        street=record.get("BillingStreet"),
        city=record.get("BillingCity"),
        state=record.get("BillingState"),
        country=record.get("BillingCountry"),
    )


def salesforce_contact(record: dict[str, Any]) -> ContactRef:
    return ContactRef(
        last_name=record["LastName"],
        first_name=record.get("FirstName"),
        email=record.get("Email"),
        phone=record.get("Phone"),
        title=record.get("Title"),
    )


def _by_email(contact: ContactRef) -> str:
    return contact.email or ""


# -- Dynamics 365 ---------------------------------------------------------------------------------

DYNAMICS_VOCABULARY = Vocabulary(
    sobject="opportunity",
    name="name",
    name_max=300,
    stage="statuscode",
    stages=(2, 1),  # type: ignore[arg-type]  # Dataverse stages are status reason numbers
    close_date="estimatedclosedate",
    amount="estimatedvalue",
    plain_text="rs_engagementid",
    picklist="rs_declinereason",
    picklist_value="Not a fit",
)


def dynamics_requirements() -> list[FieldRequirement]:
    """What the Dynamics mapping needs of a default environment (mappings/dynamics.yaml)."""

    def need(name: str, **options: Any) -> FieldRequirement:
        return FieldRequirement(sobject="opportunity", name=name, **options)

    return [
        need("rs_partnercenterreferralid", external_id=True),
        need("name"),
        need("rs_engagementid"),
        need("rs_partnercenterstatus"),
        need("rs_referrallink"),
        need("rs_hot"),
        need("rs_expires"),
        need("rs_microsoftnotes"),
        need("estimatedvalue"),
        need("transactioncurrencyid"),
        need("estimatedclosedate"),
        need("description"),
        need("modifiedon", writable=False),
        need("rs_declinereason", picklist_values=("Not a fit", "Other")),
        need("statuscode", picklist_values=("1", "2", "3", "4", "5")),
    ]


class DynamicsHarness:
    """The Dynamics adapter against the sandbox's simulated Dataverse, over real TLS and msal.

    The environment's rows are emptied (the currencies seeded again) and its metadata and
    limits restored. Retries wait on a fake clock; change tracking comes 100 rows a page, so
    paging is exercised.
    """

    vocabulary = DYNAMICS_VOCABULARY

    def __init__(self, sandbox: Sandbox) -> None:
        sandbox.reset()
        self.sandbox = sandbox
        self.sim = sandbox.dataverse
        self._empty()
        self.clock = FakeClock()
        self.connection = build_dynamics_from_info(
            sandbox.info,
            sandbox.info["ca_bundle"],
            poll_page_size=100,
            retry=RetrySettings(max_attempts=4, max_seconds=120, base_seconds=1, cap_seconds=8),
            sleep=self.clock.sleep,
            clock=self.clock,
        )
        self.adapter: CrmAdapter = self.connection.adapter

    def _empty(self) -> None:
        self.sim.store.clear()
        self.sim._seed_currencies()

    def close(self) -> None:
        self.sandbox.reset()
        self._empty()

    def opportunities(self) -> dict[str, Stored]:
        store = self.sim.store
        table = self.sim.schema.entity("opportunity")
        assert table is not None
        accounts = {a["accountid"]: a for a in store.rows("account")}
        contacts = store.rows("contact")
        stored = {}
        for row in store.rows("opportunity"):
            account_id = _lookup_id(row.get("customerid"))
            attached = {
                c["contactid"]: c
                for c in contacts
                if c["contactid"] == _lookup_id(row.get("parentcontactid"))
                or (account_id and _lookup_id(c.get("parentcustomerid")) == account_id)
            }
            fields = {}
            for attr in table.attributes:
                if attr.logical_name in row:
                    fields[attr.logical_name] = _dynamics_typed(attr, row[attr.logical_name])
            key = row["rs_partnercenterreferralid"]
            account = accounts.get(account_id)
            stored[key] = Stored(
                crm_id=row["opportunityid"],
                key=key,
                fields=fields,
                account_id=account_id,
                account=None if account is None else dynamics_account(account),
                contacts=tuple(sorted(map(dynamics_contact, attached.values()), key=_by_email)),
            )
        return stored

    def account_count(self) -> int:
        return len(self.sim.store.rows("account"))

    def edit(self, crm_id: str, **fields: object) -> None:
        table = self.sim.schema.entity("opportunity")
        assert table is not None
        changes = {}
        for name, value in fields.items():
            attr = table.attribute(name)
            option = next((o for o in attr.options if o.label == value), None) if attr else None
            changes[name] = option.value if option is not None else _wire(value)
        self.sim.store.write("opportunity", crm_id, changes, user_id=SALES_USER_ID)

    @contextmanager
    def same_instant(self) -> Iterator[None]:
        """Stop the environment's clock on the next whole second (modifiedon has whole
        seconds); change tracking does not care, but ``modifiedon`` ties are then real."""
        store = self.sim.store
        running = store.clock
        now = running.now()
        whole = now.replace(microsecond=0) + timedelta(seconds=1)
        self.sandbox.clock.advance(whole - now)
        store.clock = _StoppedClock(whole)
        try:
            yield
        finally:
            store.clock = running

    def rate_limit(self) -> None:
        self.sim.protection.limits = Limits(requests=0)  # service protection: 429 Retry-After

    def lift_rate_limit(self) -> None:
        self.sim.protection.reset()
        self.clock.sleep(self.connection.client.gate.remaining())  # its Retry-After has passed

    def expire_token(self) -> None:
        self.sandbox.tokens.expire_all()

    def auth_count(self) -> int:
        return self.sandbox.log.count(service="entra", route="token")

    def requirements(self) -> list[FieldRequirement]:
        return dynamics_requirements()

    def remove_field(self, name: str) -> None:
        self.sim.schema.remove_attribute("opportunity", name)

    def remove_picklist_value(self, field: str, value: str) -> None:
        table = self.sim.schema.entity("opportunity")
        attr = table.attribute(field) if table else None
        assert attr is not None
        [option] = [o for o in attr.options if o.label == value]
        self.sim.schema.remove_option("opportunity", field, option.value)


def _lookup_id(value: object) -> str | None:
    return value.row_id if isinstance(value, Lookup) else None


def _dynamics_typed(attr: Any, value: object) -> object:
    """A stored row value as the adapter reads it: dates, Decimals, choice labels."""
    if value is None:
        return None
    if attr.type == "DateTime" and attr.date_only:
        return date.fromisoformat(str(value))
    if attr.type in ("Money", "Decimal"):
        return Decimal(str(value))
    if attr.type == "Picklist":
        option = attr.option(value)
        return option.label if option else value
    return value


def dynamics_account(row: dict[str, Any]) -> AccountRef:
    return AccountRef(
        name=row["name"],
        postal_code=row.get("address1_postalcode"),
        street=row.get("address1_line1"),
        city=row.get("address1_city"),
        state=row.get("address1_stateorprovince"),
        country=row.get("address1_country"),
    )


def dynamics_contact(row: dict[str, Any]) -> ContactRef:
    return ContactRef(
        last_name=row["lastname"],
        first_name=row.get("firstname"),
        email=row.get("emailaddress1"),
        phone=row.get("telephone1"),
        title=row.get("jobtitle"),
    )
