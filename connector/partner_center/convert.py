"""Partner Center wire JSON ⇄ the canonical model, without I/O.

:func:`referral_from_wire` is tolerant where real payloads vary (spec §1-3: ``dealValue`` as a
number or a string, ``null`` or ``""`` or a missing key for "absent", 7-digit fractional seconds,
quoted eTags, missing optional blocks, ``ids`` as ``{}``) and strict where a wrong guess would
corrupt the CRM: a missing id or customer, an unknown or mismatched status/substatus, or a value
that does not parse raises :class:`~connector.errors.MappingError` naming the wire field (dotted
path, e.g. ``details.dealValue``) and the value.

:func:`patch_for_update` turns a :class:`~connector.model.PartnerUpdate` into the JSON Patch
Partner Center accepts: ``add``/``replace`` on the swagger's patchable paths only, for the
fields that differ from the referral as it is now, then the lifecycle step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from connector.errors import ConflictError, MappingError
from connector.model import (
    Address,
    Consent,
    Contact,
    Customer,
    CustomerId,
    Deal,
    Lifecycle,
    PartnerUpdate,
    Referral,
    Requirements,
    Solution,
)
from connector.model.values import (
    format_close_date,
    format_decimal,
    parse_bool,
    parse_currency,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_text,
)
from connector.partner_center.wire import PATCHABLE_PATHS, JsonPatchOp

__all__ = ["patch_for_update", "referral_after_patch", "referral_from_wire"]

_ROOT = "referral"


def _obj(raw: object, field: str) -> Mapping[str, Any]:
    """An optional JSON object: ``None``/missing → ``{}``; anything but an object is refused."""
    if type(raw) is dict:  # what JSON gives: no abstract-class check
        return raw
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise MappingError(field, raw, f"expected an object, got {type(raw).__name__}")
    return raw


def _array(raw: object, field: str) -> list[Any]:
    """An optional JSON array: ``None``/missing/``{}`` → ``[]`` (old payloads send ``{}``).

    A lone object where an array belongs (``"team": {...}``, seen in real exports) is read as a
    one-item array.
    """
    if type(raw) is list:
        return raw
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return [raw] if raw else []
    if not isinstance(raw, list):
        raise MappingError(field, raw, f"expected an array, got {type(raw).__name__}")
    return raw


def _required_text(raw: Mapping[str, Any], key: str, field: str) -> str:
    value = parse_text(raw.get(key), field)
    if value is None:
        raise MappingError(field, raw.get(key), "is required")
    return value


def _address(raw: object) -> Address | None:
    wire = _obj(raw, "customerProfile.address")

    def text(key: str) -> str | None:
        return parse_text(wire.get(key), f"customerProfile.address.{key}")

    address = Address(
        line1=text("addressLine1"),
        line2=text("addressLine2"),
        city=text("city"),
        state=text("state"),
        postal_code=text("postalCode"),
        country=text("country"),
        region=text("region"),
    )
    return None if address == Address() else address


def _contacts(raw: object, field: str) -> tuple[Contact, ...]:
    contacts: list[Contact] = []
    for index, item in enumerate(_array(raw, field)):
        at = f"{field}[{index}]"
        wire = _obj(item, at)
        preference = _obj(wire.get("contactPreference"), f"{at}.contactPreference")
        contact = Contact(
            first_name=parse_text(wire.get("firstName"), f"{at}.firstName"),
            last_name=parse_text(wire.get("lastName"), f"{at}.lastName"),
            email=parse_text(wire.get("email"), f"{at}.email"),
            phone=parse_text(wire.get("phoneNumber"), f"{at}.phoneNumber"),
            title=parse_text(wire.get("title"), f"{at}.title"),
            locale=parse_text(preference.get("locale"), f"{at}.contactPreference.locale"),
        )
        if contact != Contact():
            contacts.append(contact)
    return tuple(contacts)


def _customer_ids(raw: object) -> tuple[CustomerId, ...]:
    field = "customerProfile.ids"
    ids: list[CustomerId] = []
    for index, item in enumerate(_array(raw, field)):
        wire = _obj(item, f"{field}[{index}]")
        value = parse_text(wire.get("id"), f"{field}[{index}].id")
        if value is not None:
            kind = parse_text(wire.get("profileType"), f"{field}[{index}].profileType")
            ids.append(CustomerId(kind or "Unknown", value))
    return tuple(ids)


def _customer(raw: Mapping[str, Any]) -> Customer:
    if raw.get("customerProfile") is None:
        raise MappingError("customerProfile", None, "is required")
    wire = _obj(raw["customerProfile"], "customerProfile")
    return Customer(
        name=_required_text(wire, "name", "customerProfile.name"),
        address=_address(wire.get("address")),
        size=parse_text(wire.get("size"), "customerProfile.size"),
        contacts=_contacts(wire.get("team"), "customerProfile.team"),
        ids=_customer_ids(wire.get("ids")),
    )


def _tag_ids(raw: object, field: str) -> tuple[str, ...]:
    ids: list[str] = []
    for index, item in enumerate(_array(raw, field)):
        at = f"{field}[{index}]"
        value = parse_text(item if isinstance(item, str) else _obj(item, at).get("id"), f"{at}.id")
        if value is not None:
            ids.append(value)
    return tuple(ids)


def _solutions(raw: object) -> tuple[Solution, ...]:
    field = "details.requirements.solutions"
    solutions: list[Solution] = []
    for index, item in enumerate(_array(raw, field)):
        at = f"{field}[{index}]"
        wire = _obj(item, at)
        solution_id = parse_text(wire.get("id"), f"{at}.id")
        if solution_id is not None:
            solutions.append(Solution(solution_id, parse_text(wire.get("name"), f"{at}.name")))
    return tuple(solutions)


def _requirements(raw: object) -> Requirements:
    wire = _obj(raw, "details.requirements")
    return Requirements(
        solutions=_solutions(wire.get("solutions")),
        products=_tag_ids(wire.get("products"), "details.requirements.products"),
        services=_tag_ids(wire.get("services"), "details.requirements.services"),
        industries=_tag_ids(wire.get("industries"), "details.requirements.industries"),
    )


def _consent(raw: object) -> Consent:
    wire = _obj(raw, "consent")
    return Consent(
        share_info_with_others=parse_bool(
            wire.get("consentToToShareInfoWithOthers"), "consent.consentToToShareInfoWithOthers"
        ),
        contact=parse_bool(wire.get("consentToContact"), "consent.consentToContact"),
        share_with_microsoft_sellers=parse_bool(
            wire.get("consentToShareReferralWithMicrosoftSellers"),
            "consent.consentToShareReferralWithMicrosoftSellers",
        ),
    )


def _deal(details: Mapping[str, Any]) -> Deal:
    return Deal(
        value=parse_decimal(details.get("dealValue"), "details.dealValue"),
        currency=parse_currency(details.get("currency"), "details.currency"),
        close_date=parse_date(details.get("closingDateTime"), "details.closingDateTime"),
    )


def _etag(raw: object) -> str | None:
    """Kept byte for byte, quotes and all: it goes back in If-Match."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise MappingError("eTag", raw, "expected a string")
    return raw


