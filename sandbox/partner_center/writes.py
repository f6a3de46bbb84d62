"""What a partner's write does to a referral: JSON Patch, the obsolete PUT, and create.

Each function takes the stored referral (never changed) and returns the new one, or raises
:class:`~sandbox.partner_center.errors.ApiError` (400). The store adds the new ``eTag`` and
``updatedDateTime`` and does the ``If-Match`` check. Rules, beyond the swagger's types:

- a Closed referral takes no write at all ("No actions are permitted after any deal reaches a
  terminal state", spec §3.3);
- status/substatus moves are judged by :func:`connector.model.lifecycle.transition_problem`
  on the referral as it would be after the whole request (so ``/status`` and ``/substatus``
  in one patch are one move); a partner cannot set ``Expired``;
- entering Active stamps ``acceptedDateTime``, entering Closed stamps ``closedDateTime``;
- ``consentToShareReferralWithMicrosoftSellers`` cannot go back from true to false (the
  connector docs: "once visible cannot revert").

Patch semantics: ``replace`` and ``add`` both set the value of a listed path (the referral has a
fixed shape, so a missing parent object is created), ``add`` on a ``/-`` path appends, and
``replace`` on a ``/-`` path is refused. An empty patch document is refused (UNDOCUMENTED).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.errors import MappingError
from connector.model.lifecycle import Lifecycle, Status, Substatus, transition_problem
from sandbox.partner_center.errors import ApiError
from sandbox.partner_center.fields import (
    DOCUMENT_CHECKS,
    PATCHABLE,
    READ_ONLY,
    REFERRAL_PROPERTIES,
    InvalidValue,
    PathRule,
)
from sandbox.partner_center.wiretime import format_wire

__all__ = ["API_BASE", "Partner", "apply_patch", "apply_put", "build_created", "expired", "links"]

Raw = Mapping[str, Any]

API_BASE = "https://api.partner.microsoft.com/v1.0/engagements"
_CONSENT = "consentToShareReferralWithMicrosoftSellers"


@dataclass(frozen=True, slots=True)
class Partner:
    """The partner organization the sandbox's user belongs to (owner of what it creates)."""

    organization_id: str = "5a9c8b1e-47e0-4c2f-9d5b-2f1a7c3e8d40"
    organization_name: str = "Fabrikam Cloud Partners"
    mpn_id: str = "4863040"


def links(referral_id: str, engagement_id: str, base: str = API_BASE) -> dict[str, Any]:
    """``links`` as the live API writes them (unquoted GUID in the related-referrals filter)."""
    return {
        "relatedReferrals": {
            "uri": f"{base}/referrals?$filter=engagementId eq {engagement_id}",
            "method": "GET",
        },
        "self": {"uri": f"{base}/referrals/{referral_id}", "method": "GET"},
    }


# -- PATCH ---------------------------------------------------------------------------------


def apply_patch(current: Raw, document: object, now: datetime) -> dict[str, Any]:
    """``current`` after a JSON Patch document (a list of ``{op, path, value}``)."""
    _refuse_if_closed(current)
    if not isinstance(document, list) or not document:
        raise ApiError.invalid("the body must be a non-empty JSON Patch array of operations")
    result = copy.deepcopy(dict(current))
    for index, operation in enumerate(document):
        path, rule, value = _read_operation(index, operation)
        try:
            checked = rule.check(value)
        except InvalidValue as exc:
            raise ApiError.invalid(f"'{path}' {exc}", target=path) from None
        _set(result, path, rule, checked, now)
    _finish(current, result, now)
    return result


def _read_operation(index: int, operation: object) -> tuple[str, PathRule, object]:
    where = f"operation {index}"
    if not isinstance(operation, dict):
        raise ApiError.invalid(f"{where} must be an object with op, path and value")
    op, path = operation.get("op"), operation.get("path")
    if op not in ("replace", "add"):
        raise ApiError.invalid(f"{where}: op {op!r} is not supported (only replace and add)")
    if not isinstance(path, str) or path not in PATCHABLE:
        raise ApiError.invalid(f"{where}: path {path!r} cannot be patched", target=str(path))
    if "value" not in operation:
        raise ApiError.invalid(f"{where}: value is missing", target=path)
    rule = PATCHABLE[path]
    if rule.append and op != "add":
        raise ApiError.invalid(f"{where}: {path} appends, so its op must be add", target=path)
    return path, rule, operation["value"]


