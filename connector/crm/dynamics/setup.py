"""The Dynamics half of the CRM setup kit: the ``rs_`` columns and the alternate key a mapping
needs, planned against the environment's metadata and created through the Web API's metadata
endpoints (``referral-sync crm-setup dynamics [--apply]``).

:data:`COLUMNS` is what Referral Sync's columns are (type, length, choices): the sandbox's
simulated environment declares the same ones (``sandbox/dynamics/tables.py``, a test keeps
them equal), and docs/dynamics-setup.md lists them for a customizer. :func:`plan_setup` reads
the table and says what is missing; what it cannot create (a column of another name, a wrong
type, change tracking off) is left to the customizer, in :attr:`Plan.manual`.

:func:`apply` creates, in order: each missing column (``POST EntityDefinitions(LogicalName=
'opportunity')/Attributes``), then the key (``POST …/Keys``), then waits while Dataverse builds
the key's index in the background (``EntityKeyIndexStatus`` Pending → InProgress → Active, or
Failed when rows already repeat a value). Every component joins the unmanaged solution named by
``MSCRM.SolutionUniqueName``, whose publisher's prefix must be ``rs``. Nothing is ever changed
or deleted, so a second run finds nothing to do.

The writes go through :meth:`DynamicsClient.batch` (one request per batch): it is the client's
public way to send a POST with its own headers, with the same token, retries and error table as
every other call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from connector.crm.dynamics import wire
from connector.crm.dynamics.batch import Part
from connector.crm.dynamics.client import DynamicsClient, error_for
from connector.crm.dynamics.metadata import (
    Table,
    change_tracking_problem,
    column_problems,
    load_table,
    table_missing,
    with_key,
)
from connector.errors import PermanentError
from connector.ports import FieldRequirement, MetadataProblem

__all__ = [
    "COLUMNS",
    "KEY",
    "PREFIX",
    "SOLUTION",
    "Applied",
    "ColumnSpec",
    "KeySpec",
    "Plan",
    "apply",
    "column_body",
    "key_body",
    "load_plan",
    "plan_setup",
]

PREFIX = "rs_"
SOLUTION = "ReferralSync"
"""The unmanaged solution the components join, unless the command names another."""
LANGUAGE = 1033
_NS = "Microsoft.Dynamics.CRM."
_ACTIVE, _FAILED = "Active", "Failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnSpec:
    """One column Referral Sync adds to ``opportunity``. ``kind`` is the AttributeType."""

    schema_name: str
    kind: str
    label: str
    description: str
    max_length: int | None = None
    format_name: str | None = None  # a String's FormatName: Text or Url
    options: tuple[tuple[int, str], ...] = ()  # a choice's (value, label)

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()

    def describe(self) -> str:
        """The type as the maker portal names it: ``Single line of text (100)``."""
        if self.kind == "String":
            shape = "URL, " if self.format_name == "Url" else ""
            return f"Single line of text ({shape}{self.max_length})"
        if self.kind == "Memo":
            return f"Multiple lines of text ({self.max_length})"
        if self.kind == "Picklist":
            return "Choice: " + ", ".join(label for _, label in self.options)
        return {"Boolean": "Yes/No", "DateTime": "Date and time"}.get(self.kind, self.kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    schema_name: str
    columns: tuple[str, ...]
    label: str

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()


_DECLINE_REASONS = ("Not a fit", "No capacity", "Duplicate", "Customer not interested", "Other")

COLUMNS: Mapping[str, ColumnSpec] = {
    c.logical_name: c
    for c in (
        ColumnSpec(
            schema_name="rs_PartnerCenterReferralId",
            kind="String",
            label="Partner Center Referral Id",
            description="The Partner Center referral this opportunity mirrors (the upsert key).",
            max_length=100,
            format_name="Text",
        ),
        ColumnSpec(
            schema_name="rs_EngagementId",
            kind="String",
            label="Partner Center Engagement Id",
            description="The Partner Center engagement the referral belongs to.",
            max_length=100,
            format_name="Text",
        ),
        ColumnSpec(
            schema_name="rs_PartnerCenterStatus",
            kind="String",
            label="Partner Center Status",
            description="The referral's status/substatus as Partner Center has it.",
            max_length=100,
            format_name="Text",
        ),
        ColumnSpec(
            schema_name="rs_ReferralLink",
            kind="String",
            label="Referral Link",
            description="The referral in Partner Center.",
            max_length=2000,
            format_name="Url",
        ),
        ColumnSpec(
            schema_name="rs_Hot",
            kind="Boolean",
            label="Hot",
            description="The customer asked to be contacted (within 72 hours).",
        ),
        ColumnSpec(
            schema_name="rs_Expires",
            kind="DateTime",
            label="Referral Expires",
            description="When a new referral expires if not accepted.",
        ),
        ColumnSpec(
            schema_name="rs_MicrosoftNotes",
            kind="Memo",
            label="Microsoft Notes",
            description="Microsoft's notes on the referral.",
            max_length=100000,
        ),
        ColumnSpec(
            schema_name="rs_DeclineReason",
            kind="Picklist",
            label="Decline Reason",
            description="Why the partner declined the referral (sent to Partner Center).",
            options=tuple((100000000 + n, r) for n, r in enumerate(_DECLINE_REASONS)),
        ),
    )
}
"""Every column crm-setup can create, by logical name."""

KEY = KeySpec(
    schema_name="rs_PartnerCenterReferralId_Key",
    columns=("rs_partnercenterreferralid",),
    label="Partner Center Referral Id",
)
"""The alternate key the upserts address rows by."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``opportunity`` lacks: columns and the key to create, a key whose index is still
    being built (its name and status), and what only a customizer can fix."""

    table: str
    columns: tuple[ColumnSpec, ...] = ()
    key: KeySpec | None = None
    pending_key: tuple[str, str] | None = None
    manual: tuple[MetadataProblem, ...] = ()

    @property
    def nothing_to_do(self) -> bool:
        return not (self.columns or self.key or self.pending_key or self.manual)


@dataclass(slots=True)
class Applied:
    """What :func:`apply` did: the columns and key it created, the key's last status."""

    columns: list[str] = field(default_factory=list)
    key: str | None = None
    key_status: str | None = None