def _moments(raw: Mapping[str, Any]) -> tuple[datetime, datetime]:
    created = parse_datetime(raw.get("createdDateTime"), "createdDateTime")
    if created is None:
        raise MappingError("createdDateTime", raw.get("createdDateTime"), "is required")
    updated = parse_datetime(raw.get("updatedDateTime"), "updatedDateTime")
    return created, updated or created


def referral_from_wire(raw: Mapping[str, Any]) -> Referral:
    """The canonical referral from one Partner Center referral object.

    Raises :class:`MappingError` naming the wire field when the payload cannot be trusted.
    """
    if not isinstance(raw, Mapping):
        raise MappingError(_ROOT, raw, "expected a JSON object")
    referral_id = _required_text(raw, "id", "id")
    customer = _customer(raw)
    lifecycle = Lifecycle.parse(raw.get("status"), raw.get("substatus"))
    created, updated = _moments(raw)
    details = _obj(raw.get("details"), "details")
    invite = _obj(raw.get("inviteContext"), "inviteContext")
    tracking = _obj(raw.get("trackingInfo"), "trackingInfo")

    def text(key: str) -> str | None:
        return parse_text(raw.get(key), key)

    def moment(key: str) -> datetime | None:
        return parse_datetime(raw.get(key), key)

    return Referral(
        id=referral_id,
        customer=customer,
        lifecycle=lifecycle,
        created_at=created,
        updated_at=updated,
        engagement_id=text("engagementId"),
        name=text("name"),
        type=text("type"),
        qualification=text("qualification"),
        direction=text("direction"),
        status_reason=text("statusReason"),
        sales_stage=text("salesStage"),
        deal=_deal(details),
        partner_notes=parse_text(details.get("notes"), "details.notes"),
        microsoft_notes=parse_text(invite.get("notes"), "inviteContext.notes"),
        assistance_request=parse_text(
            invite.get("assistanceRequestCode"), "inviteContext.assistanceRequestCode"
        ),
        requirements=_requirements(details.get("requirements")),
        consent=_consent(raw.get("consent")),
        customer_requested_contact=bool(
            parse_bool(details.get("customerRequestedContact"), "details.customerRequestedContact")
        ),
        accepted_at=moment("acceptedDateTime"),
        closed_at=moment("closedDateTime"),
        expires_at=moment("expirationDateTime"),
        external_reference_id=text("externalReferenceId"),
        microsoft_crm_id=parse_text(tracking.get("microsoftMsxId"), "trackingInfo.microsoftMsxId"),
        etag=_etag(raw.get("eTag")),
    )


