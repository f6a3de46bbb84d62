"""DynamicsAdapter against `responses`: metadata-typed reads (choice labels, deletions) and
per-row outcomes from one recorded $batch answer."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses
from fakes import FakeClock

from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.client import DynamicsClient
from connector.errors import StateError
from connector.http.retry import RetryPolicy
from connector.http.session import build_session
from connector.ports import OpportunityWrite

BASE = "https://contoso.crm.dynamics.com/api/data/v9.2"
ENTITY = f"{BASE}/EntityDefinitions(LogicalName='opportunity')"
CAST = f"{ENTITY}/Attributes/Microsoft.Dynamics.CRM."
DATA = Path(__file__).parents[1] / "data" / "dynamics"


class Tokens:
    def token(self) -> str:
        return "t"

    def refresh(self) -> str:
        return "t"


def label(text: str) -> dict[str, Any]:
    return {"UserLocalizedLabel": {"Label": text, "LanguageCode": 1033}}


def attribute(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "LogicalName": name,
        "AttributeType": kind,
        "IsValidForCreate": True,
        "IsValidForUpdate": True,
        **extra,
    }


def stub_metadata() -> None:
    responses.get(
        ENTITY,
        json={
            "LogicalName": "opportunity",
            "ChangeTrackingEnabled": True,
            "Attributes": [
                attribute("opportunityid", "Uniqueidentifier"),
                attribute("rs_partnercenterreferralid", "String"),
                attribute("name", "String"),
                attribute("modifiedon", "DateTime", IsValidForCreate=False),
                attribute("estimatedclosedate", "DateTime"),
                attribute("estimatedvalue", "Money"),
                attribute("statuscode", "Status"),
                attribute("rs_declinereason", "Picklist"),
            ],
            "Keys": [
                {"LogicalName": "k", "KeyAttributes": ["rs_partnercenterreferralid"]},
            ],
        },
    )
    responses.get(
        f"{CAST}DateTimeAttributeMetadata",
        json={
            "value": [
                {"LogicalName": "modifiedon", "Format": "DateAndTime"},
                {"LogicalName": "estimatedclosedate", "DateTimeBehavior": {"Value": "DateOnly"}},
            ]
        },
    )
    responses.get(
        f"{CAST}PicklistAttributeMetadata",
        json={
            "value": [
                {
                    "LogicalName": "rs_declinereason",
                    "OptionSet": {
                        "Options": [
                            {"Value": 100000000, "Label": label("Not a fit")},
                            {"Value": 100000001, "Label": label("No capacity")},
                        ]
                    },
                }
            ]
        },
    )
    responses.get(
        f"{CAST}StatusAttributeMetadata",
        json={
            "value": [
                {
                    "LogicalName": "statuscode",
                    "OptionSet": {
                        "Options": [
                            {"Value": 1, "Label": label("In Progress"), "State": 0},
                            {"Value": 2, "Label": label("On Hold"), "State": 0},
                            {"Value": 3, "Label": label("Won"), "State": 1},
                            {"Value": 4, "Label": label("Canceled"), "State": 2},
                        ]
                    },
                }
            ]
        },
    )


def adapter(**options: Any) -> DynamicsAdapter:
    clock = FakeClock()
    client = DynamicsClient(
        Tokens(),
        base_url=BASE,
        session=build_session(),
        retry=RetryPolicy(max_attempts=2, jitter=0),
        sleep=clock.sleep,
        clock=clock,
    )
    return DynamicsAdapter(client, **options)


@responses.activate
def test_a_delta_page_gives_typed_values_choice_labels_and_deletions():
    stub_metadata()
    delta = "https://contoso.crm.dynamics.com/api/data/v9.2/opportunities?$deltatoken=1"
    responses.get(delta, json=json.loads((DATA / "delta_page.json").read_text("utf-8")))

    [page] = list(adapter().changes_since({"delta_link": delta}))

    changed, deleted = page.changes
    assert changed.key == "ref-1"
    assert changed.fields["statuscode"] == 4
    assert changed.fields["rs_declinereason"] == "No capacity"
    assert changed.modified_at.isoformat() == "2026-03-02T10:00:00+00:00"
    assert (deleted.crm_id, deleted.deleted, deleted.key) == (
        "5b2a9e55-0000-4000-8000-000000000002",
        True,
        None,
    )
    assert page.cursor["delta_link"].endswith("5000011%2103%2f02%2f2026%2010%3a00%3a00")
    sent = responses.calls[-1].request
    assert "odata.track-changes" in sent.headers["Prefer"]


@responses.activate
def test_the_first_poll_asks_for_change_tracking_with_only_the_columns_needed():
    stub_metadata()
    responses.get(f"{BASE}/opportunities", json={"value": [], "@odata.deltaLink": f"{BASE}/d"})

    [page] = list(adapter(read_fields=("statuscode", "nosuchcolumn")).changes_since(None))

    assert page.cursor == {"delta_link": f"{BASE}/d"}
    sent = responses.calls[-1].request
    assert "%24select=opportunityid%2Crs_partnercenterreferralid%2Cmodifiedon%2Cstatuscode" in (
        sent.url or ""
    )
    assert sent.headers["Prefer"] == "odata.track-changes, odata.maxpagesize=1000"


def test_an_unreadable_cursor_is_a_state_error():
    with pytest.raises(StateError):
        list(adapter().changes_since({"delta_link": 42}))


@responses.activate
def test_outcomes_follow_the_batch_answers_row_by_row():
    stub_metadata()
    responses.post(
        f"{BASE}/$batch",
        body=(DATA / "batch_upsert_response.txt").read_bytes(),
        content_type="multipart/mixed; boundary=batchresponse_7d6b0a5c-1e1f-4c3e-9d6b-0a5c1e1f4c3e",
    )
    fields = {"name": "x", "statuscode": 2, "estimatedclosedate": date(2026, 1, 31)}
    writes = [
        OpportunityWrite(key="a", fields=fields),
        OpportunityWrite(key="b", fields={**fields, "name": "y" * 301}),
        OpportunityWrite(key="nope", fields={**fields, "statuscode": 9}),
        OpportunityWrite(key="c", fields={**fields, "estimatedvalue": Decimal("10.5")}),
    ]

    outcomes = adapter().upsert(writes)

    assert [o.action for o in outcomes] == ["created", "failed", "failed", "updated"]
    assert outcomes[0].crm_id == "5b2a9e55-0000-4000-8000-000000000001"
    assert "'name'" in (outcomes[1].reason or "")
    assert "statuscode" in (outcomes[2].reason or "")
    sent = responses.calls[-1].request.body
    assert isinstance(sent, bytes)
    text = sent.decode()
    assert text.count("PATCH ") == 3  # the refused status reason never left
    assert "opportunities(rs_partnercenterreferralid='a')" in text
    assert '"estimatedclosedate": "2026-01-31"' in text
    assert '"estimatedvalue": 10.5' in text
