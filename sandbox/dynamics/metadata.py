"""``EntityDefinitions``: the metadata a client reads to check the environment (§C1, §C4).

Served paths (under the service root), with ``$select`` and ``$expand`` as noted:

* ``EntityDefinitions`` (``$select``) and ``EntityDefinitions(LogicalName='t')``
  (``$select``; ``$expand=Attributes,Keys``, ``Attributes($select=…)``);
* ``EntityDefinitions(LogicalName='t')/Attributes`` and ``…/Attributes(LogicalName='c')``,
  optionally cast ``…/Microsoft.Dynamics.CRM.<Kind>AttributeMetadata`` (a collection cast keeps
  the columns of that kind); ``$expand=OptionSet`` on a Picklist/State/Status cast;
* ``EntityDefinitions(LogicalName='t')/Keys``.

Shapes follow the Web API's metadata types: ``AttributeType`` and ``AttributeTypeName``,
``MaxLength``, ``RequiredLevel {Value, CanBeChanged, ManagedPropertyLogicalName}``,
``DateTimeBehavior``, ``Targets``, option sets with ``Options[{Value, Label, State |
DefaultStatus, InvariantName}]``, keys with ``KeyAttributes`` and ``EntityKeyIndexStatus``.
An unknown table or column answers 404 ``0x80040217`` (message wording [UNVERIFIED]).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sandbox.dynamics.errors import NOT_FOUND, DataverseError
from sandbox.dynamics.refs import parse_key, split_segment
from sandbox.dynamics.schema import (
    DATETIME,
    LOOKUP_TYPES,
    MONEY,
    OPTION_TYPES,
    STRING,
    TEXT_TYPES,
    AttributeDef,
    EntityDef,
    KeyDef,
    OptionDef,
    OrgSchema,
)

__all__ = ["find_table", "metadata_response"]

_NS = "Microsoft.Dynamics.CRM."


def _label(text: str) -> dict[str, Any]:
    label = {"Label": text, "LanguageCode": 1033, "IsManaged": True}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "dataverse-sandbox:" + ":".join(parts)))


def _kind(attr: AttributeDef) -> str:
    return {"Customer": "Lookup", "Uniqueidentifier": "UniqueIdentifier"}.get(
        attr.type, attr.type
    ) + "AttributeMetadata"


def entity_json(table: EntityDef) -> dict[str, Any]:
    return {
        "MetadataId": table.metadata_id,
        "LogicalName": table.logical_name,
        "SchemaName": table.display_name.replace(" ", ""),
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "ChangeTrackingEnabled": table.change_tracking,
        "IsCustomEntity": False,
        "DisplayName": _label(table.display_name),
    }


def attribute_json(table: EntityDef, attr: AttributeDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@odata.type": f"#{_NS}{_kind(attr)}",
        "MetadataId": _guid(table.logical_name, attr.logical_name),
        "LogicalName": attr.logical_name,
        "SchemaName": attr.schema_name or attr.logical_name,
        "EntityLogicalName": table.logical_name,
        "AttributeType": attr.type,
        "AttributeTypeName": {"Value": f"{attr.type}Type"},
        "IsCustomAttribute": attr.custom,
        "IsPrimaryId": attr.logical_name == table.primary_id,
        "IsPrimaryName": attr.logical_name == table.primary_name,
        "IsValidForCreate": attr.valid_for_create,
        "IsValidForUpdate": attr.valid_for_update,
        "IsValidForRead": True,
        "RequiredLevel": {
            "Value": attr.required,
            "CanBeChanged": attr.required != "SystemRequired",
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "DisplayName": _label(attr.display_name),
    }
    if attr.type in TEXT_TYPES:
        out["MaxLength"] = attr.max_length
    if attr.type == STRING:
        out["FormatName"] = {"Value": attr.format_name or "Text"}
    if attr.type == DATETIME:
        out["Format"] = "DateOnly" if attr.date_only else "DateAndTime"
        out["DateTimeBehavior"] = {"Value": "DateOnly" if attr.date_only else "UserLocal"}
    if attr.type == MONEY:
        out |= {"Precision": 2, "MinValue": -922337203685477, "MaxValue": 922337203685477}
    if attr.type in LOOKUP_TYPES:
        out["Targets"] = list(attr.targets)
    return out


def _option(attr: AttributeDef, option: OptionDef) -> dict[str, Any]:
    out: dict[str, Any] = {"Value": option.value, "Label": _label(option.label)}
    if attr.type == "Status":
        out["State"] = option.state
    if attr.type == "State":
        out["DefaultStatus"] = option.default_status
        out["InvariantName"] = option.invariant
    return out


def option_set_json(table: EntityDef, attr: AttributeDef) -> dict[str, Any]:
    return {
        "MetadataId": _guid(table.logical_name, attr.logical_name, "optionset"),
        "Name": f"{table.logical_name}_{attr.logical_name}",
        "OptionSetType": attr.type,
        "IsGlobal": False,
        "Options": [_option(attr, o) for o in attr.options],
    }


def key_json(table: EntityDef, key: KeyDef) -> dict[str, Any]:
    return {
        "MetadataId": _guid(table.logical_name, key.logical_name),
        "LogicalName": key.logical_name,
        "SchemaName": key.schema_name,
        "EntityLogicalName": table.logical_name,
        "KeyAttributes": list(key.attributes),
        "EntityKeyIndexStatus": key.status,
        "DisplayName": _label(key.display_name or key.logical_name),
    }


def _select(item: dict[str, Any], select: str | None, type_name: str) -> dict[str, Any]:
    if select is None:
        return item
    names = [n.strip() for n in select.split(",")]
    for name in names:
        if name not in item and name not in ("Attributes", "Keys", "OptionSet"):
            raise DataverseError.no_such_column(name, type_name)
    kept = {k: v for k, v in item.items() if k.startswith("@") or k in names}
    kept["MetadataId"] = item["MetadataId"]
    return kept


def _split_expand(text: str) -> dict[str, dict[str, str]]:
    """``"Attributes($select=a,b),Keys"`` → ``{"Attributes": {"$select": "a,b"}, "Keys": {}}``."""
    out: dict[str, dict[str, str]] = {}
    depth, start = 0, 0
    for i, char in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            part = text[start:i].strip()
            start = i + 1
            name, _, inner = part.partition("(")
            options: dict[str, str] = {}
            for option in filter(None, inner.rstrip(")").split(";")):
                key, _, value = option.partition("=")
                if key != "$select":
                    raise DataverseError.odata(f"The $expand option '{key}' is not supported.")
                options[key] = value
            out[name.strip()] = options
    return out


def find_table(schema: OrgSchema, segment: str) -> EntityDef:
    _, key = split_segment(segment)
    assert key is not None  # noqa: S101 (caller checked)
    row_id, pairs = parse_key(key)
    if row_id is not None:
        table = next((t for t in schema.entities() if t.metadata_id == row_id), None)
        name = row_id
    else:
        name = str(dict(pairs).get("LogicalName", ""))
        table = schema.entity(name)
    if table is None:
        raise DataverseError(404, NOT_FOUND, f"Could not find entity with name '{name}'.")
    return table


def metadata_response(
    schema: OrgSchema, segments: list[str], args: Mapping[str, str], root: str
) -> dict[str, Any]:
    """The JSON for ``EntityDefinitions…`` (``segments`` split on ``/``)."""
    context = f"{root}/$metadata#EntityDefinitions"
    expand = _split_expand(args["$expand"]) if "$expand" in args else {}
    if segments[0] == "EntityDefinitions":
        if len(segments) > 1:
            raise _no_segment(segments[1])
        select = args.get("$select")
        value = [_select(entity_json(t), select, "EntityMetadata") for t in schema.entities()]
        return {"@odata.context": context, "value": value}
    table = find_table(schema, segments[0])
    if len(segments) == 1:
        return {"@odata.context": f"{context}/$entity", **_entity(table, args, expand)}
    child, key = split_segment(segments[1])
    if child == "Keys" and key is None and len(segments) == 2:
        return {
            "@odata.context": f"{context}('{table.metadata_id}')/Keys",
            "value": [key_json(table, k) for k in table.keys],
        }
    if child != "Attributes" or len(segments) > 3:
        raise _no_segment(segments[1])
    cast = segments[2] if len(segments) == 3 else None
    items = _attributes(table, key, cast, args, expand)
    base = f"{context}('{table.metadata_id}')/Attributes"
    if key is not None:
        return {"@odata.context": f"{base}/{cast + '/' if cast else ''}$entity", **items[0]}
    return {"@odata.context": base, "value": items}


def _no_segment(segment: str) -> DataverseError:
    return DataverseError.odata(f"Resource not found for the segment '{segment}'.", 404)


def _no_property(name: str, type_name: str) -> DataverseError:
    return DataverseError.odata(
        f"Could not find a property named '{name}' on type '{_NS}{type_name}'."
    )


def _entity(
    table: EntityDef, args: Mapping[str, str], expand: dict[str, dict[str, str]]
) -> dict[str, Any]:
    item = _select(entity_json(table), args.get("$select"), "EntityMetadata")
    for name, options in expand.items():
        if name == "Attributes":
            item["Attributes"] = [
                _select(attribute_json(table, a), options.get("$select"), "AttributeMetadata")
                for a in table.attributes
            ]
        elif name == "Keys":
            item["Keys"] = [key_json(table, k) for k in table.keys]
        else:
            raise _no_property(name, "EntityMetadata")
    return item


def _attributes(
    table: EntityDef,
    key: str | None,
    cast: str | None,
    args: Mapping[str, str],
    expand: dict[str, dict[str, str]],
) -> list[dict[str, Any]]:
    if cast is not None and not cast.startswith(_NS):
        raise _no_segment(cast)
    kind = cast[len(_NS) :] if cast else None
    attrs = list(table.attributes)
    if key is not None:
        _, pairs = parse_key(key)
        name = str(dict(pairs).get("LogicalName", ""))
        attrs = [a for a in attrs if a.logical_name == name]
        if not attrs:
            raise DataverseError(
                404,
                NOT_FOUND,
                f"Could not find attribute '{name}' on entity '{table.logical_name}'.",
            )
    if kind is not None:
        matching = [a for a in attrs if _kind(a) == kind]
        if key is not None and not matching:
            raise DataverseError.odata(f"The attribute is not of type '{cast}'.", 404)
        attrs = matching
    items = []
    for attr in attrs:
        item = _select(attribute_json(table, attr), args.get("$select"), "AttributeMetadata")
        for name in expand:
            typed = kind is not None and attr.type in OPTION_TYPES
            if name not in ("OptionSet", "GlobalOptionSet") or not typed:
                raise _no_property(name, "AttributeMetadata")
            item[name] = option_set_json(table, attr) if name == "OptionSet" else None
        items.append(item)
    return items