def load_plan(
    client: DynamicsClient, required: Sequence[FieldRequirement], key_column: str
) -> Plan:
    """Read ``opportunity``'s metadata (four GETs) and plan against it."""
    return plan_setup(required, load_table(client, wire.OPPORTUNITY), key_column)


def plan_setup(required: Sequence[FieldRequirement], table: Table | None, key_column: str) -> Plan:
    """What to create so that ``table`` meets ``required`` (the key column an alternate key)."""
    if table is None:
        return Plan(wire.OPPORTUNITY, manual=(table_missing(wire.OPPORTUNITY),))
    columns: list[ColumnSpec] = []
    manual: list[MetadataProblem] = list(change_tracking_problem(table))
    key: KeySpec | None = None
    pending: tuple[str, str] | None = None
    for need in with_key(required, key_column):
        if need.sobject != wire.OPPORTUNITY:
            continue
        known = COLUMNS.get(need.name)
        if need.name not in table.columns:
            if known is None:
                manual.extend(column_problems(need, table))
                continue
            columns.append(known)
        else:
            manual.extend(column_problems(replace(need, external_id=False), table))
        if need.external_id:
            keys = [(n, s) for n, (cols, s) in table.keys.items() if cols == (need.name,)]
            if any(s == _ACTIVE for _, s in keys):
                continue
            if keys and keys[0][1] == _FAILED:
                manual.append(_failed_key(need.name, keys[0][0]))
            elif keys:
                pending = keys[0]
            elif KEY.columns == (need.name,):
                key = KEY
            else:
                manual.extend(column_problems(need, table))
    return Plan(wire.OPPORTUNITY, tuple(columns), key, pending, tuple(dict.fromkeys(manual)))


def apply(
    client: DynamicsClient,
    plan: Plan,
    *,
    solution: str = SOLUTION,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float = 900.0,
    poll_s: float = 5.0,
    on_step: Callable[[str], None] = lambda _: None,
) -> Applied:
    """Create the plan's columns, then its key, then wait up to ``timeout_s`` for the key's
    index. ``on_step`` hears each step as it is done. A refused write raises (what was created
    before it stays, and the next run's plan starts from there)."""
    done = Applied()
    where = f"EntityDefinitions(LogicalName='{plan.table}')"
    for column in plan.columns:
        _post(client, "create_column", f"{where}/Attributes", column_body(column), solution)
        done.columns.append(column.logical_name)
        on_step(f"created column {column.logical_name} ({column.describe()})")
    waiting = plan.pending_key[0] if plan.pending_key else None
    if plan.key is not None:
        _post(client, "create_key", f"{where}/Keys", key_body(plan.key), solution)
        done.key = waiting = plan.key.logical_name
        on_step(f"created alternate key {plan.key.logical_name} on {', '.join(plan.key.columns)}")
    if waiting is not None:
        done.key_status = _wait_for_key(
            client, where, waiting, sleep=sleep, clock=clock, timeout_s=timeout_s, poll_s=poll_s
        )
        on_step(f"alternate key {waiting} is {done.key_status}")
    return done