def _set(result: dict[str, Any], path: str, rule: PathRule, value: object, now: datetime) -> None:
    segments = path.strip("/").split("/")
    node: Any = result
    for depth, segment in enumerate(segments[:-1]):
        following = segments[depth + 1]
        if isinstance(node, list):  # only a digit segment can meet a list (see PATCHABLE)
            child = node[int(segment)] if int(segment) < len(node) else None
        else:
            child = node.get(segment)
            if child is None and not following.isdigit():
                child = node[segment] = [] if following == "-" else {}
        if child is None:
            missing = "/" + "/".join(segments[: depth + 2])
            raise ApiError.invalid(f"'{path}': there is no {missing}", target=path)
        if not isinstance(child, dict | list):
            raise ApiError.invalid(f"'{path}': /{segment} is not an object", target=path)
        node = child
    if not rule.append:
        node[segments[-1]] = value
    elif not isinstance(node, list):
        raise ApiError.invalid(f"'{path}': /{segments[-2]} is not an array", target=path)
    elif path == "/registrations/-":
        node.append(_new_registration(value, now))
        result["registrationStatus"] = "ReviewPending"
    else:
        node.append(value)


def _new_registration(value: object, now: datetime) -> dict[str, Any]:
    given = dict(value) if isinstance(value, dict) else {}
    stamp = format_wire(now)
    return {
        "id": str(uuid.uuid4()),
        "type": given.get("type"),
        "registrationDateTime": stamp,
        "status": "ReviewPending",
        "statusReason": None,
        "solutionDetails": given.get("solutionDetails") or [],
        "contract": given.get("contract"),
        "statusHistory": {
            "reviewPendingDateTime": stamp,
            "actionRequiredDateTime": None,
            "passedDateTime": None,
            "failedDateTime": None,
            "approvedDateTime": None,
        },
    }


# -- PUT (obsolete) ------------------------------------------------------------------------


def apply_put(current: Raw, body: object, now: datetime) -> dict[str, Any]:
    """``current`` replaced by a full referral body (read-only properties are kept).

    Top-level properties the body leaves out keep their value (UNDOCUMENTED; the docs only say
    to send the whole referral). ``id`` and ``engagementId`` must be sent and unchanged, and
    ``links`` must be removed, as the docs ask.
    """
    _refuse_if_closed(current)
    if not isinstance(body, dict):
        raise ApiError.invalid("the body must be a referral object")
    for key in ("id", "engagementId"):
        if body.get(key) != current.get(key):
            raise ApiError.invalid(f"'{key}' must be sent and cannot change", target=key)
    if "links" in body:
        raise ApiError.invalid("remove the 'links' object from the body", target="links")
    result = copy.deepcopy(dict(current))
    result.update(_writable(body))
    _check_document(current, result)
    _finish(current, result, now)
    return result


# -- POST ----------------------------------------------------------------------------------


def build_created(body: object, now: datetime, partner: Partner) -> dict[str, Any]:
    """A new outgoing referral from a create body (store adds ``eTag``).

    Partner-created referrals come back Active/Accepted with ``acceptedDateTime`` equal to
    ``createdDateTime`` whatever New/* or Active/* the body asks for (the doc example posts
    New/Pending and gets Active/Accepted); creating one already Closed is refused (UNDOCUMENTED).
    """
    if not isinstance(body, dict):
        raise ApiError.invalid("the body must be a referral object")
    for key in ("type", "customerProfile", "consent", "details"):
        if body.get(key) in (None, ""):
            raise ApiError.invalid(f"'{key}' is required", target=key)
        if key != "type" and not isinstance(body[key], dict):
            raise ApiError.invalid(f"'{key}' must be an object", target=key)
    if "status" in body or "substatus" in body:
        asked = _parse_lifecycle(body.get("status"), body.get("substatus"))
        if asked.status not in (Status.NEW, Status.ACTIVE):
            raise ApiError.invalid(f"a referral cannot be created as {asked}", target="status")
    engagement_id = body.get("engagementId") or str(uuid.uuid4())
    if not isinstance(engagement_id, str) or not _is_guid(engagement_id):
        raise ApiError.invalid("'engagementId' must be a GUID", target="engagementId")
    result = {"name": None, "qualification": "SalesQualified", **_writable(body)}
    _check_document({}, result)
    referral_id = str(uuid.uuid4())
    stamp = format_wire(now)
    result |= {
        "id": referral_id,
        "engagementId": engagement_id,
        "organizationId": partner.organization_id,
        "organizationName": partner.organization_name,
        "mpnId": partner.mpn_id,
        "status": Status.ACTIVE.value,
        "substatus": Substatus.ACCEPTED.value,
        "createdDateTime": stamp,
        "updatedDateTime": stamp,
        "acceptedDateTime": stamp,
        "closedDateTime": None,
        "expirationDateTime": None,
        "direction": "Outgoing",
        "quality": "Unknown",
        "isSpam": False,
        "tags": [],
        "registrations": [],
        "registrationStatus": "None",
        "trackingInfo": {"microsoftMsxId": None},
        "links": links(referral_id, engagement_id),
    }
    return result


