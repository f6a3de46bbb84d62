"""The Web API's metadata writes: new columns and alternate keys on an existing table.

Served (under the service root), each answering ``204`` with ``OData-EntityId``:

* ``POST EntityDefinitions(LogicalName='t')/Attributes``: one column, an ``AttributeMetadata``
  of a concrete ``@odata.type`` (String, Memo, Boolean, DateTime, Picklist, Money, Integer,
  Decimal), with ``SchemaName``, ``DisplayName`` and ``RequiredLevel``, plus what the type
  needs (MaxLength; Format; the Boolean's TrueOption/FalseOption; the Picklist's local
  OptionSet). Request bodies as in Microsoft's "Create and update column definitions using the
  Web API" (``create-update-column-definitions-using-web-api.md``).
* ``POST EntityDefinitions(LogicalName='t')/Keys``: an ``EntityKeyMetadata`` (``SchemaName``,
  ``DisplayName``, ``KeyAttributes``; the CreateEntityKeyRequest of the PowerApps-Samples Web API
  metadata messages). The key's index is built by a background job (``define-alternate-keys-
  entity.md``): the key reads ``Pending``, then ``InProgress``, then ``Active`` once
  :attr:`DataverseSimulator.key_index_seconds` of sandbox time have passed, or ``Failed`` if
  the table's rows already repeat a value of the key then. Until it is Active it neither
  addresses rows nor keeps them unique.

``MSCRM.SolutionUniqueName`` names the unmanaged solution the component joins; a schema name
must start with that solution's publisher prefix and ``_`` (without the header: the Default
solution's publisher, ``new``). The rules a real environment applies that are checked here:
the type's required properties and their ranges (String MaxLength 1..4000, Memo 1..1048576),
labels with ``LocalizedLabels``, unique option values, at most 10 keys of at most 16 columns of
the types a key may use, no second column or key of the same name.

Codes: ``0x80060888`` the OData reader (a malformed body); ``0x800608ad`` the customization
prefix (third-party reports of the Web API's message); ``0x80040203`` the other refusals
(code and wording [UNVERIFIED]).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sandbox.dynamics.errors import INVALID_ARGUMENT, NOT_FOUND, DataverseError
from sandbox.dynamics.schema import (
    BOOLEAN,
    DATETIME,
    DECIMAL,
    INTEGER,
    KEY_ACTIVE,
    KEY_FAILED,
    KEY_IN_PROGRESS,
    KEY_PENDING,
    LOOKUP,
    MEMO,
    MONEY,
    PICKLIST,
    STRING,
    AttributeDef,
    EntityDef,
    KeyDef,
    OptionDef,
    OrgSchema,
)
from sandbox.dynamics.store import RowStore

__all__ = ["create_attribute", "create_key", "settle_keys"]

INVALID_PREFIX = "0x800608ad"
_NS = "Microsoft.Dynamics.CRM."
_KINDS = {
    "StringAttributeMetadata": STRING,
    "MemoAttributeMetadata": MEMO,
    "BooleanAttributeMetadata": BOOLEAN,
    "DateTimeAttributeMetadata": DATETIME,
    "PicklistAttributeMetadata": PICKLIST,
    "MoneyAttributeMetadata": MONEY,
    "IntegerAttributeMetadata": INTEGER,
    "DecimalAttributeMetadata": DECIMAL,
}
_MAX_LENGTH = {STRING: 4000, MEMO: 1_048_576}
_STRING_FORMATS = frozenset(
    {"Text", "Email", "Url", "Phone", "TextArea", "TickerSymbol", "Json", "RichText"}
)
_MEMO_FORMATS = frozenset({"TextArea", "Email", "Json", "RichText", "TextAreaRichText"})
_REQUIRED_LEVELS = frozenset({"None", "Recommended", "ApplicationRequired"})
_DATETIME_BEHAVIORS = {"UserLocal", "DateOnly", "TimeZoneIndependent"}
_KEY_TYPES = frozenset({STRING, INTEGER, DECIMAL, DATETIME, LOOKUP, PICKLIST})
_MAX_KEYS = 10
_MAX_KEY_COLUMNS = 16
_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,49}$")


def create_attribute(
    schema: OrgSchema, table: EntityDef, body: Mapping[str, Any], solution: str | None
) -> AttributeDef:
    """Add the column ``body`` defines to ``table``; the new column."""
    kind = _kind(body, "AttributeMetadata", _KINDS)
    if "AttributeType" in body and body["AttributeType"] != kind:
        raise DataverseError.odata(
            f"AttributeType '{body['AttributeType']}' does not match the @odata.type "
            f"'{_NS}{_type_name(body)}'."
        )
    schema_name = _schema_name(schema, body, solution, "Attribute")
    logical = schema_name.lower()
    if table.attribute(logical) is not None:
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            f"An attribute with the name {logical} already exists on entity {table.logical_name}.",
        )
    level = _required_level(body)
    attr = AttributeDef(
        logical,
        kind,
        _label(body, "DisplayName"),
        schema_name=schema_name,
        required=level,
        custom=True,
    )
    attr = _typed(attr, kind, body)
    schema.add_attribute(table.logical_name, attr)
    return attr


def create_key(
    schema: OrgSchema,
    table: EntityDef,
    body: Mapping[str, Any],
    solution: str | None,
    *,
    now: datetime,
    index_seconds: float,
) -> KeyDef:
    """Add the alternate key ``body`` defines to ``table``, ``Pending`` until its index is ready."""
    if "@odata.type" in body:
        _kind(body, "EntityKeyMetadata", {"EntityKeyMetadata": "key"})
    schema_name = _schema_name(schema, body, solution, "EntityKey")
    logical = schema_name.lower()
    columns = body.get("KeyAttributes")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise _invalid("KeyAttributes must list the logical names of one or more columns.")
    if len(set(columns)) != len(columns) or len(columns) > _MAX_KEY_COLUMNS:
        raise _invalid(f"A key has 1 to {_MAX_KEY_COLUMNS} distinct columns.")
    for name in columns:
        attr = table.attribute(name)
        if attr is None:
            raise DataverseError(
                404,
                NOT_FOUND,
                f"Could not find attribute '{name}' on entity '{table.logical_name}'.",
            )
        if attr.type not in _KEY_TYPES:
            raise _invalid(f"The attribute {name} of type {attr.type} cannot be part of a key.")
    if any(k.logical_name == logical for k in table.keys):
        raise _invalid(f"An entity key with the name {logical} already exists.")
    if any(frozenset(k.attributes) == frozenset(columns) for k in table.keys):
        raise _invalid("An entity key with the same attributes already exists.")
    if len(table.keys) >= _MAX_KEYS:
        raise _invalid(f"An entity can have at most {_MAX_KEYS} keys.")
    key = KeyDef(
        logical,
        schema_name,
        tuple(columns),
        _label(body, "DisplayName"),
        status=KEY_PENDING,
        created_at=now,
        ready_at=now + timedelta(seconds=index_seconds),
    )
    schema.add_key(table.logical_name, key)
    return key


def settle_keys(schema: OrgSchema, store: RowStore, now: datetime) -> None:
    """Move every key whose index job has run on: ``InProgress`` half way, then ``Active`` (or
    ``Failed`` when rows repeat a value of the key)."""
    for table in schema.entities():
        for key in table.keys:
            if key.status in (KEY_ACTIVE, KEY_FAILED) or key.ready_at is None:
                continue
            status = _status_at(key, now)
            if status == KEY_ACTIVE and _repeats(store, table, key):
                status = KEY_FAILED
            if status != key.status:
                schema.set_key_status(table.logical_name, key.logical_name, status)


def attribute_url(root: str, table: EntityDef, attr: AttributeDef) -> str:
    """The new column's ``OData-EntityId``."""
    where = f"EntityDefinitions(LogicalName='{table.logical_name}')"
    return f"{root}/{where}/Attributes({_id(table, attr.logical_name)})"


