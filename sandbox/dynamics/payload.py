"""A JSON request body → column changes for :meth:`RowStore.write`.

``"<nav>@odata.bind": "/accounts(<guid>)"`` sets a lookup through its single-valued navigation
property (``parentaccountid``, ``transactioncurrencyid``, ``customerid_account`` /
``customerid_contact`` for the Customer column); the target may be named by alternate key.
Writing ``_x_value`` directly is refused as the real API does ("CRM do not support direct update
of Entity Reference properties, Use Navigation properties instead."), so is an annotation on an
undeclared property, and a primitive where a navigation property is expected. ``@odata.type``
and other instance annotations are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sandbox.dynamics.errors import BAD_PAYLOAD, DataverseError
from sandbox.dynamics.refs import EntityRef, parse_bind
from sandbox.dynamics.schema import LOOKUP_TYPES, EntityDef
from sandbox.dynamics.store import Lookup

__all__ = ["Resolver", "parse_body"]

Resolver = Callable[[EntityRef], Lookup]
"""Turns a bound reference into the row it names (404 ``0x80040217`` if there is none)."""

BIND = "@odata.bind"


def parse_body(
    table: EntityDef, body: Mapping[str, object], resolve: Resolver, service_root: str
) -> dict[str, object]:
    changes: dict[str, object] = {}
    for key, value in body.items():
        if key.startswith("@"):
            continue
        if key.endswith(BIND):
            nav = key[: -len(BIND)]
            found = table.navigation(nav)
            if found is None:
                raise DataverseError.odata(
                    f"An undeclared property '{nav}' which only has property annotations in the "
                    "payload but no property value was found in the payload. In OData, only "
                    "declared navigation properties and declared named streams can be "
                    "represented as properties without values."
                )
            attr, target = found
            if value is None:
                changes[attr.logical_name] = None
                continue
            ref = parse_bind(value, service_root)
            lookup = resolve(ref)
            if lookup.table != target:
                raise DataverseError.odata(
                    f"The navigation property '{nav}' expects a reference to '{target}', "
                    f"not to '{lookup.table}'."
                )
            changes[attr.logical_name] = lookup
            continue
        if "@" in key:
            continue  # instance annotations on a property (e.g. OData.Community…FormattedValue)
        by_value = table.by_value_name(key)
        if by_value is not None and by_value.type in LOOKUP_TYPES:
            raise DataverseError(
                400,
                BAD_PAYLOAD,
                "CRM do not support direct update of Entity Reference properties, Use "
                "Navigation properties instead.",
            )
        column = table.attribute(key)
        if column is not None and column.type in LOOKUP_TYPES:
            if value is not None:
                raise DataverseError.odata(
                    "A 'PrimitiveValue' node with non-null value was found when trying to read "
                    f"the value of the navigation property '{key}'; however, a 'StartArray' "
                    "node, a 'StartObject' node, or a 'PrimitiveValue' node with null value was "
                    "expected."
                )
            changes[key] = None
            continue
        if column is None:
            raise DataverseError.unknown_property(key, table.logical_name)
        changes[key] = value
    return changes
