"""Applying the shipped Salesforce mapping: referral → write, CRM change → partner update."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from builders import ACTIVE, DECLINED, EXPIRED, NEW, REFERRAL_ID, WON, referral

from connector.errors import MappingError
from connector.mapping import (
    Decision,
    created_partner_values,
    decide,
    inbound_fingerprint,
    map_referral,
    outbound_fingerprint,
    read_change,
    seeded_partner_values,
)
from connector.mapping_file import default_mapping_path, load_mapping_file
from connector.model import Action, Deal
from connector.ports import OpportunityChange

SF = load_mapping_file(default_mapping_path("salesforce"))
DV = load_mapping_file(default_mapping_path("dynamics"))
CRM_ID = "006000000000001AAA"


def change(**fields: Any) -> OpportunityChange:
    base: dict[str, Any] = {
        "Amount": Decimal("25000.00"),
        "CurrencyIsoCode": "USD",
        "CloseDate": date(2026, 9, 30),
        "Description": None,
        "StageName": "Prospecting",
        "Decline_Reason__c": None,
        "Loss_Reason__c": None,
    }
    return OpportunityChange(
        crm_id=CRM_ID,
        key=REFERRAL_ID,
        fields={**base, **fields},
        modified_at=datetime(2026, 5, 4, tzinfo=UTC),
    )


def decision(current=None, **fields: Any) -> Decision:
    current = current or referral(external_reference_id=CRM_ID)
    return decide(read_change(change(**fields), SF), current, SF)


# -- inbound -----------------------------------------------------------------------------------


def test_a_create_writes_every_mapped_field_and_the_starting_stage():
    mapped = map_referral(referral(), SF, create=True)

    assert mapped.write.key == REFERRAL_ID
    assert mapped.write.fields == {
        "Name": "Contoso ERP migration",
        "Partner_Center_Engagement_Id__c": "e0e0e0e0-0000-4000-8000-000000000001",
        "Partner_Center_Status__c": "New/Pending",
        "Partner_Center_Link__c": f"https://partner.microsoft.com/dashboard/referrals/v2/{REFERRAL_ID}",
        "Partner_Center_Hot__c": False,
        "Partner_Center_Expires__c": datetime(2026, 5, 16, 9, 30, tzinfo=UTC),
        "Microsoft_Notes__c": "Customer wants a demo in June.",
        "Amount": Decimal(25000),
        "CurrencyIsoCode": "USD",
        "CloseDate": date(2026, 9, 30),
        "Description": None,
        "StageName": "Prospecting",
    }
    assert mapped.write.account is not None
    assert mapped.write.account.name == "Contoso Ltd"
    assert mapped.write.account.postal_code == "98052"
    assert [c.email for c in mapped.write.contacts] == ["ada.ng@contoso.example"]
    assert mapped.warnings == ()


def test_an_update_writes_only_what_partner_center_owns_so_crm_edits_survive():
    mapped = map_referral(referral(lifecycle=ACTIVE), SF, create=False)

    assert not {"Amount", "CurrencyIsoCode", "CloseDate", "Description", "StageName"} & set(
        mapped.write.fields
    )
    assert mapped.write.fields["Partner_Center_Status__c"] == "Active/Accepted"


def test_an_update_writes_the_stage_only_when_told_to():
    mapped = map_referral(referral(lifecycle=EXPIRED), SF, create=False, stage="Closed Lost")

    assert mapped.write.fields["StageName"] == "Closed Lost"


@pytest.mark.parametrize(
    ("lifecycle", "stage"),
    [
        (NEW, "Prospecting"),
        (ACTIVE, "Qualification"),
        (WON, "Closed Won"),
        (DECLINED, "Closed Lost"),
    ],
)
def test_the_starting_stage_follows_the_lifecycle_table(lifecycle, stage):
    assert (
        map_referral(referral(lifecycle=lifecycle), SF, create=True).write.fields["StageName"]
        == stage
    )


def test_no_close_date_means_created_plus_the_default_days():
    mapped = map_referral(referral(deal=Deal(value=Decimal(0))), SF, create=True)

    assert mapped.write.fields["CloseDate"] == date(2026, 7, 31)  # 2 May + 90 days


def test_a_long_name_is_cut_to_the_field_length_with_a_warning():
    mapped = map_referral(referral(name="x" * 130), SF, create=True)

    assert mapped.write.fields["Name"] == "x" * 120
    assert mapped.warnings == ("Name: cut from 130 to 120 characters",)


def test_no_referral_name_falls_back_to_the_customer_name():
    assert map_referral(referral(name=None), SF, create=True).write.fields["Name"] == "Contoso Ltd"


@pytest.mark.parametrize(
    ("spec", "inbound", "outbound"),
    [
        (SF, "1d030f75b5be612f7e482adeb8321cd3", "136d4a371b11b6a0afc06b4cee71d47e"),
        (DV, "133890f98eeb503151ce7109fbd619c5", "7d42b755026f1d2209d0180d7a5c27fe"),
    ],
    ids=["salesforce", "dynamics"],
)
def test_fingerprints_are_those_earlier_releases_stored(spec, inbound, outbound):
    # State databases hold these digests: a change would re-write every record once.
    assert inbound_fingerprint(referral(), spec) == inbound
    assert outbound_fingerprint(created_partner_values(referral(), spec), spec) == outbound


def test_the_inbound_fingerprint_moves_with_partner_center_fields_only():
    base = inbound_fingerprint(referral(), SF)

    assert inbound_fingerprint(referral(), SF) == base
    assert inbound_fingerprint(referral(deal=Deal(value=Decimal(1))), SF) == base
    assert inbound_fingerprint(referral(microsoft_notes="new note"), SF) != base
    assert inbound_fingerprint(referral(lifecycle=EXPIRED), SF) != base
    assert inbound_fingerprint(referral(etag='"other"'), SF) == base


# -- outbound ----------------------------------------------------------------------------------


def test_reading_back_our_own_create_has_the_fingerprint_we_recorded():
    created = map_referral(referral(), SF, create=True).write.fields
    recorded = outbound_fingerprint(
        {**seeded_partner_values(referral(), SF), "StageName": "Prospecting"}, SF
    )

    assert outbound_fingerprint(created, SF) == recorded
    assert read_change(change(), SF).fingerprint == recorded  # 25000.00 reads as 25000
    assert read_change(change(Amount=Decimal(30000)), SF).fingerprint != recorded
    assert read_change(change(Loss_Reason__c="Price"), SF).fingerprint != recorded


def test_nothing_changed_sends_nothing():
    assert decision() == Decision()


def test_an_edit_sends_only_the_changed_owned_fields():
    [update] = decision(
        current=referral(lifecycle=ACTIVE, external_reference_id=CRM_ID), Amount=Decimal(30000)
    ).updates

    assert update.action is Action.EDIT
    assert (update.deal_value, update.currency, update.close_date) == (Decimal(30000), None, None)


def test_the_crm_id_goes_to_partner_center_when_it_lacks_it():
    [update] = decision(current=referral()).updates

    assert update.external_reference_id == CRM_ID


def test_moving_past_the_not_accepted_stage_accepts_with_default_notes():
    [update] = decision(StageName="Needs Analysis").updates

    assert update.action is Action.ACCEPT
    assert update.partner_notes == "Accepted in Salesforce."


def test_accepting_without_a_value_names_the_crm_field_to_fill():
    current = referral(deal=Deal(value=Decimal(0), currency="USD"), external_reference_id=CRM_ID)

    with pytest.raises(MappingError) as caught:
        decision(current=current, StageName="Qualification", Amount=None, CloseDate=None)

    assert caught.value.field == "Amount"
    assert "fill Amount, CloseDate in the CRM" in str(caught.value)


def test_won_straight_from_new_accepts_first_then_wins():
    accept, win = decision(StageName="Closed Won", Amount=Decimal(40000)).updates

    assert (accept.action, accept.deal_value) == (Action.ACCEPT, Decimal(40000))
    assert (win.action, win.deal_value) == (Action.WIN, None)


def test_lost_while_new_is_a_decline_with_the_decline_reason():
    [update] = decision(StageName="Closed Lost", Decline_Reason__c="Not a fit").updates

    assert (update.action, update.reason) == (Action.DECLINE, "Not a fit")


def test_a_decline_without_a_reason_says_which_field_to_fill():
    with pytest.raises(MappingError) as caught:
        decision(StageName="Closed Lost")

    assert caught.value.field == "Decline_Reason__c"
    assert "Decline_Reason__c or Loss_Reason__c" in str(caught.value)


def test_lost_while_active_is_lost_with_the_loss_reason():
    active = referral(lifecycle=ACTIVE, external_reference_id=CRM_ID)

    [update] = decision(current=active, StageName="Closed Lost", Loss_Reason__c="Price").updates

    assert (update.action, update.reason) == (Action.LOSE, "Price")


def test_going_back_before_acceptance_is_a_logged_conflict_and_partner_center_stays_active():
    active = referral(lifecycle=ACTIVE, external_reference_id=CRM_ID)

    result = decision(current=active, StageName="Prospecting", Amount=Decimal(1))

    assert result.conflict is not None
    assert [u.action for u in result.updates] == [Action.EDIT]


@pytest.mark.parametrize(
    ("closed", "stage", "conflict"),
    [
        (WON, "Closed Won", False),
        (EXPIRED, "Closed Lost", False),
        (WON, "Closed Lost", True),
        (DECLINED, "Qualification", True),
    ],
)
def test_a_closed_referral_is_terminal_and_only_a_disagreement_is_a_conflict(
    closed, stage, conflict
):
    result = decision(current=referral(lifecycle=closed), StageName=stage, Amount=Decimal(9))

    assert result.updates == ()
    assert (result.conflict is not None) is conflict


def test_a_currency_the_model_refuses_is_a_mapping_error_naming_the_field():
    with pytest.raises(MappingError) as caught:
        read_change(change(CurrencyIsoCode="US$"), SF)

    assert caught.value.field == "CurrencyIsoCode"


def test_a_referral_is_not_changed_by_mapping_it():
    original = referral()
    copy = dataclasses.replace(original)

    map_referral(original, SF, create=True)

    assert original == copy
