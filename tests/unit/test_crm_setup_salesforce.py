"""The Salesforce setup kit (``crm-setup/salesforce``, Salesforce DX source) against the three
other places that say what the Opportunity fields are: ``mappings/salesforce.yaml`` (which
fields, how long a value may be), the sandbox's simulated org (``PARTNER_FIELDS``: types,
lengths, external id, picklists) and docs/salesforce-setup.md. Any drift fails here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from connector.crm.salesforce.setup import KIT, SourceField, describe_field, read_fields
from connector.mapping import requirements
from connector.mapping_file import load_mapping_file
from sandbox.salesforce.schema import PARTNER_FIELDS

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_mapping_file(ROOT / "mappings" / "salesforce.yaml")
FIELDS = read_fields()
MD = "{http://soap.sforce.com/2006/04/metadata}"
# Metadata API type → describe type, and the describe length of a type without <length>
DESCRIBE_TYPES = {
    "Text": "string",
    "Url": "url",
    "Checkbox": "boolean",
    "DateTime": "datetime",
    "LongTextArea": "textarea",
    "Picklist": "picklist",
}
IMPLIED_LENGTH = {"Url": 255, "Picklist": 255}


def test_the_kit_is_where_the_command_reads_it_and_is_an_sfdx_project():
    assert KIT == ROOT / "crm-setup" / "salesforce"
    project = json.loads((KIT / "sfdx-project.json").read_text(encoding="utf-8"))
    (package,) = project["packageDirectories"]
    assert package["default"] is True
    assert (KIT / package["path"] / "main" / "default" / "objects" / "Opportunity").is_dir()
    assert (KIT / "README.md").is_file()


def test_the_kit_has_every_custom_field_the_mapping_names_and_no_other():
    named = {need.name for need in requirements(SPEC) if need.name.endswith("__c")}
    assert named == set(FIELDS)


def test_the_upsert_key_is_an_external_id_and_unique_case_insensitive():
    key = FIELDS[SPEC.key]
    assert (key.type, key.external_id, key.unique, key.case_sensitive) == (
        "Text",
        True,
        True,
        False,
    )
    assert [f.name for f in FIELDS.values() if f.external_id] == [SPEC.key]


@pytest.mark.parametrize("org_field", PARTNER_FIELDS, ids=lambda f: f.name)
def test_each_field_is_what_the_simulated_org_declares(org_field):
    source = FIELDS[org_field.name]
    assert DESCRIBE_TYPES[source.type] == org_field.type
    assert (source.length or IMPLIED_LENGTH.get(source.type, 0)) == org_field.length
    assert source.label == org_field.label
    assert (source.external_id, source.unique) == (org_field.external_id, org_field.unique)
    assert source.values == org_field.picklist
    assert source.restricted == org_field.restricted


def test_the_org_declares_no_partner_field_the_kit_lacks():
    assert {f.name for f in PARTNER_FIELDS} == set(FIELDS)


def test_the_mapping_never_truncates_to_more_than_a_field_holds():
    for field in SPEC.fields:
        source = FIELDS.get(field.crm)
        if source is None or field.length is None:
            continue
        limit = source.length or IMPLIED_LENGTH[source.type]
        assert field.length <= limit, field.crm


def test_the_permission_set_lets_the_integration_user_edit_every_field_and_see_every_opportunity():
    path = KIT / "force-app/main/default/permissionsets/Referral_Sync.permissionset-meta.xml"
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    editable = {
        p.findtext(f"{MD}field")
        for p in root.iter(f"{MD}fieldPermissions")
        if p.findtext(f"{MD}editable") == "true" and p.findtext(f"{MD}readable") == "true"
    }
    assert editable == {f"Opportunity.{name}" for name in FIELDS}
    objects = {p.findtext(f"{MD}object"): p for p in root.iter(f"{MD}objectPermissions")}
    assert set(objects) == {"Opportunity", "Account", "Contact"}
    for permissions in objects.values():
        for grant in ("allowRead", "allowCreate", "allowEdit"):
            assert permissions.findtext(f"{MD}{grant}") == "true"
        assert permissions.findtext(f"{MD}allowDelete") == "false"
    assert objects["Opportunity"].findtext(f"{MD}viewAllRecords") == "true"


def test_docs_describe_each_field_as_the_kit_defines_it():
    docs = (ROOT / "docs" / "salesforce-setup.md").read_text(encoding="utf-8")
    rows = {}
    for line in docs.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[0].endswith("__c`"):
            rows[cells[0].strip("`")] = cells[1].replace("**", "")
    assert set(rows) == set(FIELDS)
    for name, source in FIELDS.items():
        assert rows[name].startswith(describe_field(source)), name


def test_a_missing_field_is_described_the_way_setup_names_its_type():
    assert describe_field(FIELDS[SPEC.key]) == "Text(100), External ID, Unique"
    notes = SourceField(name="N__c", type="LongTextArea", label="N", length=32768)
    assert describe_field(notes) == "Long Text Area(32768)"
    assert read_fields(ROOT / "no-such-kit") == {}