def _op(path: str, value: object, *, exists: bool) -> JsonPatchOp:
    if path not in PATCHABLE_PATHS:
        raise ValueError(f"{path} is not a patchable Partner Center path")
    # "add" on an object member creates or overwrites it; "replace" fails where the key is
    # missing, so it is used only where the current referral has the value.
    return {"op": "replace" if exists else "add", "path": path, "value": value}


def _field_ops(current: Referral, update: PartnerUpdate) -> list[JsonPatchOp]:
    ops: list[JsonPatchOp] = []
    deal = current.deal
    if update.deal_value is not None and update.deal_value != deal.value:
        # Sent as a string, as the one documented PATCH example does ("value": "10000"). The
        # swagger types the Referral's dealValue as a float number, but the patch body's
        # value is untyped; a string keeps the Decimal exact instead of passing through binary
        # floating point, and Partner Center reads it back as a number.
        value = format_decimal(update.deal_value)
        ops.append(_op("/details/dealValue", value, exists=deal.value is not None))
    if update.currency is not None and update.currency != deal.currency:
        ops.append(_op("/details/currency", update.currency, exists=deal.currency is not None))
    if update.close_date is not None and update.close_date != deal.close_date:
        # The swagger gives closingDateTime as a plain string; real payloads hold midnight UTC.
        value = format_close_date(update.close_date)
        ops.append(_op("/details/closingDateTime", value, exists=deal.close_date is not None))
    if update.partner_notes is not None and update.partner_notes != current.partner_notes:
        exists = current.partner_notes is not None
        ops.append(_op("/details/notes", update.partner_notes, exists=exists))
    crm_id = update.external_reference_id
    if crm_id is not None and crm_id != current.external_reference_id:
        exists = current.external_reference_id is not None
        ops.append(_op("/externalReferenceId", crm_id, exists=exists))
    return ops


_CRM_ID_PATH = "/externalReferenceId"


def referral_after_patch(
    current: Referral, ops: Sequence[JsonPatchOp], written: Mapping[str, Any]
) -> Referral:
    """The referral as a PATCH of ``current`` left it, from the PATCH's reply ``written``.

    A patch that only set the CRM id (a backfill's write-back: one per referral) changed
    nothing else: its ``If-Match`` held ``current``'s eTag, so the referral was ``current``
    until then. So ``current`` with the reply's eTag, ``updatedDateTime`` and
    ``externalReferenceId`` is what parsing the whole reply gives, for a fraction of the cost.
    Any other patch, or a reply that does not say what that patch did, is parsed whole.
    """
    if [op.get("path") for op in ops] != [_CRM_ID_PATH] or written.get("id") != current.id:
        return referral_from_wire(written)
    crm_id = ops[0].get("value")
    try:
        updated = parse_datetime(written.get("updatedDateTime"), "updatedDateTime")
        etag = _etag(written.get("eTag"))
    except MappingError:
        return referral_from_wire(written)
    if written.get("externalReferenceId") != crm_id or updated is None or etag is None:
        return referral_from_wire(written)
    return replace(current, etag=etag, updated_at=updated, external_reference_id=crm_id)


def patch_for_update(current: Referral, update: PartnerUpdate) -> list[JsonPatchOp]:
    """The JSON Patch that brings ``current`` to what ``update`` says; ``[]`` if nothing changes.

    Raises :class:`ConflictError` when the action cannot start from ``current``'s lifecycle (or
    a closed referral would be edited), and :class:`MappingError` naming the first missing field
    when the action needs something neither side has (accepting needs a name, value, close date
    and notes; declining needs a reason).
    """
    if update.referral_id != current.id:
        raise ValueError(f"update for {update.referral_id} applied to referral {current.id}")
    reason = update.transition_problem(current.lifecycle)
    if reason is not None:
        raise ConflictError(
            f"cannot {update.action} referral {current.id}: {reason}", code="invalid_transition"
        )
    missing = update.missing(current)
    if missing:
        summary = "; ".join(str(problem) for problem in missing)
        raise MappingError(missing[0].field, None, f"cannot {update.action}: {summary}")
    ops = _field_ops(current, update)
    if ops and current.lifecycle.is_terminal:
        raise ConflictError(
            f"cannot edit referral {current.id}: it is {current.lifecycle}, which is terminal",
            code="invalid_transition",
        )
    target = update.target
    if target is not None and target != current.lifecycle:
        ops.append(_op("/status", target.status.value, exists=True))
        ops.append(_op("/substatus", target.substatus.value, exists=True))
        if update.reason is not None:
            exists = current.status_reason is not None
            ops.append(_op("/statusReason", update.reason, exists=exists))
    return ops
