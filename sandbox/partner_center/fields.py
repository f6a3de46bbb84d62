"""What a partner may write into a referral, and the type of each writable value.

:data:`PATCHABLE` is the swagger's ``UpdateReferralDetails.path`` enum plus the deal
registration paths (``CreateDealRegistrationByReferralId`` / ``PatchDealRegistrationByReferralId``),
each with the check the real API applies as far as the swagger types say. A check returns the
value to store (``"10000"`` for ``/details/dealValue`` becomes the number ``10000``: the doc
example sends a string, the swagger and real payloads show a number) or raises
:class:`InvalidValue`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.partner_center import wiretime

__all__ = [
    "PATCHABLE",
    "READ_ONLY",
    "REFERRAL_PROPERTIES",
    "InvalidValue",
    "PathRule",
    "check_currency",
]

Check = Callable[[object], object]


class InvalidValue(Exception):
    """A value a check refuses; the message completes "'<path>' ..."."""


# Top-level properties of a referral: the swagger's Referral definition plus spec §3.1 extras.
REFERRAL_PROPERTIES = frozenset(
    {
        "@odata.context", "acceptedDateTime", "callToAction", "campaignId", "closedDateTime",
        "consent", "createdDateTime", "createdVia", "customerProfile", "dealSensitivity",
        "details", "direction", "eTag", "engagementId", "expirationDateTime",
        "externalReferenceId", "favorite", "id", "inviteContext", "isSpam", "lastModifiedVia",
        "lastRunId", "links", "mpnId", "name", "organizationId", "organizationName",
        "qualification", "quality", "referralProgram", "referralSource", "registrationStatus",
        "registrations", "salesStage", "status", "statusReason", "substatus", "tags", "target",
        "team", "trackingInfo", "type", "updatedDateTime",
    }
)  # fmt: skip

# Set by Partner Center only: a PUT or POST body cannot change them (they are ignored).
READ_ONLY = frozenset(
    {
        "@odata.context", "acceptedDateTime", "closedDateTime", "createdDateTime", "createdVia",
        "direction", "eTag", "engagementId", "expirationDateTime", "id", "isSpam",
        "lastModifiedVia", "lastRunId", "links", "mpnId", "organizationId", "organizationName",
        "quality", "registrationStatus", "registrations", "tags", "trackingInfo",
        "updatedDateTime",
    }
)  # fmt: skip

# ISO 4217 active codes.
_CURRENCY_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL"""
CURRENCIES = frozenset(_CURRENCY_CODES.split())

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _string(value: object) -> object:
    if value is not None and not isinstance(value, str):
        raise InvalidValue(f"must be a string, found {type(value).__name__}")
    return value


def _required_string(value: object) -> object:
    if not isinstance(value, str) or not value:
        raise InvalidValue("must be a non-empty string")
    return value


def _boolean(value: object) -> object:
    if not isinstance(value, bool):
        raise InvalidValue("must be true or false")
    return value


