"""A mapping file's parsed content (plain dicts and lists) → :class:`MappingSpec`, or a
:class:`~connector.errors.ConfigError` listing every problem with its path in the file.

The file format (``mappings/salesforce.yaml`` is the worked example)::

    version: 1
    crm: salesforce | dynamics
    object: Opportunity
    key: Partner_Center_Referral_Id__c      # holds the referral id: the upsert key
    close_date_default_days: 90             # no close date on the referral: created + N days
    fields:
      <CRM field>: {source | constant | template, owner, transform, length, separator,
                    table, partner}
    lifecycle:
      field, on_create {<Status> | <Status/Substatus>: stage}, not_accepted [..], won [..],
      lost [..], closed_by_partner_center, decline_reason, loss_reason, accept_notes
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from connector.errors import ConfigError, ConfigProblem
from connector.mapping.sources import PARTNER_FIELDS, SOURCES
from connector.mapping.spec import (
    DEFAULT_ACCEPT_NOTES,
    FieldMap,
    LifecycleMap,
    MappingSpec,
    Owner,
    StageValue,
    Transform,
)
from connector.model import Lifecycle, Status

__all__ = ["parse_mapping"]

E = TypeVar("E", Owner, Transform)
CRMS = ("salesforce", "dynamics")
SUPPORTED_VERSIONS = (1,)
_TOP = {"version", "crm", "object", "key", "close_date_default_days", "fields", "lifecycle"}
_FIELD = {
    "source", "constant", "template", "owner", "transform", "length", "separator", "table",
    "partner",
}  # fmt: skip
_LIFECYCLE = {
    "field", "on_create", "not_accepted", "won", "lost", "closed_by_partner_center",
    "decline_reason", "loss_reason", "accept_notes",
}  # fmt: skip
_PARTNER_TRANSFORMS = {
    "deal_value": {Transform.DECIMAL},
    "currency": {Transform.CURRENCY, Transform.LOOKUP},
    "close_date": {Transform.DATE},
    "partner_notes": {Transform.TEXT, Transform.TRUNCATE},
}


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[ConfigProblem] = []

    def add(self, key: str, message: str) -> None:
        self.found.append(ConfigProblem(self.source, key, message))

    def unknown(self, raw: Mapping[str, Any], known: set[str], where: str) -> None:
        for key in sorted(set(raw) - known):
            self.add(f"{where}.{key}" if where else key, f"unknown key (known: {_list(known)})")

    def text(self, raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
        value = raw.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.add(_join(where, key), "must be a non-empty text" + _got(value))
            return ""
        return value

    def table(self, raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = raw.get(key)
        if not isinstance(value, Mapping):
            self.add(_join(where, key), "must be a table" + _got(value))
            return {}
        return value


def parse_mapping(raw: object, source: str) -> MappingSpec:
    """Validate ``raw`` (a parsed mapping file) completely; raise one ConfigError for all."""
    problems = _Problems(source)
    if not isinstance(raw, Mapping):
        problems.add("(file)", "must be a table of keys" + _got(raw))
        raise ConfigError(problems.found)
    problems.unknown(raw, _TOP, "")
    version = raw.get("version")
    if version not in SUPPORTED_VERSIONS:
        problems.add("version", f"must be one of {SUPPORTED_VERSIONS}" + _got(version))
    crm = problems.text(raw, "crm", "")
    if crm and crm not in CRMS:
        problems.add("crm", f"must be one of {', '.join(CRMS)}" + _got(crm))
    sobject = problems.text(raw, "object", "")
    key = problems.text(raw, "key", "")
    days = raw.get("close_date_default_days", 90)
    if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= 3650:
        problems.add("close_date_default_days", "must be a whole number of days, 1 to 3650")
        days = 90
    fields = _fields(problems.table(raw, "fields", ""), problems)
    lifecycle = _lifecycle(problems.table(raw, "lifecycle", ""), problems)
    names = {f.crm for f in fields}
    if key in names:
        problems.add(f"fields.{key}", "is the key: the referral id is written to it already")
    if lifecycle is not None and lifecycle.field in names:
        problems.add(f"fields.{lifecycle.field}", "is the lifecycle field: map it there only")
    if problems.found or lifecycle is None:
        raise ConfigError(problems.found)
    return MappingSpec(
        source=source,
        crm=crm,
        object=sobject,
        key=key,
        close_date_default_days=days,
        fields=fields,
        lifecycle=lifecycle,
    )


# -- fields -------------------------------------------------------------------------------------


def _fields(raw: Mapping[str, Any], problems: _Problems) -> tuple[FieldMap, ...]:
    if not raw:
        problems.add("fields", "maps no field")
    fields = []
    targets: dict[str, str] = {}
    for name, spec in raw.items():
        where = f"fields.{name}"
        if not isinstance(spec, Mapping):
            problems.add(where, "must be a table" + _got(spec))
            continue
        parsed = _field(str(name), spec, where, problems)
        if parsed is None:
            continue
        if parsed.partner is not None:
            if parsed.partner in targets:
                problems.add(
                    f"{where}.partner",
                    f"{parsed.partner} is read back from {targets[parsed.partner]} already",
                )
            targets[parsed.partner] = parsed.crm
        fields.append(parsed)
    return tuple(fields)


def _field(name: str, raw: Mapping[str, Any], where: str, problems: _Problems) -> FieldMap | None:
    problems.unknown(raw, _FIELD, where)
    before = len(problems.found)
    given = [k for k in ("source", "constant", "template") if k in raw]
    if len(given) != 1:
        problems.add(where, "needs exactly one of source, constant, template" + _got(given))
    source = raw.get("source")
    if source is not None and source not in SOURCES:
        problems.add(f"{where}.source", f"unknown source {source!r} (known: {_list(SOURCES)})")
    template = raw.get("template")
    if template is not None:
        _check_template(template, f"{where}.template", problems)
    owner_raw = raw.get("owner")
    owner = _enum(Owner, owner_raw, f"{where}.owner", problems)
    transform = _enum(Transform, raw.get("transform", "text"), f"{where}.transform", problems)
    length = raw.get("length")
    if length is not None and (
        not isinstance(length, int) or isinstance(length, bool) or length < 1
    ):
        problems.add(f"{where}.length", "must be a whole number ≥ 1" + _got(length))
    if transform is Transform.TRUNCATE and length is None:
        problems.add(f"{where}.length", "truncate needs the field's length")
    table_raw = raw.get("table", {})
    if transform is Transform.LOOKUP and not (isinstance(table_raw, Mapping) and table_raw):
        problems.add(f"{where}.table", "lookup needs a non-empty table of value: CRM value")
    separator = raw.get("separator", "\n")
    if not isinstance(separator, str):
        problems.add(f"{where}.separator", "must be text" + _got(separator))
    partner = raw.get("partner")
    if partner is not None:
        if partner not in PARTNER_FIELDS:
            problems.add(f"{where}.partner", f"must be one of {', '.join(PARTNER_FIELDS)}")
        elif owner not in (None, Owner.CRM):
            problems.add(f"{where}.partner", "only a field the CRM owns is read back")
        elif transform is not None and transform not in _PARTNER_TRANSFORMS[partner]:
            allowed = ", ".join(sorted(_PARTNER_TRANSFORMS[partner]))
            problems.add(f"{where}.transform", f"{partner} is read back with {allowed}")
    if len(problems.found) > before or owner is None or transform is None:
        return None
    table = dict(table_raw) if isinstance(table_raw, Mapping) else {}
    return FieldMap(
        crm=name,
        owner=owner,
        source=source,
        constant=raw.get("constant"),
        template=template,
        transform=transform,
        length=length,
        separator=separator,
        table=tuple((str(k), v) for k, v in table.items()),
        partner=partner,
    )


def _check_template(template: object, where: str, problems: _Problems) -> None:
    if not isinstance(template, str):
        problems.add(where, "must be text" + _got(template))
        return
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    except ValueError as exc:
        problems.add(where, f"is not a valid template: {exc}")
        return
    for n in names:
        if n not in SOURCES:
            problems.add(where, f"names unknown source {{{n}}} (known: {_list(SOURCES)})")


# -- lifecycle ----------------------------------------------------------------------------------


def _lifecycle(raw: Mapping[str, Any], problems: _Problems) -> LifecycleMap | None:
    where = "lifecycle"
    if not raw:
        return None
    problems.unknown(raw, _LIFECYCLE, where)
    before = len(problems.found)
    field_name = problems.text(raw, "field", where)
    on_create = _on_create(problems.table(raw, "on_create", where), problems)
    not_accepted = _stages(raw, "not_accepted", problems)
    won = _stages(raw, "won", problems)
    lost = _stages(raw, "lost", problems)
    for a, b in (("not_accepted", "won"), ("not_accepted", "lost"), ("won", "lost")):
        both = {"not_accepted": not_accepted, "won": won, "lost": lost}
        shared = both[a] & both[b]
        if shared:
            problems.add(f"{where}.{b}", f"shares {_list(map(str, shared))} with {a}")
    closed_by_pc = raw.get("closed_by_partner_center")
    if closed_by_pc not in lost:
        problems.add(f"{where}.closed_by_partner_center", "must be one of the lost stages")
    stage_of = dict(on_create)
    for lifecycle, stage in on_create:
        expected = _expected_kind(lifecycle)
        kinds = {"won": won, "lost": lost, "not_accepted": not_accepted}
        if expected in kinds and stage not in kinds[expected]:
            problems.add(f"{where}.on_create.{lifecycle}", f"{stage!r} is not a {expected} stage")
        if expected == "accepted" and (stage in won or stage in lost or stage in not_accepted):
            problems.add(f"{where}.on_create.{lifecycle}", f"{stage!r} is not an accepted stage")
    missing = [str(lc) for lc in Lifecycle.all() if lc != Lifecycle.UNSET and lc not in stage_of]
    if missing:
        problems.add(f"{where}.on_create", f"gives no stage for {', '.join(missing)}")
    reasons = {
        k: problems.text(raw, k, where, required=False) for k in ("decline_reason", "loss_reason")
    }
    notes = raw.get("accept_notes", DEFAULT_ACCEPT_NOTES)
    if not isinstance(notes, str) or not notes.strip():
        problems.add(f"{where}.accept_notes", "must be a non-empty text" + _got(notes))
    if len(problems.found) > before or not isinstance(closed_by_pc, str | int):
        return None
    return LifecycleMap(
        field=field_name,
        on_create=on_create,
        not_accepted=not_accepted,
        won=won,
        lost=lost,
        closed_by_partner_center=closed_by_pc,
        decline_reason=reasons["decline_reason"] or None,
        loss_reason=reasons["loss_reason"] or None,
        accept_notes=str(notes),
    )


def _expected_kind(lifecycle: Lifecycle) -> str:
    if lifecycle.status is Status.NEW:
        return "not_accepted"
    if lifecycle.status is Status.ACTIVE:
        return "accepted"
    return "won" if lifecycle.substatus.value == "Won" else "lost"


def _on_create(
    raw: Mapping[str, Any], problems: _Problems
) -> tuple[tuple[Lifecycle, StageValue], ...]:
    found: dict[Lifecycle, StageValue] = {}
    for key, stage in raw.items():
        where = f"lifecycle.on_create.{key}"
        if not _is_stage(stage):
            problems.add(where, "must be a stage (text or whole number)" + _got(stage))
            continue
        matched = [lc for lc in Lifecycle.all() if str(key) in (str(lc), str(lc.status))]
        matched = [lc for lc in matched if lc != Lifecycle.UNSET]
        if not matched:
            known = ", ".join(str(lc) for lc in Lifecycle.all() if lc != Lifecycle.UNSET)
            problems.add(where, f"is not a status or status/substatus (known: {known})")
        for lifecycle in matched:  # "Status/Substatus" beats "Status", whatever the order
            if "/" in str(key) or lifecycle not in found:
                found[lifecycle] = stage
    return tuple(found.items())


def _stages(raw: Mapping[str, Any], key: str, problems: _Problems) -> frozenset[StageValue]:
    value = raw.get(key)
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        problems.add(f"lifecycle.{key}", "must be a non-empty list of stages" + _got(value))
        return frozenset()
    bad = [v for v in value if not _is_stage(v)]
    if bad:
        problems.add(f"lifecycle.{key}", "stages are text or whole numbers" + _got(bad))
    return frozenset(v for v in value if _is_stage(v))


def _is_stage(value: object) -> bool:
    return (isinstance(value, str) and bool(value.strip())) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


# -- helpers ------------------------------------------------------------------------------------


def _enum(kind: type[E], raw: object, where: str, problems: _Problems) -> E | None:
    for member in kind:
        if member.value == raw:
            return member
    problems.add(where, f"must be one of {', '.join(m.value for m in kind)}" + _got(raw))
    return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _list(names: object) -> str:
    return ", ".join(sorted(str(n) for n in names))  # type: ignore[attr-defined]


def _got(value: object) -> str:
    # Never repr() a whole container: a value may be a YAML alias bomb (a few lines that
    # expand to billions of items); its kind and length say enough.
    if isinstance(value, Mapping | list | tuple | set):
        shown = f"{type(value).__name__} of {len(value)}"
    else:
        shown = repr(value[:60] if isinstance(value, str) else value)
    return f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
