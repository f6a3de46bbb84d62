"""The CRM adapter contract: what every ``CrmAdapter`` does, written once.

Each test runs against every implementation (the ``crm`` fixture in this folder's conftest):
the in-memory fake and each real adapter against its simulator. Vendor names come from the
harness's vocabulary; the tests name no CRM field.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from connector.errors import RateLimited
from connector.ports import (
    AccountRef,
    ContactRef,
    FieldRequirement,
    OpportunityChange,
    OpportunityWrite,
)
from contract.crm_harness import CrmHarness

MAX_PAGES = 50  # the suite never holds more than a few hundred opportunities


def write(crm: CrmHarness, key: str, name: str | None = None, **options: Any) -> OpportunityWrite:
    fields = crm.vocabulary.fields(name or f"Deal {key}", **options)
    return OpportunityWrite(key=key, fields=fields)


def drain(
    crm: CrmHarness, cursor: Mapping[str, Any] | None
) -> tuple[list[OpportunityChange], Mapping[str, Any] | None]:
    """Every change since ``cursor``, and the cursor after the last page."""
    changes: list[OpportunityChange] = []
    for number, page in enumerate(crm.adapter.changes_since(cursor), start=1):
        if number > MAX_PAGES:
            pytest.fail(f"changes_since gave more than {MAX_PAGES} pages: it never ends")
        changes.extend(page.changes)
        cursor = page.cursor
    return changes, cursor


def ids(changes: Iterable[OpportunityChange]) -> Counter[str]:
    return Counter(change.crm_id for change in changes)


def mentions(reason: str | None, field: str) -> bool:
    return reason is not None and re.search(rf"\b{re.escape(field)}\b", reason) is not None


# -- upsert ------------------------------------------------------------------------------------


def test_upsert_twice_creates_one_opportunity(crm: CrmHarness):
    v = crm.vocabulary
    [first] = crm.adapter.upsert([write(crm, "ref-1", amount=Decimal(1000))])
    [second] = crm.adapter.upsert([write(crm, "ref-1", amount=Decimal(2500))])

    assert (first.action, second.action) == ("created", "updated")
    assert first.crm_id is not None
    assert second.crm_id == first.crm_id
    stored = crm.opportunities()
    assert list(stored) == ["ref-1"]
    assert stored["ref-1"].crm_id == first.crm_id
    assert stored["ref-1"].fields[v.amount] == Decimal(2500)


def test_a_create_of_a_key_that_exists_writes_nothing_and_answers_exists(crm: CrmHarness):
    v = crm.vocabulary
    [first] = crm.adapter.upsert([write(crm, "ref-1", amount=Decimal(1000))])
    assert first.crm_id is not None
    crm.edit(first.crm_id, **{v.amount: Decimal(2500), v.stage: v.stages[1]})
    create = replace(write(crm, "REF-1", amount=Decimal(1000)), create=True)

    outcomes = crm.adapter.upsert([create, replace(write(crm, "ref-2"), create=True)])

    assert [(o.key, o.action) for o in outcomes] == [("REF-1", "exists"), ("ref-2", "created")]
    assert not outcomes[0].failed
    stored = crm.opportunities()
    assert sorted(stored) == ["ref-1", "ref-2"]
    assert stored["ref-1"].fields[v.amount] == Decimal(2500)
    assert stored["ref-1"].fields[v.stage] == v.stages[1]


def test_a_batch_of_creates_sent_twice_creates_each_opportunity_once(crm: CrmHarness):
    creates = [replace(write(crm, f"ref-{i}"), create=True) for i in range(5)]
    first = crm.adapter.upsert(creates)

    again = crm.adapter.upsert(creates)  # the first reply was lost: the batch is repeated

    assert {o.action for o in first} == {"created"}
    assert {o.action for o in again} == {"exists"}
    assert len(crm.opportunities()) == 5


def test_keys_that_differ_only_in_case_are_one_opportunity(crm: CrmHarness):
    [first] = crm.adapter.upsert([write(crm, "4a7e-ABC")])
    [second] = crm.adapter.upsert([write(crm, "4a7e-abc")])

    assert second.action == "updated"
    assert second.crm_id == first.crm_id
    assert len(crm.opportunities()) == 1


def test_a_batch_with_invalid_rows_writes_the_rest_and_reports_each_refusal(crm: CrmHarness):
    v = crm.vocabulary
    writes = [write(crm, f"ref-{i:03}", amount=Decimal(i)) for i in range(450)]
    no_name = {k: x for k, x in writes[7].fields.items() if k != v.name}
    writes[7] = OpportunityWrite(key="ref-007", fields=no_name)
    writes[201] = OpportunityWrite(key="ref-201", fields={**writes[201].fields, v.stage: "Nope"})
    too_long = "x" * (v.name_max + 1)
    writes[449] = OpportunityWrite(key="ref-449", fields={**writes[449].fields, v.name: too_long})

    outcomes = crm.adapter.upsert(writes)

    assert [o.key for o in outcomes] == [w.key for w in writes]
    failed = {o.key: o.reason for o in outcomes if o.failed}
    assert list(failed) == ["ref-007", "ref-201", "ref-449"]
    assert mentions(failed["ref-007"], v.name), failed["ref-007"]
    assert mentions(failed["ref-201"], v.stage), failed["ref-201"]
    assert mentions(failed["ref-449"], v.name), failed["ref-449"]
    assert all(o.crm_id is None for o in outcomes if o.failed)
    written = [o for o in outcomes if not o.failed]
    assert {o.action for o in written} == {"created"}
    assert len({o.crm_id for o in written}) == 447
    stored = crm.opportunities()
    assert set(stored) == {o.key for o in written}
    for w, outcome in zip(writes, outcomes, strict=True):
        if outcome.failed:
            continue
        assert stored[w.key].crm_id == outcome.crm_id
        assert {k: stored[w.key].fields.get(k) for k in w.fields} == dict(w.fields)


# -- accounts and contacts ---------------------------------------------------------------------


def test_writes_for_the_same_customer_share_one_account(crm: CrmHarness):
    contoso = AccountRef(name="Contoso Ltd", postal_code="98052", city="Redmond", country="US")
    elsewhere = AccountRef(name="Contoso Ltd", postal_code="10001", city="New York")
    writes = [
        OpportunityWrite(key="ref-1", fields=crm.vocabulary.fields("A"), account=contoso),
        OpportunityWrite(key="ref-2", fields=crm.vocabulary.fields("B"), account=contoso),
        OpportunityWrite(key="ref-3", fields=crm.vocabulary.fields("C"), account=elsewhere),
    ]

    crm.adapter.upsert(writes)
    crm.adapter.upsert(writes)

    stored = crm.opportunities()
    assert stored["ref-1"].account_id is not None
    assert stored["ref-1"].account_id == stored["ref-2"].account_id
    assert stored["ref-3"].account_id not in (None, stored["ref-1"].account_id)
    assert stored["ref-1"].account == contoso
    assert stored["ref-3"].account == elsewhere
    assert crm.account_count() == 2


def test_an_account_name_with_a_quote_and_a_backslash_round_trips(crm: CrmHarness):
    odd = AccountRef(name="O'Brien \\ Sons", postal_code="D02 X285")
    writes = [
        OpportunityWrite(key=key, fields=crm.vocabulary.fields(key), account=odd)
        for key in ("ref-1", "ref-2")
    ]

    crm.adapter.upsert(writes[:1])
    crm.adapter.upsert(writes[1:])

    stored = crm.opportunities()
    assert stored["ref-1"].account == odd
    assert stored["ref-2"].account_id == stored["ref-1"].account_id
    assert crm.account_count() == 1


def test_contacts_are_attached_once_however_often_the_opportunity_is_written(crm: CrmHarness):
    account = AccountRef(name="Fabrikam", postal_code="80331")
    contacts = (
        ContactRef(last_name="Ng", first_name="Ada", email="ada.ng@fabrikam.example"),
        ContactRef(last_name="Weiß", email="k.weiss@fabrikam.example", title="CTO"),
    )
    again = OpportunityWrite(
        key="ref-1", fields=crm.vocabulary.fields("Fabrikam"), account=account, contacts=contacts
    )

    crm.adapter.upsert([again])
    crm.adapter.upsert([again])

    assert crm.opportunities()["ref-1"].contacts == contacts


# -- changes -----------------------------------------------------------------------------------


def test_changes_from_the_beginning_return_every_opportunity_once(crm: CrmHarness):
    with crm.same_instant():  # one stamp for all: ties straddle every page boundary
        outcomes = crm.adapter.upsert([write(crm, f"ref-{i:03}") for i in range(250)])

    changes, _ = drain(crm, None)

    assert ids(changes) == Counter(o.crm_id for o in outcomes)
    assert {c.key for c in changes} == {o.key for o in outcomes}


def test_changes_since_a_cursor_return_each_edited_opportunity_once_ties_included(
    crm: CrmHarness,
):
    v = crm.vocabulary
    outcomes = crm.adapter.upsert([write(crm, f"ref-{i}") for i in range(6)])
    _, cursor = drain(crm, None)
    a, b, c = (o.crm_id for o in outcomes[1:4])
    assert a is not None
    assert b is not None
    assert c is not None

    with crm.same_instant():
        crm.edit(a, **{v.amount: Decimal(111)})
        crm.edit(b, **{v.amount: Decimal(222)})
    crm.edit(c, **{v.stage: v.stages[1]})
    changes, cursor = drain(crm, cursor)

    assert ids(changes) == Counter([a, b, c])
    by_id = {change.crm_id: change for change in changes}
    assert by_id[a].modified_at == by_id[b].modified_at
    assert by_id[a].fields[v.amount] == Decimal(111)
    assert by_id[b].fields[v.amount] == Decimal(222)
    assert by_id[c].fields[v.stage] == v.stages[1]
    assert by_id[a].key == "ref-1"
    assert drain(crm, cursor)[0] == []


def test_a_change_stamped_with_the_time_already_read_still_comes_once(crm: CrmHarness):
    v = crm.vocabulary
    outcomes = crm.adapter.upsert([write(crm, "ref-1"), write(crm, "ref-2")])
    _, cursor = drain(crm, None)
    first, second = (o.crm_id for o in outcomes)
    assert first is not None
    assert second is not None

    with crm.same_instant():
        crm.edit(first, **{v.amount: Decimal(1)})
        changes, cursor = drain(crm, cursor)
        assert ids(changes) == Counter([first])
        crm.edit(second, **{v.amount: Decimal(2)})  # same stamp as the change already delivered
        changes, cursor = drain(crm, cursor)

    assert ids(changes) == Counter([second])
    assert drain(crm, cursor)[0] == []


def test_changes_include_the_adapters_own_writes(crm: CrmHarness):
    _, cursor = drain(crm, None)
    [outcome] = crm.adapter.upsert([write(crm, "ref-1")])

    changes, _ = drain(crm, cursor)

    assert [(c.crm_id, c.key) for c in changes] == [(outcome.crm_id, "ref-1")]


# -- faults ------------------------------------------------------------------------------------


def test_a_rate_limited_upsert_raises_rate_limited_and_writes_nothing(crm: CrmHarness):
    writes = [write(crm, f"ref-{i}") for i in range(3)]
    crm.rate_limit()

    with pytest.raises(RateLimited):
        crm.adapter.upsert(writes)

    crm.lift_rate_limit()
    assert crm.opportunities() == {}
    assert {o.action for o in crm.adapter.upsert(writes)} == {"created"}


def test_rate_limited_change_reads_raise_rate_limited(crm: CrmHarness):
    crm.adapter.upsert([write(crm, "ref-1")])
    crm.rate_limit()

    with pytest.raises(RateLimited):
        drain(crm, None)


def test_an_expired_token_costs_exactly_one_reauthentication(crm: CrmHarness):
    crm.adapter.upsert([write(crm, "ref-1")])
    before = crm.auth_count()
    crm.expire_token()

    [outcome] = crm.adapter.upsert([write(crm, "ref-2")])

    assert outcome.action == "created"
    assert crm.auth_count() == before + 1
    changes, _ = drain(crm, None)
    assert len(changes) == 2
    assert crm.auth_count() == before + 1


# -- metadata ----------------------------------------------------------------------------------


def test_a_complete_org_has_no_metadata_problems(crm: CrmHarness):
    assert crm.adapter.check_metadata(crm.requirements()) == []


def test_the_metadata_check_names_a_missing_field(crm: CrmHarness):
    v = crm.vocabulary
    crm.remove_field(v.plain_text)

    [problem] = crm.adapter.check_metadata(crm.requirements())

    assert (problem.sobject, problem.field) == (v.sobject, v.plain_text)


def test_the_metadata_check_names_a_missing_picklist_value(crm: CrmHarness):
    v = crm.vocabulary
    crm.remove_picklist_value(v.picklist, v.picklist_value)

    [problem] = crm.adapter.check_metadata(crm.requirements())

    assert (problem.sobject, problem.field) == (v.sobject, v.picklist)
    assert v.picklist_value in problem.message


def test_the_metadata_check_names_a_key_field_that_is_not_an_external_id(crm: CrmHarness):
    v = crm.vocabulary
    key = FieldRequirement(sobject=v.sobject, name=v.plain_text, external_id=True)

    problems = crm.adapter.check_metadata([*crm.requirements(), key])

    assert problems  # one or more (an external id must also be unique)
    assert {(p.sobject, p.field) for p in problems} == {(v.sobject, v.plain_text)}
    assert any("external id" in p.message.casefold() for p in problems), problems


def test_the_metadata_check_reports_every_problem_not_only_the_first(crm: CrmHarness):
    v = crm.vocabulary
    crm.remove_field(v.amount)
    crm.remove_picklist_value(v.picklist, v.picklist_value)
    key = FieldRequirement(sobject=v.sobject, name=v.plain_text, external_id=True)

    problems = crm.adapter.check_metadata([*crm.requirements(), key])

    assert {(p.sobject, p.field) for p in problems} == {
        (v.sobject, v.amount),
        (v.sobject, v.picklist),
        (v.sobject, v.plain_text),
    }


def test_a_contact_whose_title_and_names_are_too_long_for_the_crm_still_syncs(crm: CrmHarness):
    """Partner Center allows longer contact fields than the CRM's columns: the referral must
    not be dead-lettered for its contact's job title; the e-mail (the contact's key) is kept."""
    long = ContactRef(
        last_name="L" * 120, first_name="F" * 90, email="long.fields@contoso.example",
        phone="+1 425 555 0100 ext. 1234567890123456789012345678901234567890",
        title="Senior Principal Director of Cloud Infrastructure, Data Platforms and "
        "Artificial Intelligence Programs for EMEA",
    )  # fmt: skip
    account = AccountRef(name="Long Fields Ltd", postal_code="80331")
    w = OpportunityWrite(
        key="ref-long", fields=crm.vocabulary.fields("Long"), account=account, contacts=(long,)
    )

    [outcome] = crm.adapter.upsert([w])

    assert outcome.action == "created", outcome.reason
    [stored] = crm.opportunities()["ref-long"].contacts
    assert stored.email == "long.fields@contoso.example"
    assert stored.title is not None
    assert long.title is not None
    assert long.title.startswith(stored.title)