# -- expiry --------------------------------------------------------------------------------


def expired(current: Raw, now: datetime) -> dict[str, Any]:
    """``current`` closed as Expired by Partner Center (the system actor)."""
    result = copy.deepcopy(dict(current))
    result |= {
        "status": Status.CLOSED.value,
        "substatus": Substatus.EXPIRED.value,
        "closedDateTime": format_wire(now),
    }
    return result


# -- shared rules --------------------------------------------------------------------------


def _refuse_if_closed(current: Raw) -> None:
    if current.get("status") == Status.CLOSED.value:
        raise ApiError.invalid(
            f"the referral is Closed/{current.get('substatus')}: no changes are permitted after"
            " a terminal state",
            target="status",
        )


def _writable(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: copy.deepcopy(value)
        for key, value in body.items()
        if key in REFERRAL_PROPERTIES and key not in READ_ONLY
    }


def _get(document: Raw, path: str) -> object:
    node: object = document
    for segment in path.strip("/").split("/"):
        if not isinstance(node, Mapping):
            return None
        node = node.get(segment)
    return node


def _check_document(before: Raw, after: dict[str, Any]) -> None:
    """Check (and normalize) every typed leaf that differs from ``before``."""
    for path, check in DOCUMENT_CHECKS.items():
        value = _get(after, path)
        if value is None or value == _get(before, path):
            continue
        try:
            checked = check(value)
        except InvalidValue as exc:
            raise ApiError.invalid(f"'{path}' {exc}", target=path) from None
        *parents, last = path.strip("/").split("/")
        node: Any = after
        for segment in parents:
            node = node[segment]
        node[last] = checked


def _finish(before: Raw, after: dict[str, Any], now: datetime) -> None:
    """The rules that look at the whole result: consent, then the lifecycle and its stamps."""
    if _get(before, f"consent/{_CONSENT}") is True and _get(after, f"consent/{_CONSENT}") is False:
        raise ApiError.invalid(
            "a referral shared with Microsoft sellers cannot be made private again",
            target=f"/consent/{_CONSENT}",
        )
    old = (before.get("status"), before.get("substatus"))
    new = (after.get("status"), after.get("substatus"))
    if new == old:
        return
    target = _parse_lifecycle(*new)
    try:
        current = Lifecycle.parse(*old)
    except MappingError as exc:
        raise ApiError.invalid(f"the referral's lifecycle cannot change: {exc}") from None
    problem = transition_problem(current, target)
    if problem is not None:
        raise ApiError.invalid(f"Invalid status transition: {problem}", target="status")
    stamp = format_wire(now)
    if target.status is Status.ACTIVE and current.status is not Status.ACTIVE:
        after["acceptedDateTime"] = stamp
    if target.status is Status.CLOSED:
        after["closedDateTime"] = stamp


def _parse_lifecycle(status: object, substatus: object) -> Lifecycle:
    try:
        return Lifecycle.parse(status, substatus)
    except MappingError as exc:
        raise ApiError.invalid(
            f"'{exc.field}' {exc.reason}: {exc.value!r}", target=exc.field
        ) from None


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
