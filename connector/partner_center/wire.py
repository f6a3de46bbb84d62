"""Partner Center's JSON, as TypedDicts: the only place its field names are spelt out.

Shapes follow the swagger's ``...Contracts.V3.Referral`` and ``UpdateReferralDetails`` plus what
real payloads carry (spec §3). Everything is ``total=False``: Partner Center leaves blocks out
and sends ``null`` freely, and ``convert.referral_from_wire`` decides what is required. Values
are typed as they *should* arrive; the converter still checks them (``dealValue`` comes as a
number or a string, ``customerProfile.ids`` as ``[]`` or ``{}``).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "PATCHABLE_PATHS",
    "JsonPatchOp",
    "WireAddress",
    "WireConsent",
    "WireContactPreference",
    "WireCustomerId",
    "WireCustomerProfile",
    "WireDetails",
    "WireError",
    "WireErrorBody",
    "WireInviteContext",
    "WireInvitedBy",
    "WireMember",
    "WireReferral",
    "WireReferralPage",
    "WireRequirements",
    "WireSolutionTag",
    "WireTag",
    "WireTrackingInfo",
]


class WireAddress(TypedDict, total=False):
    addressLine1: str | None
    addressLine2: str | None
    city: str | None
    state: str | None
    postalCode: str | None
    country: str | None
    region: str | None


class WireContactPreference(TypedDict, total=False):
    locale: str | None
    disableNotifications: bool | None


class WireMember(TypedDict, total=False):
    firstName: str | None
    lastName: str | None
    phoneNumber: str | None
    email: str | None
    title: str | None
    contactPreference: WireContactPreference | None


class WireCustomerId(TypedDict, total=False):
    profileType: str
    id: str


class WireCustomerProfile(TypedDict, total=False):
    name: str
    address: WireAddress | None
    size: str | None
    team: list[WireMember] | None
    ids: list[WireCustomerId] | dict[str, Any] | None
    isMatchingComplete: bool | None


class WireConsent(TypedDict, total=False):
    consentToToShareInfoWithOthers: bool | None  # sic: "ToTo" is the API's spelling
    consentToContact: bool | None
    consentToShareReferralWithMicrosoftSellers: bool | None


class WireTag(TypedDict, total=False):
    id: str


class WireSolutionTag(TypedDict, total=False):
    id: str
    name: str | None
    type: str | None


class WireRequirements(TypedDict, total=False):
    industries: list[WireTag] | None
    products: list[WireTag] | None
    services: list[WireTag] | None
    solutions: list[WireSolutionTag] | None
    offers: list[Any] | None
    additionalRequirements: dict[str, Any] | None


class WireDetails(TypedDict, total=False):
    notes: str | None
    dealValue: float | str | None
    currency: str | None
    closingDateTime: str | None
    customerRequestedContact: bool | None
    customerAction: str | None
    requirements: WireRequirements | None


class WireInvitedBy(TypedDict, total=False):
    organizationId: str | None
    organizationName: str | None


class WireInviteContext(TypedDict, total=False):
    notes: str | None
    invitedBy: WireInvitedBy | None
    invitedMpnId: str | None
    assistanceRequestCode: str | None


class WireTrackingInfo(TypedDict, total=False):
    microsoftMsxId: str | None


class WireReferral(TypedDict, total=False):
    id: str
    engagementId: str | None
    name: str | None
    organizationId: str | None
    organizationName: str | None
    mpnId: str | None
    externalReferenceId: str | None
    createdDateTime: str
    updatedDateTime: str
    expirationDateTime: str | None
    acceptedDateTime: str | None
    closedDateTime: str | None
    status: str
    substatus: str
    statusReason: str | None
    type: str | None
    qualification: str | None
    direction: str | None
    salesStage: str | None
    campaignId: str | None
    referralProgram: str | None
    customerProfile: WireCustomerProfile
    consent: WireConsent | None
    details: WireDetails | None
    team: list[WireMember] | None
    inviteContext: WireInviteContext | None
    trackingInfo: WireTrackingInfo | None
    links: dict[str, Any] | None
    eTag: str | None


# Keys with dots cannot be class attributes, hence the functional form.
WireReferralPage = TypedDict(
    "WireReferralPage",
    {
        "@odata.context": str,
        "@odata.count": int,
        "@odata.nextLink": str,
        "value": list[WireReferral],
    },
    total=False,
)


class WireError(TypedDict, total=False):
    code: str
    message: str
    target: str | None
    innerError: WireError | None


class WireErrorBody(TypedDict):
    error: WireError


class JsonPatchOp(TypedDict):
    """One RFC 6902 operation; Partner Center takes only ``add`` and ``replace``."""

    op: Literal["add", "replace"]
    path: str
    value: Any


# The swagger's UpdateReferralDetails.path enum (spec §1 "PATCH details"): nothing else is sent.
PATCHABLE_PATHS: frozenset[str] = frozenset(
    {
        "/campaignId",
        "/consent/consentToShareReferralWithMicrosoftSellers",
        "/customerProfile/team",
        "/customerProfile/team/-",
        "/details/closingDateTime",
        "/details/currency",
        "/details/dealValue",
        "/details/notes",
        "/details/requirements/solutions",
        "/details/requirements/solutions/-",
        "/externalReferenceId",
        "/referralProgram",
        "/salesStage",
        "/status",
        "/substatus",
        "/statusReason",
        "/team",
        "/team/-",
    }
)