def key_url(root: str, table: EntityDef, key: KeyDef) -> str:
    """The new key's ``OData-EntityId``."""
    where = f"EntityDefinitions(LogicalName='{table.logical_name}')"
    return f"{root}/{where}/Keys({_id(table, key.logical_name)})"


# -- the pieces -----------------------------------------------------------------------------


def _id(table: EntityDef, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse-sandbox:{table.logical_name}:{name}"))


def _type_name(body: Mapping[str, Any]) -> str:
    raw = body.get("@odata.type")
    return str(raw).removeprefix("#").removeprefix(_NS) if isinstance(raw, str) else ""


def _kind(body: Mapping[str, Any], base: str, kinds: Mapping[str, str]) -> str:
    name = _type_name(body)
    if not name:
        raise DataverseError.odata(
            f"An '@odata.type' annotation naming a derived type of '{_NS}{base}' is required."
        )
    if name not in kinds:
        raise DataverseError.odata(f"The type '{_NS}{name}' is not a valid '{_NS}{base}'.")
    return kinds[name]


def _schema_name(
    schema: OrgSchema, body: Mapping[str, Any], solution: str | None, component: str
) -> str:
    name = body.get("SchemaName")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise _invalid("SchemaName is missing or invalid (a letter, then letters, digits, _).")
    if solution is None:
        prefix = "new"
    elif solution in schema.solutions:
        prefix = schema.solutions[solution]
    else:
        raise DataverseError(
            404, NOT_FOUND, f"A solution with the unique name {solution} does not exist."
        )
    if not name.lower().startswith(prefix.lower() + "_"):
        raise DataverseError(
            400,
            INVALID_PREFIX,
            f"Export key attribute SchemaName for component {component} must start with a "
            f"valid customization prefix ({prefix}_, the publisher of "
            f"{solution or 'the Default solution'}).",
        )
    logical = body.get("LogicalName")
    if logical is not None and logical != name.lower():
        raise _invalid("LogicalName must be the SchemaName in lower case.")
    return name


def _label(body: Mapping[str, Any], name: str) -> str:
    label = body.get(name)
    localized = label.get("LocalizedLabels") if isinstance(label, dict) else None
    if not isinstance(localized, list) or not localized:
        raise _invalid(f"{name} must be a Label with at least one LocalizedLabel.")
    for item in localized:
        ok = isinstance(item, dict) and isinstance(item.get("Label"), str) and item["Label"]
        if not ok or not isinstance(item.get("LanguageCode"), int):
            raise _invalid(f"Each LocalizedLabel of {name} needs a Label and a LanguageCode.")
    return str(localized[0]["Label"])


def _required_level(body: Mapping[str, Any]) -> str:
    level = body.get("RequiredLevel")
    value = level.get("Value") if isinstance(level, dict) else None
    if value not in _REQUIRED_LEVELS:
        raise _invalid(
            "RequiredLevel must be an AttributeRequiredLevelManagedProperty with Value None, "
            "Recommended or ApplicationRequired."
        )
    return str(value)


def _typed(attr: AttributeDef, kind: str, body: Mapping[str, Any]) -> AttributeDef:
    if kind in _MAX_LENGTH:
        length = body.get("MaxLength")
        limit = _MAX_LENGTH[kind]
        if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= limit:
            raise _invalid(f"MaxLength of a {kind} column must be 1 to {limit}.")
        attr = replace(attr, max_length=length)
    if kind == STRING:
        fmt = (body.get("FormatName") or {"Value": "Text"}).get("Value")
        if fmt not in _STRING_FORMATS:
            raise _invalid(f"FormatName {fmt!r} is not a valid string format.")
        return replace(attr, format_name=str(fmt))
    if kind == MEMO and body.get("Format", "TextArea") not in _MEMO_FORMATS:
        raise _invalid(f"Format {body.get('Format')!r} is not a valid memo format.")
    if kind == DATETIME:
        return replace(attr, date_only=_date_only(body))
    if kind == BOOLEAN:
        _boolean_options(body.get("OptionSet"))
    if kind == PICKLIST:
        return replace(attr, options=_picklist_options(body.get("OptionSet")))
    return attr


def _date_only(body: Mapping[str, Any]) -> bool:
    fmt = body.get("Format")
    if fmt not in ("DateOnly", "DateAndTime"):
        raise _invalid("Format of a DateTime column must be DateOnly or DateAndTime.")
    behavior = (body.get("DateTimeBehavior") or {"Value": "UserLocal"}).get("Value")
    if behavior not in _DATETIME_BEHAVIORS:
        raise _invalid(f"DateTimeBehavior {behavior!r} is not valid.")
    if behavior == "DateOnly" and fmt != "DateOnly":
        raise _invalid("A DateOnly behavior needs the DateOnly format.")
    return bool(fmt == "DateOnly")


def _boolean_options(option_set: object) -> None:
    if not isinstance(option_set, dict):
        raise _invalid("A Boolean column needs an OptionSet with TrueOption and FalseOption.")
    for name, value in (("TrueOption", 1), ("FalseOption", 0)):
        option = option_set.get(name)
        if not isinstance(option, dict) or option.get("Value") != value:
            raise _invalid(f"{name} must be an option with Value {value} and a Label.")
        _label(option, "Label")


def _picklist_options(option_set: object) -> tuple[OptionDef, ...]:
    if not isinstance(option_set, dict) or option_set.get("IsGlobal") is not False:
        raise _invalid("A local choice column needs an OptionSet with IsGlobal false.")
    if option_set.get("OptionSetType") != "Picklist":
        raise _invalid("The OptionSet of a choice column has OptionSetType Picklist.")
    raw = option_set.get("Options")
    if not isinstance(raw, list) or not raw:
        raise _invalid("The OptionSet of a choice column needs at least one option.")
    options = []
    for option in raw:
        value = option.get("Value") if isinstance(option, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid("Each option needs an integer Value.")
        options.append(OptionDef(value, _label(option, "Label")))
    if len({o.value for o in options}) != len(options):
        raise _invalid("The option values of a choice column must be unique.")
    return tuple(options)


def _status_at(key: KeyDef, now: datetime) -> str:
    assert key.ready_at is not None  # noqa: S101 (caller checked)
    if now >= key.ready_at:
        return KEY_ACTIVE
    started = key.created_at or key.ready_at
    return KEY_IN_PROGRESS if now >= started + (key.ready_at - started) / 2 else KEY_PENDING


def _repeats(store: RowStore, table: EntityDef, key: KeyDef) -> bool:
    seen: set[tuple[object, ...]] = set()
    for row in store.rows(table.logical_name):
        values = tuple(
            v.lower() if isinstance(v, str) else v for v in (row.get(c) for c in key.attributes)
        )
        if any(v is None for v in values):
            continue
        if values in seen:
            return True
        seen.add(values)
    return False


def _invalid(message: str) -> DataverseError:
    return DataverseError(400, INVALID_ARGUMENT, message)
