"""Realistic referrals in wire format, for seeding the simulator (deterministic for a seed).

Customers come from Faker in the seeds' locales (en-US, pt-BR, es-ES, it-IT), each with its
own country, currency (USD, BRL, EUR) and contact culture. The mix, over many referrals:
mostly New (Pending or Received, within their 14 days), about a fifth Active/Accepted, the rest
Closed (Won, Lost, Declined, Expired); about one in ten is a hot referral (the customer asked to
be contacted; created within the last 72 hours). Requirements use the spec's lists (§3.3).
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from faker import Faker

from sandbox.partner_center.store import EXPIRY, Clock
from sandbox.partner_center.wiretime import format_wire
from sandbox.partner_center.writes import API_BASE, Partner, links

__all__ = ["DEFAULT_LOCALES", "generate_referrals"]

DEFAULT_LOCALES = ("en_US", "pt_BR", "es_ES", "it_IT")


@dataclass(frozen=True, slots=True)
class _Locale:
    country: str
    currency: str
    region: str
    culture: str
    value_scale: float
    requests: tuple[str, ...]


_LOCALES: dict[str, _Locale] = {
    "en_US": _Locale(
        "US",
        "USD",
        "North America",
        "en-us",
        1.0,
        (
            "We want to move our on-premises SQL Server workloads to Azure this year.",
            "Looking for a partner to roll out Microsoft 365 and Teams to {n} employees.",
            "Need help modernizing our customer service with Dynamics 365.",
        ),
    ),
    "pt_BR": _Locale(
        "BR",
        "BRL",
        "Latin America",
        "pt-br",
        5.0,
        (
            "Queremos migrar nossos servidores locais para o Azure ainda este ano.",
            "Procuramos um parceiro para implantar o Microsoft 365 para {n} funcionários.",
            "Precisamos de ajuda com análise de dados e Power BI.",
        ),
    ),
    "es_ES": _Locale(
        "ES",
        "EUR",
        "Western Europe",
        "es-es",
        0.9,
        (
            "Buscamos un socio para migrar nuestro centro de datos a Azure.",
            "Necesitamos implantar Microsoft 365 y Teams para {n} empleados.",
            "Queremos mejorar la seguridad de nuestras identidades y dispositivos.",
        ),
    ),
    "it_IT": _Locale(
        "IT",
        "EUR",
        "Western Europe",
        "it-it",
        0.9,
        (
            "Cerchiamo un partner per la migrazione dei nostri server su Azure.",
            "Vorremmo adottare Microsoft 365 e Teams per {n} dipendenti.",
            "Abbiamo bisogno di supporto per un progetto di intelligenza artificiale.",
        ),
    ),
}

# Each lifecycle with its weight in the mix.
_LIFECYCLES = (
    ("New", "Pending", 34),
    ("New", "Received", 22),
    ("Active", "Accepted", 22),
    ("Closed", "Won", 7),
    ("Closed", "Lost", 6),
    ("Closed", "Declined", 5),
    ("Closed", "Expired", 4),
)
_PRODUCTS = (
    "Azure", "EnterpriseMobilityAndSecurity", "Exchange", "DeveloperTools", "Dynamics365Business",
    "Dynamics365Enterprise", "Microsoft365", "Office", "PowerBI", "Project", "SharePoint",
    "SQL", "Teams", "Windows",
)  # fmt: skip
_SERVICES = (
    "ConsultingAndProfessional", "DeploymentOrMigration", "Integration", "Licensing",
    "ManagedServices", "ProjectServices",
)  # fmt: skip
_INDUSTRIES = (
    "Agriculture, Forestry, & Fishing", "Communications & Media", "Education",
    "Financial Services", "Government", "Healthcare", "Hospitality", "Manufacturing",
    "Power & Utilities", "Retail & Consumer Goods", "Services", "Travel & Transportation",
    "Wholesale & Distribution",
)  # fmt: skip
_SOLUTIONS = (
    "AdvancedAnalytics", "ArtificialIntelligence", "BackupDisasterRecovery", "CloudMigration",
    "CognitiveServices", "Containers", "DataWarehouse", "DevOps", "Dynamics365forSales",
    "Dynamics365forCustomerService", "IdentityandAccessManagement", "InternetofThings",
    "MachineLearning", "SAPonAzure", "SQLServerUpgrade", "ThreatProtection", "WebDevelopment",
)  # fmt: skip
_SIZES = (
    "1to50employees", "51to500employees", "Morethan500employees", "1to9employees",
    "10to50employees", "51to250employees", "251to1000employees", "1001to5000employees",
)  # fmt: skip
_ASSISTANCE = (
    "Unknown", "GeneralOrOther", "CustomerTechnicalArchitecture", "ProofOfConceptOrDemo",
    "QuotesOrLicensing", "PostSalesCustomerSuccess", "WorkloadSpecificValueProposition",
)  # fmt: skip
_MICROSOFT_NOTES = (
    "Customer attended the Azure migration webinar and asked for a partner follow-up.",
    "Microsoft seller introduction: the customer has budget approved for this fiscal year.",
    "Lead from the solution provider finder; the customer compared three partners.",
    "Co-sell opportunity; the account team can join the first customer call.",
)
_SALES_STAGES = ("Qualify", "Develop", "Propose", "Close")


def generate_referrals(
    n: int,
    seed: int,
    clock: Clock,
    *,
    locales: Sequence[str] = DEFAULT_LOCALES,
    partner: Partner | None = None,
    base: str = API_BASE,
) -> list[dict[str, Any]]:
    """``n`` wire-format referrals dated relative to ``clock.now()``; same seed, same data."""
    unknown = [locale for locale in locales if locale not in _LOCALES]
    if unknown or not locales:
        raise ValueError(f"unknown locales {unknown}; known: {', '.join(_LOCALES)}")
    rng = random.Random(seed)
    fakers: dict[str, Faker] = {}
    for locale in locales:
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(rng.getrandbits(32))
    maker = _Maker(rng, clock.now(), partner or Partner(), base)
    result = []
    for _ in range(n):
        locale = rng.choice(locales)
        result.append(maker.referral(fakers[locale], _LOCALES[locale]))
    return result


class _Maker:
    def __init__(self, rng: random.Random, now: datetime, partner: Partner, base: str) -> None:
        self.rng = rng
        self.now = now
        self.partner = partner
        self.base = base

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def before_now(self, low: timedelta, high: timedelta) -> datetime:
        return self.now - self.span(low, high)

    def span(self, low: timedelta, high: timedelta) -> timedelta:
        seconds = self.rng.uniform(low.total_seconds(), high.total_seconds())
        return timedelta(seconds=round(seconds, 3))

    def referral(self, fake: Faker, where: _Locale) -> dict[str, Any]:
        rng = self.rng
        status, substatus = rng.choices(
            [(s, sub) for s, sub, _ in _LIFECYCLES], weights=[w for *_, w in _LIFECYCLES]
        )[0]
        outgoing = (
            status != "New" and substatus not in ("Declined", "Expired") and rng.random() < 0.2
        )
        hot = status == "New" and rng.random() < 0.18
        dates = self.dates(status, substatus, hot=hot, outgoing=outgoing)
        shared = rng.random() < 0.65
        company = fake.company()
        domain = _slug(company) + "." + where.country.lower()
        product = rng.choice(_PRODUCTS)
        referral_id, engagement_id = self.guid(), self.guid()
        won_or_active = status == "Active" or substatus in ("Won", "Lost")
        value = round(rng.uniform(5_000, 750_000) * where.value_scale, -2)
        closing = (
            format_wire(self.now + self.span(timedelta(days=20), timedelta(days=180)))
            if status != "Closed"
            else dates["closedDateTime"]
        )
        return {
            "id": referral_id,
            "engagementId": engagement_id,
            "organizationId": self.partner.organization_id,
            "organizationName": self.partner.organization_name,
            "mpnId": self.partner.mpn_id,
            "name": f"{company} - {product}",
            "externalReferenceId": None,
            **dates,
            "status": status,
            "substatus": substatus,
            "statusReason": _status_reason(rng, substatus),
            "type": "Shared" if shared else "Independent",
            "qualification": "SalesQualified"
            if outgoing
            else rng.choices(["MarketingQualified", "SalesQualified", "Direct"], [40, 35, 25])[0],
            "direction": "Outgoing" if outgoing else "Incoming",
            "referralSource": None,
            "callToAction": None,
            "referralProgram": None,
            "campaignId": None,
            "salesStage": rng.choice([*_SALES_STAGES, None]) if won_or_active else None,
            "dealSensitivity": "None",
            "quality": "Unknown",
            "isSpam": False,
            "favorite": rng.random() < 0.05,
            "tags": [],
            "lastModifiedVia": None,
            "createdVia": None,
            "lastRunId": None,
            "registrationStatus": "None",
            "registrations": [],
            "target": [{"type": "BusinessProfileLocation", "id": "msft"}]
            if outgoing and shared
            else [],
            "customerProfile": {
                "name": company,
                "address": {
                    "addressLine1": fake.street_address(),
                    "addressLine2": None,
                    "city": fake.city(),
                    "state": fake.administrative_unit(),
                    "postalCode": fake.postcode(),
                    "country": where.country,
                    "region": where.region,
                },
                "size": rng.choice(_SIZES),
                "team": [
                    self.contact(fake, where, domain) for _ in range(rng.choice((1, 1, 1, 2)))
                ],
                "ids": [],
                "isMatchingComplete": False,
            },
            "consent": {
                "consentToToShareInfoWithOthers": rng.random() < 0.5,
                "consentToContact": True,
                "consentToShareReferralWithMicrosoftSellers": shared,
            },
            "details": {
                "notes": rng.choice(where.requests).format(n=rng.choice((25, 80, 150, 600))),
                "dealValue": value if won_or_active or rng.random() < 0.3 else 0,
                "currency": where.currency,
                "closingDateTime": closing if won_or_active else None,
                "customerRequestedContact": hot,
                "customerAction": None,
                "incentiveLevel": None,
                "requirements": self.requirements(product),
            },
            "team": [self.contact(fake, where, "fabrikam.example")] if won_or_active else [],
            "inviteContext": self.invite_context(outgoing),
            "links": links(referral_id, engagement_id, self.base),
            "trackingInfo": {
                "microsoftMsxId": f"7-{rng.randrange(10**9, 10**10)}" if shared else None
            },
            "eTag": f'"{self.guid()}"',
        }

    def dates(
        self, status: str, substatus: str, *, hot: bool, outgoing: bool
    ) -> dict[str, str | None]:
        hour, day = timedelta(hours=1), timedelta(days=1)
        accepted: datetime | None = None
        closed: datetime | None = None
        if status == "New":
            created = self.before_now(hour, 70 * hour if hot else 13 * day)
        elif status == "Active":
            created = self.before_now(15 * day, 120 * day)
        else:
            created = self.before_now(30 * day, 400 * day)
        if status != "New":
            accepted = created if outgoing else created + self.span(2 * hour, 5 * day)
        if substatus in ("Won", "Lost"):
            assert accepted is not None  # noqa: S101 (set just above for every non-New)
            closed = min(accepted + self.span(10 * day, 120 * day), self.now - hour)
        elif substatus == "Declined":
            accepted = None
            closed = created + self.span(hour, 10 * day)
        elif substatus == "Expired":
            accepted = None
            closed = created + EXPIRY
        latest = max(t for t in (created, accepted, closed) if t is not None)
        updated = min(latest + self.span(timedelta(0), 2 * day), self.now)
        return {
            "createdDateTime": format_wire(created),
            "updatedDateTime": format_wire(updated),
            "expirationDateTime": None if outgoing else format_wire(created + EXPIRY),
            "acceptedDateTime": format_wire(accepted) if accepted else None,
            "closedDateTime": format_wire(closed) if closed else None,
        }

    def contact(self, fake: Faker, where: _Locale, domain: str) -> dict[str, Any]:
        first, last = fake.first_name(), fake.last_name()
        return {
            "firstName": first,
            "lastName": last,
            "email": f"{_slug(first)}.{_slug(last)}@{domain}",
            "phoneNumber": fake.phone_number(),
            "title": fake.job(),
            "contactPreference": {"locale": where.culture, "disableNotifications": False},
        }

    def requirements(self, product: str) -> dict[str, Any]:
        rng = self.rng
        solutions = rng.sample(_SOLUTIONS, rng.choice((1, 1, 2)))
        return {
            "industries": [{"id": rng.choice(_INDUSTRIES)}],
            "products": [{"id": product}],
            "services": [{"id": s} for s in rng.sample(_SERVICES, rng.choice((0, 1)))],
            "solutions": [{"id": s, "name": s, "type": "Category"} for s in solutions],
            "offers": [],
            "salesPlays": [],
            "additionalRequirements": None,
        }

    def invite_context(self, outgoing: bool) -> dict[str, Any]:
        if outgoing:
            return {
                "notes": None,
                "invitedBy": {
                    "organizationId": self.partner.organization_id,
                    "organizationName": self.partner.organization_name,
                },
                "invitedMpnId": self.partner.mpn_id,
                "assistanceRequestCode": "Unknown",
            }
        return {
            "notes": self.rng.choice(_MICROSOFT_NOTES),
            "invitedBy": {"organizationId": "msft", "organizationName": "Microsoft"},
            "invitedMpnId": self.partner.mpn_id,
            "assistanceRequestCode": self.rng.choice(_ASSISTANCE),
        }


def _status_reason(rng: random.Random, substatus: str) -> str | None:
    if substatus == "Lost":
        return rng.choice(("Lost to competitor", "No budget", "Customer went silent"))
    if substatus == "Declined":
        return rng.choice(("Not a good fit", "Lack of capacity", "Outside our region"))
    return None


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum()) or "customer"