# -- request bodies (Microsoft: "Create and update column definitions using the Web API") -----


def column_body(column: ColumnSpec) -> dict[str, Any]:
    """The ``AttributeMetadata`` JSON that creates ``column``."""
    body: dict[str, Any] = {
        "@odata.type": f"{_NS}{column.kind}AttributeMetadata",
        "AttributeType": column.kind,
        "AttributeTypeName": {"Value": f"{column.kind}Type"},
        "SchemaName": column.schema_name,
        "DisplayName": _label(column.label),
        "Description": _label(column.description),
        "RequiredLevel": {
            "Value": "None",
            "CanBeChanged": True,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
    }
    if column.kind == "String":
        body |= {"MaxLength": column.max_length, "FormatName": {"Value": column.format_name}}
    elif column.kind == "Memo":
        body |= {"MaxLength": column.max_length, "Format": "TextArea"}
    elif column.kind == "DateTime":
        body |= {"Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"}}
    elif column.kind == "Boolean":
        body |= {
            "DefaultValue": False,
            "OptionSet": {
                "TrueOption": {"Value": 1, "Label": _label("Yes")},
                "FalseOption": {"Value": 0, "Label": _label("No")},
                "OptionSetType": "Boolean",
            },
        }
    elif column.kind == "Picklist":
        body["OptionSet"] = {
            "@odata.type": f"{_NS}OptionSetMetadata",
            "IsGlobal": False,
            "OptionSetType": "Picklist",
            "Options": [{"Value": v, "Label": _label(text)} for v, text in column.options],
        }
    return body


def key_body(key: KeySpec) -> dict[str, Any]:
    """The ``EntityKeyMetadata`` JSON that creates ``key``."""
    return {
        "SchemaName": key.schema_name,
        "DisplayName": _label(key.label),
        "KeyAttributes": list(key.columns),
    }


def _label(text: str) -> dict[str, Any]:
    return {
        "@odata.type": f"{_NS}Label",
        "LocalizedLabels": [
            {"@odata.type": f"{_NS}LocalizedLabel", "Label": text, "LanguageCode": LANGUAGE}
        ],
    }


# -- plumbing -------------------------------------------------------------------------------


def _post(
    client: DynamicsClient, name: str, path: str, body: dict[str, Any], solution: str
) -> None:
    part = Part("POST", client.url(path), body, {"MSCRM.SolutionUniqueName": solution})
    (answer,) = client.batch(name, [part])
    if answer.status >= 400:
        raise error_for(answer.status, answer.body, answer.headers)


def _wait_for_key(
    client: DynamicsClient,
    where: str,
    name: str,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    timeout_s: float,
    poll_s: float,
) -> str:
    """The key's status once Active, or the last one seen when ``timeout_s`` runs out. A key
    not listed yet (metadata read before the write is visible) counts as Pending."""
    deadline = clock() + timeout_s
    while True:
        page = client.get(
            "key_status",
            f"{where}/Keys",
            params={"$select": "LogicalName,KeyAttributes,EntityKeyIndexStatus"},
        )
        keys = [k for k in page.get("value", []) if isinstance(k, dict)]
        found = next((k for k in keys if k.get("LogicalName") == name), None)
        status = str(found.get("EntityKeyIndexStatus") or "Pending") if found else "Pending"
        if status == _FAILED:
            raise PermanentError(str(_failed_key(", ".join(KEY.columns), name)))
        if status == _ACTIVE or clock() >= deadline:
            return status
        sleep(poll_s)


def _failed_key(column: str, key: str) -> MetadataProblem:
    return MetadataProblem(
        sobject=wire.OPPORTUNITY,
        field=column,
        message=f"building the index of alternate key {key} failed: rows already repeat a "
        "value of it. Remove the duplicates, then reactivate the key (ReactivateEntityKey, or "
        "delete and re-create it in the maker portal)",
    )
