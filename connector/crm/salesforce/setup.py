"""The Salesforce half of the CRM setup kit: the Opportunity fields as Salesforce DX source
(``crm-setup/salesforce/``, deployed with ``sf project deploy start``), read back so that
``referral-sync crm-setup check`` can say what a missing field must be.

Only our own files are parsed here (the kit shipped beside the package), never anything a
server sent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # parses only the kit's own files  # nosec B405
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KIT", "SourceField", "describe_field", "read_fields"]

KIT = Path(__file__).resolve().parents[3] / "crm-setup" / "salesforce"
"""``crm-setup/salesforce`` beside the package (the project root, or /app in the image)."""
FIELDS = Path("force-app/main/default/objects/Opportunity/fields")
_MD = "{http://soap.sforce.com/2006/04/metadata}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceField:
    """One ``<CustomField>`` of the kit, as its XML says."""

    name: str
    type: str  # Text, Url, Checkbox, DateTime, LongTextArea, Picklist
    label: str
    length: int | None = None
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    restricted: bool = False
    values: tuple[str, ...] = ()


def read_fields(kit: Path = KIT) -> dict[str, SourceField]:
    """Every Opportunity field of the kit by API name; empty if the kit is not there."""
    directory = kit / FIELDS
    if not directory.is_dir():
        return {}
    fields = (_parse(path) for path in sorted(directory.glob("*.field-meta.xml")))
    return {f.name: f for f in fields}


def describe_field(field: SourceField) -> str:
    """The field as Setup names it: ``Text(100), External ID, Unique``."""
    kinds = {"LongTextArea": "Long Text Area", "DateTime": "Date/Time", "Url": "URL"}
    shown = kinds.get(field.type, field.type)
    if field.length is not None and field.type in ("Text", "LongTextArea"):
        shown += f"({field.length})"
    if field.values:
        shown += (", restricted" if field.restricted else "") + ": " + ", ".join(field.values)
    flags = [
        flag
        for flag, on in (
            ("External ID", field.external_id),
            ("Unique", field.unique),
            ("case-sensitive", field.case_sensitive),
        )
        if on
    ]
    return ", ".join([shown, *flags])


def _parse(path: Path) -> SourceField:
    root = ET.parse(path).getroot()  # noqa: S314 - the kit's own file  # nosec B314

    def text(name: str) -> str | None:
        node = root.find(f"{_MD}{name}")
        return node.text.strip() if node is not None and node.text else None

    value_set = root.find(f"{_MD}valueSet")
    values: tuple[str, ...] = ()
    restricted = False
    if value_set is not None:
        restricted = (value_set.findtext(f"{_MD}restricted") or "").strip() == "true"
        values = tuple(
            (v.findtext(f"{_MD}fullName") or "").strip() for v in value_set.iter(f"{_MD}value")
        )
    length = text("length")
    return SourceField(
        name=text("fullName") or path.name.removesuffix(".field-meta.xml"),
        type=text("type") or "",
        label=text("label") or "",
        length=int(length) if length else None,
        external_id=text("externalId") == "true",
        unique=text("unique") == "true",
        case_sensitive=text("caseSensitive") == "true",
        restricted=restricted,
        values=values,
    )
