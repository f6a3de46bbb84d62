"""A table's metadata from ``EntityDefinitions`` (columns, choices, alternate keys), and the
metadata check: what a mapping needs of the environment, in a customizer's words.

Reading one table costs four GETs (crm-apis §C1, §C4): the table with its columns and keys;
the date-and-time columns (for DateOnly behaviour); the choice columns and the status reasons,
each with their option sets (option sets only come with a cast to the column's metadata type).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from connector.crm.dynamics import wire
from connector.crm.dynamics.client import DynamicsClient
from connector.errors import RecordRejected
from connector.ports import FieldRequirement, MetadataProblem

_CAST = "Microsoft.Dynamics.CRM."


@dataclass(frozen=True, slots=True)
class Option:
    """One value of a choice column; ``state`` is the statecode a status reason belongs to."""

    value: int
    label: str
    state: int | None = None


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its type, whether it may be written, and its options (value, label)."""

    name: str
    type: str
    valid_for_create: bool = True
    valid_for_update: bool = True
    date_only: bool = False
    options: tuple[Option, ...] = ()

    @property
    def value_name(self) -> str:
        """The name a row's JSON (and ``$select``) uses: ``_x_value`` for a lookup."""
        return f"_{self.name}_value" if self.type in wire.LOOKUP_TYPES else self.name

    def option(self, value: object) -> Option | None:
        return next((o for o in self.options if o.value == value), None)

    def value_of(self, label: str) -> int | None:
        wanted = label.strip().casefold()
        return next((o.value for o in self.options if o.label.casefold() == wanted), None)


@dataclass(frozen=True, slots=True)
class Table:
    logical_name: str
    change_tracking: bool
    columns: Mapping[str, Column]
    keys: Mapping[str, tuple[tuple[str, ...], str]]  # key name → (columns, index status)

    def by_value_name(self, name: str) -> Column | None:
        return next((c for c in self.columns.values() if c.value_name == name), None)


def load_table(client: DynamicsClient, logical_name: str) -> Table | None:
    """The table's metadata, or None if the environment has no such table (or hides it)."""
    where = f"EntityDefinitions(LogicalName='{logical_name}')"
    try:
        entity = cast(
            wire.EntityMetadata,
            client.get(
                "metadata",
                where,
                params={
                    "$select": "LogicalName,ChangeTrackingEnabled",
                    "$expand": "Attributes($select=LogicalName,AttributeType,IsValidForCreate,"
                    "IsValidForUpdate),Keys($select=LogicalName,KeyAttributes,EntityKeyIndexStatus)",
                },
            ),
        )
    except RecordRejected as exc:
        if exc.status == 404:
            return None
        raise
    columns: dict[str, Column] = {}
    for attr in entity.get("Attributes", []):
        name = attr.get("LogicalName")
        if isinstance(name, str):
            columns[name] = Column(
                name,
                str(attr.get("AttributeType") or ""),
                valid_for_create=attr.get("IsValidForCreate") is not False,
                valid_for_update=attr.get("IsValidForUpdate") is not False,
            )
    for attr in _cast(
        client, where, "DateTimeAttributeMetadata", "LogicalName,Format,DateTimeBehavior"
    ):
        column = columns.get(str(attr.get("LogicalName")))
        behavior = (attr.get("DateTimeBehavior") or {}).get("Value")
        if column is not None and (behavior == "DateOnly" or attr.get("Format") == "DateOnly"):
            columns[column.name] = replace(column, date_only=True)
    for kind in ("PicklistAttributeMetadata", "StatusAttributeMetadata"):
        for attr in _cast(client, where, kind, "LogicalName", expand="OptionSet($select=Options)"):
            column = columns.get(str(attr.get("LogicalName")))
            if column is not None:
                options = (attr.get("OptionSet") or {}).get("Options", [])
                columns[column.name] = replace(column, options=_options(options))
    keys = {
        str(k.get("LogicalName")): (
            tuple(k.get("KeyAttributes", [])),
            str(k.get("EntityKeyIndexStatus") or "Active"),
        )
        for k in entity.get("Keys", [])
    }
    return Table(
        logical_name=logical_name,
        change_tracking=entity.get("ChangeTrackingEnabled") is True,
        columns=columns,
        keys=keys,
    )