def amount(value: object) -> object:
    """A non-negative number; a numeric string is read as the number (doc example 1)."""
    if value is None:
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        return int(text) if text.isdigit() else float(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"must be a number, found {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidValue(f"must be a finite, non-negative number, found {value!r}")
    return value


def check_currency(value: object) -> object:
    if value is not None and value not in CURRENCIES:
        raise InvalidValue(f"must be an ISO 4217 currency code such as USD, found {value!r}")
    return value


def _datetime(value: object) -> object:
    if value is None:
        return None
    normalized = wiretime.normalize(value)
    if normalized is None:
        raise InvalidValue(f"must be an ISO 8601 date or UTC datetime, found {value!r}")
    return normalized


def _one_of(*allowed: str, nullable: bool = True) -> Check:
    def check(value: object) -> object:
        if (value is None and nullable) or value in allowed:
            return value
        raise InvalidValue(f"must be one of {', '.join(allowed)}, found {value!r}")

    return check


def _object(fields: Mapping[str, Check], *, required: tuple[str, ...] = ()) -> Check:
    """A JSON object whose known keys pass their checks (other keys are kept, like .NET)."""

    def check(value: object) -> object:
        if not isinstance(value, dict):
            raise InvalidValue("must be a JSON object")
        result: dict[str, Any] = dict(value)
        for key in required:
            if result.get(key) in (None, ""):
                raise InvalidValue(f"needs '{key}'")
        for key, field_check in fields.items():
            if key in result:
                try:
                    result[key] = field_check(result[key])
                except InvalidValue as exc:
                    raise InvalidValue(f"'{key}' {exc}") from None
        return result

    return check


def _array(item: Check) -> Check:
    def check(value: object) -> object:
        if not isinstance(value, list):
            raise InvalidValue("must be a JSON array")
        checked = []
        for index, element in enumerate(value):
            try:
                checked.append(item(element))
            except InvalidValue as exc:
                raise InvalidValue(f"item {index}: {exc}") from None
        return checked

    return check


def _email(value: object) -> object:
    if value is not None and (not isinstance(value, str) or "@" not in value):
        raise InvalidValue(f"must be an e-mail address, found {value!r}")
    return value


_member = _object(
    {
        "firstName": _string,
        "lastName": _string,
        "email": _email,
        "phoneNumber": _string,
        "title": _string,
        "contactPreference": _object({"locale": _string, "disableNotifications": _boolean}),
    }
)
_solution = _object({"id": _required_string, "name": _string, "type": _string}, required=("id",))
_marketplace = _object(
    {"isMarketplaceTransacted": _boolean, "marketplaceTransactionDateTime": _datetime}
)
_solution_detail = _object(
    {
        "id": _string,
        "currency": check_currency,
        "value": amount,
        "isDeployedOnAzure": _boolean,
        "primaryDeploymentOn": _one_of("Customer", "Partner"),
        "pricingModel": _one_of("PayAsYouGo", "Other"),
        "marketplaceTransactionDetails": _marketplace,
    }
)
_contract = _object(
    {
        "currency": check_currency,
        "value": amount,
        "startDateTime": _datetime,
        "endDateTime": _datetime,
        "signDateTime": _datetime,
        "term": _one_of("Perpetual", "Finite"),
    }
)
_registration = _object(
    {
        "type": _one_of("AzureIPCoSell", nullable=False),
        "solutionDetails": _array(_solution_detail),
        "contract": _contract,
    },
    required=("type",),
)


@dataclass(frozen=True, slots=True)
class PathRule:
    """How one patchable path is written: its check, and whether it appends (``/-``)."""

    check: Check
    append: bool = False
    add_only: bool = False


_SD = "/registrations/0/solutionDetails/0"

PATCHABLE: dict[str, PathRule] = {
    "/campaignId": PathRule(_string),
    "/consent/consentToShareReferralWithMicrosoftSellers": PathRule(_boolean),
    "/customerProfile/team": PathRule(_array(_member)),
    "/customerProfile/team/-": PathRule(_member, append=True),
    "/details/closingDateTime": PathRule(_datetime),
    "/details/currency": PathRule(check_currency),
    "/details/dealValue": PathRule(amount),
    "/details/notes": PathRule(_string),
    "/details/requirements/solutions": PathRule(_array(_solution)),
    "/details/requirements/solutions/-": PathRule(_solution, append=True),
    "/externalReferenceId": PathRule(_string),
    "/referralProgram": PathRule(_string),
    "/salesStage": PathRule(_one_of("Qualify", "Develop", "Propose", "Close")),
    "/status": PathRule(_required_string),
    "/substatus": PathRule(_required_string),
    "/statusReason": PathRule(_string),
    "/team": PathRule(_array(_member)),
    "/team/-": PathRule(_member, append=True),
    # deal registrations (Azure IP co-sell); ``/registrations/-`` is add-only in the swagger
    "/registrations/-": PathRule(_registration, append=True, add_only=True),
    "/registrations/0/contract/startDateTime": PathRule(_datetime),
    "/registrations/0/contract/endDateTime": PathRule(_datetime),
    "/registrations/0/contract/signDateTime": PathRule(_datetime),
    "/registrations/0/contract/term": PathRule(_one_of("Perpetual", "Finite")),
    "/registrations/0/contract/value": PathRule(amount),
    f"{_SD}/value": PathRule(amount),
    f"{_SD}/currency": PathRule(check_currency),
    f"{_SD}/isDeployedOnAzure": PathRule(_boolean),
    f"{_SD}/primaryDeploymentOn": PathRule(_one_of("Customer", "Partner")),
    f"{_SD}/pricingModel": PathRule(_one_of("PayAsYouGo", "Other")),
    f"{_SD}/marketplaceTransactionDetails/isMarketplaceTransacted": PathRule(_boolean),
    f"{_SD}/marketplaceTransactionDetails/marketplaceTransactionDateTime": PathRule(_datetime),
}


def _country(value: object) -> object:
    if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value)):
        raise InvalidValue(f"must be a two-letter ISO 3166 country code, found {value!r}")
    return value


# Typed leaves of a whole referral body (PUT and POST): the patchable scalars and lists, plus
# the enums and codes a create sets. Checked only where a PUT changes them, so a seeded
# referral holding something odd can still be written.
DOCUMENT_CHECKS: dict[str, Check] = {
    **{
        path: rule.check
        for path, rule in PATCHABLE.items()
        if not rule.append and not path.startswith("/registrations/")
    },
    "/type": _one_of("Shared", "Independent", nullable=False),
    "/qualification": _one_of("None", "Direct", "MarketingQualified", "SalesQualified"),
    "/customerProfile/address/country": _country,
    "/favorite": _boolean,
}
