"""CRM → Partner Center: an opportunity read back from the CRM as the partner's update. No I/O.

:func:`read_change` turns an :class:`~connector.ports.OpportunityChange` into a
:class:`CrmView` (the CRM-owned values in canonical terms, the stage, the reasons, and a
fingerprint of them). :func:`decide` compares it with the referral as Partner Center has it
and returns the updates to send, following the lifecycle table of the mapping:

=================  =====================  ======================  ==============================
CRM stage is       referral New           referral Active         referral Closed (terminal)
=================  =====================  ======================  ==============================
not accepted       edit                   edit, conflict logged   nothing; conflict if it differs
another open one   accept                 edit                    nothing; conflict
won                accept, then win       win                     nothing unless Won; conflict
lost               decline (with reason)  lose                    nothing unless closed; conflict
=================  =====================  ======================  ==============================

An update that cannot be sent (accepting with no value or close date, declining with no
reason) raises :class:`~connector.errors.MappingError` that names the CRM fields to fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import cast

from connector.errors import MappingError
from connector.mapping.spec import FieldMap, MappingSpec, Owner, StageValue, Transform
from connector.mapping.values import fingerprint, shape
from connector.model import Action, PartnerUpdate, Referral, Status, Substatus
from connector.ports import OpportunityChange

__all__ = ["CrmView", "Decision", "decide", "outbound_fingerprint", "read_change"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmView:
    """What the partner's CRM says about one referral, in canonical terms."""

    crm_id: str
    referral_id: str | None
    values: Mapping[str, object]  # partner field (deal_value, currency, …) → value
    stage: StageValue | None
    decline_reason: str | None
    loss_reason: str | None
    fingerprint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The updates to send, in order, and the conflict to log (Partner Center's state won)."""

    updates: tuple[PartnerUpdate, ...] = ()
    conflict: str | None = None


def outbound_fingerprint(fields: Mapping[str, object], spec: MappingSpec) -> str:
    """A digest of the CRM-owned fields, the stage and the reasons in ``fields`` (CRM names).

    The same digest for the fields as the inbound create wrote them and as they are read back:
    reading our own write is then not mistaken for the partner's change.
    """
    lifecycle = spec.lifecycle
    names = [f.crm for f in spec.owned_by(Owner.CRM)]
    names += [n for n in (lifecycle.field, lifecycle.decline_reason, lifecycle.loss_reason) if n]
    by_name = {f.crm: f for f in spec.fields}
    values = {}
    for name in dict.fromkeys(names):
        raw = fields.get(name)
        field_map = by_name.get(name)
        values[name] = raw if field_map is None else _read(field_map, raw)
    return fingerprint(values)


def read_change(change: OpportunityChange, spec: MappingSpec) -> CrmView:
    lifecycle = spec.lifecycle
    values = {
        f.partner: _read(f, change.fields.get(f.crm))
        for f in spec.owned_by(Owner.CRM)
        if f.partner is not None
    }
    stage = change.fields.get(lifecycle.field)
    return CrmView(
        crm_id=change.crm_id,
        referral_id=change.key,
        values=values,
        stage=stage if isinstance(stage, str | int) and not isinstance(stage, bool) else None,
        decline_reason=_text(change.fields.get(lifecycle.decline_reason or "")),
        loss_reason=_text(change.fields.get(lifecycle.loss_reason or "")),
        fingerprint=outbound_fingerprint(change.fields, spec),
    )


def _read(field_map: FieldMap, raw: object) -> object:
    if field_map.transform is Transform.LOOKUP:
        reverse = {v: k for k, v in field_map.table}
        return reverse.get(raw, raw)
    return shape(field_map, raw, [])


def _text(raw: object) -> str | None:
    return raw.strip() or None if isinstance(raw, str) else None


# -- the decision --------------------------------------------------------------------------------


def decide(view: CrmView, current: Referral, spec: MappingSpec) -> Decision:
    """What to send to Partner Center so that ``current`` reflects what the CRM says."""
    kind = _kind(view.stage, spec)
    if current.lifecycle.is_terminal:
        return Decision(conflict=_terminal_conflict(kind, current, view))
    edit = _edit(view, current)
    conflict = None
    steps: list[PartnerUpdate]
    if kind == "won":
        steps = [replace(edit, action=Action.WIN)]
        if current.status is Status.NEW:
            steps = [
                _accept(edit, current, spec),
                PartnerUpdate(referral_id=current.id, action=Action.WIN),
            ]
    elif kind == "lost":
        steps = [_close_lost(edit, current, view, spec)]
    elif kind == "accepted" and current.status is Status.NEW:
        steps = [_accept(edit, current, spec)]
    else:
        if kind == "not_accepted" and current.status is Status.ACTIVE:
            conflict = (
                f"the CRM moved the opportunity back to {view.stage!r}, a stage before "
                "acceptance; Partner Center keeps the referral Active (it cannot go back)"
            )
        steps = [edit] if _changes_anything(edit) else []
    _check_first(steps, current, spec)
    return Decision(updates=tuple(steps), conflict=conflict)


def _kind(stage: StageValue | None, spec: MappingSpec) -> str | None:
    lifecycle = spec.lifecycle
    if stage is None:
        return None
    if stage in lifecycle.won:
        return "won"
    if stage in lifecycle.lost:
        return "lost"
    if stage in lifecycle.not_accepted:
        return "not_accepted"
    return "accepted"


def _terminal_conflict(kind: str | None, current: Referral, view: CrmView) -> str | None:
    agrees = {
        Substatus.WON: {"won", None},
        Substatus.LOST: {"lost", None},
        Substatus.DECLINED: {"lost", None},
        Substatus.EXPIRED: {"lost", None},
    }[current.substatus]
    if kind in agrees:
        return None
    return (
        f"Partner Center closed the referral as {current.lifecycle} but the CRM stage is "
        f"{view.stage!r}; a closed referral is terminal, so Partner Center's state stands"
    )


def _edit(view: CrmView, current: Referral) -> PartnerUpdate:
    """The CRM-owned values that differ from Partner Center's (a value is never cleared)."""
    have = {
        "deal_value": current.deal.value,
        "currency": current.deal.currency,
        "close_date": current.deal.close_date,
        "partner_notes": current.partner_notes,
    }
    changed = {
        name: value
        for name, value in view.values.items()
        if value is not None and value != have[name]
    }
    return PartnerUpdate(
        referral_id=current.id,
        deal_value=cast("Decimal | None", changed.get("deal_value")),
        currency=cast("str | None", changed.get("currency")),
        close_date=cast("date | None", changed.get("close_date")),
        partner_notes=cast("str | None", changed.get("partner_notes")),
        external_reference_id=None if current.external_reference_id == view.crm_id else view.crm_id,
    )


def _changes_anything(update: PartnerUpdate) -> bool:
    return any(
        v is not None
        for v in (
            update.deal_value,
            update.currency,
            update.close_date,
            update.partner_notes,
            update.external_reference_id,
        )
    )


def _accept(edit: PartnerUpdate, current: Referral, spec: MappingSpec) -> PartnerUpdate:
    notes = edit.partner_notes
    if not notes and not (current.partner_notes and current.partner_notes.strip()):
        notes = spec.lifecycle.accept_notes
    return replace(edit, action=Action.ACCEPT, partner_notes=notes)


def _close_lost(
    edit: PartnerUpdate, current: Referral, view: CrmView, spec: MappingSpec
) -> PartnerUpdate:
    if current.status is Status.NEW:
        reason = view.decline_reason or view.loss_reason
        if reason is None:
            fields = [f for f in (spec.lifecycle.decline_reason, spec.lifecycle.loss_reason) if f]
            raise MappingError(
                fields[0] if fields else spec.lifecycle.field,
                None,
                f"declining referral {current.id} needs a reason: fill "
                f"{' or '.join(fields) or 'the reason'} in the CRM",
            )
        return replace(edit, action=Action.DECLINE, reason=reason)
    return replace(edit, action=Action.LOSE, reason=view.loss_reason or view.decline_reason)


_CRM_NAMES = {
    "deal_value": "deal_value",
    "close_date": "close_date",
    "partner_notes": "partner_notes",
}


def _check_first(steps: list[PartnerUpdate], current: Referral, spec: MappingSpec) -> None:
    if not steps:
        return
    problems = steps[0].missing(current)
    if not problems:
        return
    by_partner = {f.partner: f.crm for f in spec.fields if f.partner}
    fill = [by_partner.get(p.field, p.field) for p in problems]
    reasons = "; ".join(str(p) for p in problems)
    raise MappingError(
        fill[0],
        None,
        f"cannot {steps[0].action} referral {current.id} ({reasons}): fill {', '.join(fill)} "
        "in the CRM",
    )