def _cast(
    client: DynamicsClient, where: str, kind: str, select: str, *, expand: str | None = None
) -> list[wire.AttributeMetadata]:
    params = {"$select": select} | ({"$expand": expand} if expand else {})
    page = client.get("metadata", f"{where}/Attributes/{_CAST}{kind}", params=params)
    values = page.get("value")
    return (
        [cast(wire.AttributeMetadata, v) for v in values if isinstance(v, dict)]
        if isinstance(values, list)
        else []
    )


def _options(raw: Sequence[Any]) -> tuple[Option, ...]:
    out = []
    for option in raw:
        value = option.get("Value") if isinstance(option, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            state = option.get("State")
            out.append(
                Option(
                    value,
                    _label_text(option.get("Label")),
                    state if isinstance(state, int) and not isinstance(state, bool) else None,
                )
            )
    return tuple(out)


def _label_text(label: object) -> str:
    if not isinstance(label, dict):
        return ""
    user = label.get("UserLocalizedLabel")
    if isinstance(user, dict) and isinstance(user.get("Label"), str):
        return str(user["Label"])
    localized = label.get("LocalizedLabels") or []
    first = localized[0] if localized and isinstance(localized[0], dict) else {}
    return str(first.get("Label") or "")


# -- the check ------------------------------------------------------------------------------


def with_key(required: Sequence[FieldRequirement], key_column: str) -> list[FieldRequirement]:
    """``required``, with the adapter's own key column checked as an alternate key (merged)."""
    needs = list(required)
    for n, need in enumerate(needs):
        if need.sobject == wire.OPPORTUNITY and need.name == key_column:
            needs[n] = replace(need, external_id=True)
            return needs
    needs.insert(0, FieldRequirement(sobject=wire.OPPORTUNITY, name=key_column, external_id=True))
    return needs


def table_missing(logical_name: str) -> MetadataProblem:
    return MetadataProblem(
        sobject=logical_name,
        field=None,
        message="the table does not exist, or the application user's security role cannot "
        "read it (give the role Read on this table)",
    )


def change_tracking_problem(table: Table) -> list[MetadataProblem]:
    if table.change_tracking:
        return []
    return [
        MetadataProblem(
            sobject=table.logical_name,
            field=None,
            message="change tracking is off: turn on 'Track changes' in the table's properties",
        )
    ]


def column_problems(need: FieldRequirement, table: Table) -> list[MetadataProblem]:
    """Every way the table falls short of ``need``, worded for a Dataverse customizer."""

    def problem(message: str) -> MetadataProblem:
        return MetadataProblem(sobject=need.sobject, field=need.name, message=message)

    column = table.columns.get(need.name)
    if column is None:
        return [
            problem(
                f"the column does not exist: create it (logical name {need.name}) or give the "
                "application user's security role access to it"
            )
        ]
    problems = []
    if need.writable and not column.valid_for_create:
        problems.append(problem("the column cannot be set on new rows (IsValidForCreate is off)"))
    if need.writable and not need.external_id and not column.valid_for_update:
        problems.append(problem("the column cannot be updated (IsValidForUpdate is off)"))
    if need.external_id:
        keys = [(n, status) for n, (cols, status) in table.keys.items() if cols == (need.name,)]
        if not keys:
            problems.append(
                problem(
                    "it is not an alternate key (Dataverse's external id): add a key on this "
                    "column alone, so one referral can never match two rows"
                )
            )
        elif all(status != "Active" for _, status in keys):
            name, status = keys[0]
            problems.append(problem(f"its alternate key {name} is not active yet ({status})"))
    if need.picklist_values:
        problems.extend(_option_problems(need, column, problem))
    return problems


def _option_problems(
    need: FieldRequirement,
    column: Column,
    problem: Any,  # noqa: ANN401
) -> list[MetadataProblem]:
    if column.type not in (wire.CHOICE, wire.STATUS, wire.STATE):
        return [problem(f"it must be a choice column, but it is a {column.type or 'unknown'} one")]
    if column.type == wire.CHOICE:
        known = {o.label.casefold() for o in column.options}
        wanted = [(v, v.casefold()) for v in need.picklist_values]
    else:
        known = {str(o.value) for o in column.options}
        wanted = [(v, v) for v in need.picklist_values]
    return [
        problem(f"the choice {shown!r} is missing: add it to the column's options")
        for shown, value in wanted
        if value not in known
    ]
