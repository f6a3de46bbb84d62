"""Mapping files are validated when loaded: every problem is named with file, path and why."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.errors import ConfigError
from connector.mapping import Owner, Transform, parse_mapping
from connector.mapping_file import default_mapping_path, load_mapping_file
from connector.model import Lifecycle

SALESFORCE = default_mapping_path("salesforce")


def salesforce_raw() -> dict[str, Any]:
    return yaml.safe_load(SALESFORCE.read_text(encoding="utf-8"))


def problems(raw: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_mapping(raw, "test.yaml")
    assert all(p.source == "test.yaml" for p in caught.value.problems)
    return {p.key: p.message for p in caught.value.problems}


@pytest.mark.parametrize("crm", ["salesforce", "dynamics"])
def test_the_shipped_mappings_load_and_cover_every_lifecycle(crm: str):
    spec = load_mapping_file(default_mapping_path(crm))

    assert spec.crm == crm
    for lifecycle in Lifecycle.all():
        if lifecycle != Lifecycle.UNSET:
            assert spec.lifecycle.stage_on_create(lifecycle) is not None
    assert {f.partner for f in spec.owned_by(Owner.CRM)} == {
        "deal_value",
        "currency",
        "close_date",
        "partner_notes",
    }


def test_the_salesforce_mapping_reads_back_only_what_the_crm_owns():
    spec = load_mapping_file(SALESFORCE)

    assert spec.read_fields() == (
        "Amount",
        "CurrencyIsoCode",
        "CloseDate",
        "Description",
        "StageName",
        "Decline_Reason__c",
        "Loss_Reason__c",
    )
    assert spec.key == "Partner_Center_Referral_Id__c"


def test_a_status_entry_covers_its_substatuses_and_a_specific_one_wins_in_any_order():
    raw = salesforce_raw()
    raw["lifecycle"]["on_create"] = {
        "New/Received": "Needs Analysis",  # before the general entry: still wins
        "New": "Prospecting",
        **{k: v for k, v in raw["lifecycle"]["on_create"].items() if k != "New"},
    }
    raw["lifecycle"]["not_accepted"] = ["Prospecting", "Needs Analysis"]

    spec = parse_mapping(raw, "test.yaml")

    assert spec.lifecycle.stage_on_create(Lifecycle.parse("New", "Pending")) == "Prospecting"
    assert spec.lifecycle.stage_on_create(Lifecycle.parse("New", "Received")) == "Needs Analysis"


def test_every_problem_is_reported_at_once_with_its_path():
    raw = salesforce_raw()
    raw["version"] = 7
    raw["colour"] = "blue"
    raw["fields"]["Name"]["source"] = "customer.shoe_size"
    raw["fields"]["Amount"]["owner"] = "microsoft"
    raw["fields"]["Microsoft_Notes__c"].pop("length")
    raw["fields"]["Partner_Center_Status__c"]["partner"] = "deal_value"
    raw["lifecycle"]["on_create"].pop("Closed/Expired")

    found = problems(raw)

    assert set(found) == {
        "version",
        "colour",
        "fields.Name.source",
        "fields.Amount.owner",
        "fields.Microsoft_Notes__c.length",
        "fields.Partner_Center_Status__c.partner",
        "lifecycle.on_create",
    }
    assert "customer.name" in found["fields.Name.source"]  # the known sources are listed
    assert "partner_center" in found["fields.Amount.owner"]
    assert "truncate needs" in found["fields.Microsoft_Notes__c.length"]
    assert "only a field the CRM owns" in found["fields.Partner_Center_Status__c.partner"]
    assert "Closed/Expired" in found["lifecycle.on_create"]


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (lambda r: r["fields"]["Name"].update(constant="x"), "fields.Name", "exactly one of"),
        (
            lambda r: r["fields"]["Name"].update(transform="shout"),
            "fields.Name.transform",
            "one of",
        ),
        (lambda r: r["fields"]["Name"].update(length=0), "fields.Name.length", "≥ 1"),
        (
            lambda r: r["fields"]["Partner_Center_Link__c"].update(template="x/{nope}"),
            "fields.Partner_Center_Link__c.template",
            "{nope}",
        ),
        (
            lambda r: r["fields"]["Partner_Center_Link__c"].update(template="x/{id"),
            "fields.Partner_Center_Link__c.template",
            "not a valid template",
        ),
        (
            lambda r: r["fields"].update(
                Probability={
                    "source": "deal.value",
                    "owner": "crm",
                    "transform": "decimal",
                    "partner": "deal_value",
                }
            ),
            "fields.Probability.partner",
            "read back from Amount already",
        ),
        (
            lambda r: r["fields"]["Amount"].update(transform="date"),
            "fields.Amount.transform",
            "deal_value is read back with decimal",
        ),
        (
            lambda r: r["fields"].update(
                Partner_Center_Referral_Id__c={"source": "id", "owner": "partner_center"}
            ),
            "fields.Partner_Center_Referral_Id__c",
            "is the key",
        ),
        (
            lambda r: r["fields"].update(StageName={"source": "status", "owner": "crm"}),
            "fields.StageName",
            "lifecycle field",
        ),
        (lambda r: r["lifecycle"].update(won=["Closed Lost"]), "lifecycle.lost", "shares"),
        (lambda r: r["lifecycle"].update(won="Closed Won"), "lifecycle.won", "non-empty list"),
        (
            lambda r: r["lifecycle"].update(closed_by_partner_center="Prospecting"),
            "lifecycle.closed_by_partner_center",
            "lost stages",
        ),
        (
            lambda r: r["lifecycle"]["on_create"].update({"Closed/Won": "Prospecting"}),
            "lifecycle.on_create.Closed/Won",
            "not a won stage",
        ),
        (
            lambda r: r["lifecycle"]["on_create"].update({"Active/Accepted": "Closed Won"}),
            "lifecycle.on_create.Active/Accepted",
            "not an accepted stage",
        ),
        (
            lambda r: r["lifecycle"]["on_create"].update({"Pending": "Prospecting"}),
            "lifecycle.on_create.Pending",
            "not a status",
        ),
        (lambda r: r["lifecycle"].update(accept_notes=""), "lifecycle.accept_notes", "non-empty"),
        (lambda r: r.update(crm="hubspot"), "crm", "salesforce, dynamics"),
        (lambda r: r.update(close_date_default_days=0), "close_date_default_days", "1 to 3650"),
        (lambda r: r.update(fields={}), "fields", "maps no field"),
        (lambda r: r.update(key=""), "key", "non-empty text"),
    ],
)
def test_a_bad_mapping_names_the_path_and_the_problem(change, path, fragment):
    raw = copy.deepcopy(salesforce_raw())
    change(raw)

    found = problems(raw)

    assert path in found, found
    assert fragment in found[path]


def test_a_file_that_is_not_a_table_is_refused():
    assert "(file)" in problems(["a", "list"])


def test_yaml_syntax_errors_name_the_line(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nfields:\n  Name: {source: name\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_mapping_file(path)

    [problem] = caught.value.problems
    assert problem.source == str(path)
    assert problem.key.startswith("line ")
    assert "not valid YAML" in problem.message


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        load_mapping_file(tmp_path / "nope.yaml")

    assert str(tmp_path / "nope.yaml") in str(caught.value)


def test_the_transform_defaults_to_text():
    raw = salesforce_raw()
    raw["fields"]["Partner_Center_Engagement_Id__c"] = {
        "source": "engagement_id",
        "owner": "partner_center",
    }

    spec = parse_mapping(raw, "test.yaml")

    [field] = [f for f in spec.fields if f.crm == "Partner_Center_Engagement_Id__c"]
    assert field.transform is Transform.TEXT
